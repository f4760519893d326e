#!/usr/bin/env python
"""Decontamination throughput: UltraChat-length synthetic rows against the six shared benchmarks, MT-Bench and
AlpacaEval (13-grams), the vectorised scan (2 worker processes) against the plain Python set-of-n-grams reference
on a subset of the same rows, in the same run. Ratios are per row; peak memory from resource.getrusage.

Rows: 3 user turns of 30-80 words and 3 assistant turns of 250-350 words (about 1,000+ words a row, UltraChat's
scale), words drawn from the benchmarks' own vocabulary with their punctuation and case, 50 rows with a planted
benchmark item.   python bench/decontamination.py [--rows 200000] [--reference_rows 300]
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from decontamination.benchmarks import BenchmarkSource, load_benchmark  # noqa: E402
from decontamination.index import BenchmarkIndex  # noqa: E402
from decontamination.normalize import Normalization  # noqa: E402
from decontamination.reference import reference_index, reference_matches  # noqa: E402
from decontamination.rows import row_texts  # noqa: E402
from decontamination.scan import Options, decontaminate  # noqa: E402

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")


def benchmark_items():
    items = []
    for path in sorted(glob.glob(os.path.join(SHARED, "benchmarks", "*.jsonl"))):
        items += load_benchmark(BenchmarkSource(os.path.basename(path)[:-6], path), "bench")
    items += load_benchmark(BenchmarkSource("mt_bench", os.path.join(SHARED, "mt_bench_questions.jsonl"), "turns",
                                            "question_id"), "bench")  # fmt: skip
    items += load_benchmark(BenchmarkSource("alpaca_eval", os.path.join(SHARED, "alpaca_eval_instructions.jsonl"),
                                            "instruction"), "bench")  # fmt: skip
    return items


def make_rows(count: int, vocab: list[str], items, seed: int, plants: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        messages = []
        for _ in range(3):
            messages.append({"role": "user", "content": " ".join(rng.choices(vocab, k=rng.randint(30, 80)))})
            messages.append({"role": "assistant", "content": " ".join(rng.choices(vocab, k=rng.randint(250, 350)))})
        rows.append({"prompt": messages[0]["content"], "prompt_id": f"{seed}-{i}", "messages": messages})
    for k in range(plants):
        rows[rng.randrange(count)]["messages"][0]["content"] += " " + rng.choice(items).text
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--reference_rows", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    items = benchmark_items()
    vocab = sorted({w for it in items[::7] for w in it.text.split()})
    t0 = time.perf_counter()
    index = BenchmarkIndex.build(items, 13, Normalization())
    build_s = time.perf_counter() - t0
    print(f"benchmarks: {len(items)} items, {index.ngram_count:,} distinct 13-grams, index built in {build_s:.1f} s")
    scan_s, words, removed, done = 0.0, 0, 0, 0
    while done < args.rows:
        rows = make_rows(min(args.batch, args.rows - done), vocab, items, seed=done, plants=5)
        words += sum(len(t.split()) for r in rows for _, t in row_texts(r, "both", ("messages",)))
        t0 = time.perf_counter()
        result = decontaminate(rows, index, Options(check="both", columns=("messages",), workers=args.workers), "b")
        scan_s += time.perf_counter() - t0
        removed += len(result.removed)
        done += len(rows)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    planted = 5 * -(-done // args.batch)
    print(f"scan: {done:,} rows, {words:,} words ({words / done:.0f} a row) in {scan_s:.1f} s on {args.workers} "
          f"processes: {done / scan_s:,.0f} rows/s; {removed} rows removed (planted: {planted})")  # fmt: skip
    sub = make_rows(args.reference_rows, vocab, items, seed=10**9, plants=5)
    t0 = time.perf_counter()
    ref_index = reference_index([it.text for it in items], 13)
    ref_build_s = time.perf_counter() - t0
    texts = [t for r in sub for _, t in row_texts(r, "both", ("messages",))]
    t0 = time.perf_counter()
    ref = reference_matches(texts, ref_index, 13)
    ref_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fast = decontaminate(sub, index, Options(check="both", columns=("messages",), workers=1), "b")
    fast_sub_s = time.perf_counter() - t0
    ref_rows = {texts_row for texts_row in {t // 6 for t, _ in ref}}
    assert {r["row_index"] for r in fast.removed} == ref_rows, "the scan and the reference disagree"
    ref_rate = args.reference_rows / ref_s
    fast_rate = args.reference_rows / fast_sub_s
    print(
        f"reference (1 process): {args.reference_rows} rows in {ref_s:.1f} s = {ref_rate:.1f} rows/s, index "
        f"built in {ref_build_s:.1f} s; same rows removed as the scan; scan on 1 process: {fast_rate:.0f} rows/s"
    )
    print(f"ratio, per row, 1 process each: {(args.reference_rows / fast_sub_s) / ref_rate:.1f}x; scan on "
          f"{args.workers} processes vs reference on 1: {(done / scan_s) / ref_rate:.1f}x; reference extrapolated to "
          f"{done:,} rows: {done / ref_rate:,.0f} s")  # fmt: skip
    print(f"peak memory: main {peak_mb:,.0f} MB, largest worker {child_mb:,.0f} MB; benchmark index "
          f"{(index.hashes.nbytes + index.pair_hashes.nbytes + index.pair_items.nbytes) / 1e6:.0f} MB for "
          f"{index.ngram_count / 1e6:.2f} M n-grams")  # fmt: skip
    print(f"a 10M-row corpus at this rate: {10_000_000 / (done / scan_s) / 60:,.0f} min on {args.workers} processes")


if __name__ == "__main__":
    main()
