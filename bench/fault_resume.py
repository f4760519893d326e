#!/usr/bin/env python
"""Reliability under faults and kill -9: a completion-pool stage of 2,000 requests against a faulting server.

Two runs of `scripts/run_completions.py` against the scripted OpenAI-compatible server (real HTTP on 127.0.0.1),
both at the same fault rate and fault seed:

- the reference run, uninterrupted;
- the killed run, sent SIGKILL at ``--kills`` random moments (seeded) and rerun each time until it completes.

Printed figures, and the checks that make the script exit non-zero:
- every item completes in both runs, and the two pool datasets are byte-identical;
- the reference run pays every request once; in the killed run the requests paid twice are exactly the replies
  that were paid but not yet journaled when a kill landed, and at each kill there are no more of them than
  max_concurrency (the requests in flight);
- tokens and cost in the journal equal the server's bill (reference), and equal the bill less the replies lost
  at the kills (killed run).

Transport faults only (429, 500, timeout, dropped connection, malformed JSON): a "length" reply is a paid, final
answer, so which attempt drew it would change the data between runs.

    python bench/fault_resume.py [--requests 2000] [--fault-rate 0.25] [--kills 10]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import yaml  # noqa: E402
from openai_fault_server import ScriptedOpenAIServer  # noqa: E402

KEY_ENV = "DISTILL_BENCH_KEY"
PRICE_IN, PRICE_OUT = 2.0, 6.0  # USD per 1M tokens
CONCURRENCY = 16
COMPLETIONS_PER_PROMPT = 4
TRANSPORT_FAULTS = ("429", "500", "timeout", "drop", "malformed")


def teacher(base_url: str) -> str:
    config = {
        "endpoints": [{"base_url": base_url, "model": "scripted", "api_key_env": KEY_ENV}],
        "prices": {"scripted": {"input": PRICE_IN, "output": PRICE_OUT}},
        "max_concurrency": CONCURRENCY,
        "timeout_s": 1.0,
        "max_retries": 20,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.1,
    }
    return yaml.safe_dump(config, default_flow_style=True).strip()


def command(workdir: str, out: str, prompts: str, base_url: str) -> list[str]:
    return [
        sys.executable,
        os.path.join(ROOT, "scripts", "run_completions.py"),
        "recipes/smoke/completions.yaml",
        "--prompts",
        prompts,
        "--models",
        f"[{teacher(base_url)}]",
        "--output_dir",
        os.path.join(workdir, out),
        "--completions_per_prompt",
        str(COMPLETIONS_PER_PROMPT),
        "--max_tokens",
        "16",
        "--show_progress",
        "false",
    ]


def journal_paid(path: str) -> tuple[int, int, int, float]:
    """(records paid, prompt tokens, completion tokens, cost) over the journal's final records."""
    paid = prompt = completion = 0
    cost = 0.0
    if not os.path.exists(path):
        return 0, 0, 0, 0.0
    with open(path, "rb") as f:
        for raw in f:
            try:
                record = json.loads(raw)
            except ValueError:
                continue  # a line torn by the kill
            if record.get("status") in ("ok", "truncated"):
                paid += 1
                prompt += record.get("prompt_tokens", 0)
                completion += record.get("completion_tokens", 0)
                cost += record.get("cost_usd", 0.0)
    return paid, prompt, completion, cost


