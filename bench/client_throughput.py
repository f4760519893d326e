#!/usr/bin/env python
"""Client throughput: our endpoint client (journal + limits on) against a bare openai SDK loop, same run.

A loopback server (its own process) answers every chat completion after a fixed 200 ms. At concurrency 64
the bound is 64 / 0.2 s = 320 req/s; a bare AsyncOpenAI loop (asyncio + semaphore, no journal, no limits)
reaches what the shared 2-core CPU allows; our client must reach at least 0.9 of the bare loop's rate.

    python bench/client_throughput.py [--requests 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

import openai  # noqa: E402

from data_gen.client import ChatClient, ChatRequest  # noqa: E402
from data_gen.endpoints import TeacherConfig  # noqa: E402
from data_gen.journal import Journal  # noqa: E402

LATENCY_S, CONCURRENCY = 0.2, 64


def messages(tag: str, i: int) -> list[dict]:
    return [{"role": "user", "content": f"{tag} request number {i}: write one short sentence about the sea"}]


async def bare_sdk(base_url: str, n: int, tag: str) -> float:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with gate:
            reply = await client.chat.completions.create(
                model="scripted", messages=messages(tag, i), max_tokens=16, seed=i
            )
            assert reply.choices[0].message.content

    await asyncio.gather(*(one(-1 - i) for i in range(CONCURRENCY)))  # warm the connection pool
    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - start
    await client.close()
    return n / elapsed


async def ours(base_url: str, n: int, tag: str, journal_dir: str) -> float:
    teacher = TeacherConfig(
        endpoints=[{"base_url": base_url, "model": "scripted", "api_key_env": None}],
        max_concurrency=CONCURRENCY,
        requests_per_minute=1e6,
        tokens_per_minute=1e9,
        prices={"scripted": {"input": 1.0, "output": 2.0}},
        name="bench",
    )
    journal = Journal(os.path.join(journal_dir, f"{tag}.jsonl"))
    client = ChatClient(teacher, journal)
    await client.run(
        [ChatRequest(messages(tag + "-warm", i), {"max_tokens": 16}, sample=i) for i in range(CONCURRENCY)]
    )
    requests = [ChatRequest(messages(tag, i), {"max_tokens": 16}, sample=i) for i in range(n)]
    start = time.perf_counter()
    results = await client.run(requests)
    elapsed = time.perf_counter() - start
    assert all(r.status == "ok" for r in results) and len(journal.records) == n + CONCURRENCY
    await client.close()
    journal.close()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    server = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tests", "openai_fault_server.py"), "--latency-s", str(LATENCY_S)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = server.stdout.readline().strip()
        bare, mine = [], []
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.repeats):  # interleaved, so drift in machine load hits both alike
                bare.append(asyncio.run(bare_sdk(base_url, args.requests, f"bare{r}")))
                mine.append(asyncio.run(ours(base_url, args.requests, f"ours{r}", tmp)))
    finally:
        server.terminate()
        server.wait(timeout=10)
    bound = CONCURRENCY / LATENCY_S
    b, o = statistics.median(bare), statistics.median(mine)
    print(f"bound (64 / 0.2 s)                      {bound:7.1f} req/s")
    print(f"bare openai SDK loop                    {b:7.1f} req/s   {b / bound:.2f} of the bound")
    print(f"our client (journal + rpm/tpm limits)   {o:7.1f} req/s   {o / bound:.2f} of the bound")
    print(f"client throughput: ours / bare SDK = {o / b:.2f} (target >= 0.90): {'ok' if o / b >= 0.9 else 'MISSED'}")


if __name__ == "__main__":
    main()
