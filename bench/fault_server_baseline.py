#!/usr/bin/env python
"""Baseline throughput of a bare AsyncOpenAI loop against the scripted server at a fixed latency.

No retries, no faults: asyncio.gather over N requests behind an asyncio.Semaphore(C). With latency L
the ceiling is C / L requests/s (320 req/s for 64 / 0.2 s); what is left below it is client and server
CPU, which share the machine (and, in the default in-process mode, one interpreter lock).

    python bench/fault_server_baseline.py                 # server on a thread of this process
    python bench/fault_server_baseline.py --server-process # server in its own interpreter
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import openai  # noqa: E402
from openai_fault_server import ScriptedOpenAIServer  # noqa: E402


@contextmanager
def in_process_server(latency_s: float) -> Iterator[tuple[str, ScriptedOpenAIServer | None]]:
    with ScriptedOpenAIServer(latency_s=latency_s) as server:
        yield server.base_url, server


@contextmanager
def separate_process_server(latency_s: float) -> Iterator[tuple[str, ScriptedOpenAIServer | None]]:
    script = os.path.join(ROOT, "tests", "openai_fault_server.py")
    proc = subprocess.Popen([sys.executable, script, "--latency-s", str(latency_s)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip(), None
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def drive(base_url: str, n_requests: int, concurrency: int) -> float:
    """Seconds to complete n_requests distinct chat completions at the given concurrency."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key="test", max_retries=0)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            reply = await client.chat.completions.create(
                model="scripted", messages=[{"role": "user", "content": f"request number {i}"}], seed=i
            )
            assert reply.choices[0].finish_reason == "stop"

    # Warm-up opens the connection pool and imports lazily loaded SDK modules outside the timing.
    await asyncio.gather(*(one(-1 - i) for i in range(concurrency)))
    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n_requests)))
    elapsed = time.perf_counter() - start
    await client.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-s", type=float, default=0.2)
    parser.add_argument("--server-process", action="store_true", help="run the server in its own interpreter")
    args = parser.parse_args()

    serve = separate_process_server if args.server_process else in_process_server
    with serve(args.latency_s) as (base_url, server):
        cpu0 = time.process_time()
        elapsed = asyncio.run(drive(base_url, args.requests, args.concurrency))
        cpu = time.process_time() - cpu0
        stats = server.stats if server is not None else None

    bound = args.concurrency / args.latency_s
    rate = args.requests / elapsed
    where = "separate process" if args.server_process else "same process (thread)"
    print(f"server: {where}; {args.requests} requests, concurrency {args.concurrency}, latency {args.latency_s} s")
    print(f"throughput      {rate:7.1f} req/s   ({rate / bound:.2f} of the {bound:.0f} req/s bound)")
    print(f"wall            {elapsed:7.2f} s")
    print(f"cpu (this proc) {cpu * 1000 / (args.requests + args.concurrency):7.2f} ms/request")
    if stats is not None:
        print(f"server saw      {stats.requests} requests on {stats.connections} connections")


if __name__ == "__main__":
    main()