def run_to_completion(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if res.returncode != 0:
        raise SystemExit(f"stage failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return time.perf_counter() - t0


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--fault-rate", type=float, default=0.25)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="fault-resume-")
    prompts = os.path.join(workdir, "prompts.jsonl")
    n_prompts = args.requests // COMPLETIONS_PER_PROMPT
    with open(prompts, "w") as f:
        for i in range(n_prompts):
            f.write(
                json.dumps(
                    {"prompt": f"Question {i}: explain topic number {i} in a few plain sentences.", "source": "bench"}
                )
                + "\n"
            )
    env = {**os.environ, KEY_ENV: "sk-bench-not-a-real-key", "HF_HUB_OFFLINE": "1", "PYTHONPATH": ROOT}
    server_args = dict(
        latency_s=0.01, fault_rate=args.fault_rate, faults=TRANSPORT_FAULTS, hang_s=2.0, retry_after_s=0.02, seed=7
    )
    failures: list[str] = []

    with ScriptedOpenAIServer(**server_args) as server:
        ref_s = run_to_completion(command(workdir, "ref", prompts, server.base_url), env)
        ref_stats = server.stats
    ref_journal = journal_paid(os.path.join(workdir, "ref", "journal.jsonl"))

    rng = random.Random(args.seed)
    lost_at_kills: list[int] = []
    killed_dir = os.path.join(workdir, "killed")
    journal = os.path.join(killed_dir, "journal.jsonl")
    with ScriptedOpenAIServer(**server_args) as server:
        cmd = command(workdir, "killed", prompts, server.base_url)
        t0 = time.perf_counter()
        for _ in range(args.kills):
            already = journal_paid(journal)[0]
            target = already + rng.randint(1, max(1, (args.requests - already) // 4))
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while proc.poll() is None and journal_paid(journal)[0] < target:
                time.sleep(0.005)
            if proc.poll() is not None:
                failures.append(f"the run ended (code {proc.returncode}) before kill {len(lost_at_kills) + 1}")
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            time.sleep(0.3)  # replies already on the wire are billed by the server as they are written
            lost_at_kills.append(server.stats.total_paid - journal_paid(journal)[0] - sum(lost_at_kills))
        run_to_completion(cmd, env)
        killed_s = time.perf_counter() - t0
        stats = server.stats
    killed_journal = journal_paid(journal)

    ref_pool, killed_pool = (os.path.join(workdir, d, "pool", "train.jsonl") for d in ("ref", "killed"))
    rows = sum(1 for _ in open(ref_pool))
    identical = sha256(ref_pool) == sha256(killed_pool)
    paid_twice = stats.total_paid - len(stats.paid)
    injected = sum(ref_stats.faults.values())
    bill_cost = (stats.prompt_tokens_billed * PRICE_IN + stats.completion_tokens_billed * PRICE_OUT) / 1e6
    ref_bill_cost = (ref_stats.prompt_tokens_billed * PRICE_IN + ref_stats.completion_tokens_billed * PRICE_OUT) / 1e6

    print(
        f"requests: {args.requests} ({n_prompts} prompts x {COMPLETIONS_PER_PROMPT}), fault rate {args.fault_rate}, "
        f"{injected} faults injected in the reference run ({ref_stats.total_attempts} attempts)"
    )
    print(
        f"reference run: {ref_s:.1f} s, {ref_journal[0]} replies journaled, {ref_stats.total_paid} paid, "
        f"{ref_stats.total_paid - len(ref_stats.paid)} paid twice"
    )
    print(
        f"killed run: {len(lost_at_kills)} x kill -9, {killed_s:.1f} s in all, ratio to reference "
        f"{killed_s / ref_s:.2f}"
    )
    print(f"  replies lost at each kill (paid, not journaled; at most {CONCURRENCY} in flight): {lost_at_kills}")
    print(f"  requests paid twice: {paid_twice} = lost at the kills {sum(lost_at_kills)}")
    print(f"pool rows: {rows}; datasets byte-identical: {identical}")
    print(
        f"reference tokens journal/bill: {ref_journal[1]}+{ref_journal[2]} / "
        f"{ref_stats.prompt_tokens_billed}+{ref_stats.completion_tokens_billed}; "
        f"cost journal/bill: ${ref_journal[3]:.6f} / ${ref_bill_cost:.6f}"
    )
    print(
        f"killed tokens journal/bill: {killed_journal[1]}+{killed_journal[2]} / "
        f"{stats.prompt_tokens_billed}+{stats.completion_tokens_billed}; "
        f"cost journal/bill: ${killed_journal[3]:.6f} / ${bill_cost:.6f}"
    )

    if rows != n_prompts:
        failures.append(f"{rows} of {n_prompts} prompts completed")
    if not identical:
        failures.append("the killed run's dataset differs from the uninterrupted one")
    if ref_stats.total_paid != len(ref_stats.paid) or ref_journal[0] != ref_stats.total_paid:
        failures.append("the uninterrupted run paid a request twice or journaled a different count")
    if (ref_journal[1], ref_journal[2]) != (ref_stats.prompt_tokens_billed, ref_stats.completion_tokens_billed):
        failures.append("reference journal tokens differ from the server's bill")
    if abs(ref_journal[3] - ref_bill_cost) > 1e-9:
        failures.append("reference journal cost differs from the server's bill")
    if paid_twice != sum(lost_at_kills) or any(n > CONCURRENCY or n < 0 for n in lost_at_kills):
        failures.append("requests were paid twice beyond those in flight at the kills")
    if killed_journal[0] != len(stats.paid):
        failures.append("the killed run's journal does not hold one paid reply per request")
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
