#!/usr/bin/env python
"""Decontamination throughput: UltraChat-length rows against the six shared benchmarks, MT-Bench and AlpacaEval
(13-grams), the vectorised scan (``--workers`` processes, all rows streamed through one call, as the stage does)
against the plain Python set-of-n-grams reference (decontamination/reference.py) doing the same work on a subset, in
the same run.

Rows: 3 user turns of 30-80 words and 3 assistant turns of 250-350 words (about 1,000 words a row, UltraChat's
scale). Each text is a window of a long stream of words drawn from the benchmarks' own vocabulary, with its case,
punctuation and non-ASCII characters; 50 rows get a planted benchmark item, which both sides must find (and
nothing else).
    python bench/decontamination.py [--rows 200000] [--workers 2] [--reference_rows 2000] [--single_rows 20000]
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import random
import resource
import sys
import threading
import time
from typing import Iterable, Iterator

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from decontamination.benchmarks import BenchmarkSource, load_benchmark  # noqa: E402
from decontamination.index import BenchmarkIndex  # noqa: E402
from decontamination.normalize import Normalization  # noqa: E402
from decontamination.reference import reference_index, reference_matches  # noqa: E402
from decontamination.rows import row_texts  # noqa: E402
from decontamination.scan import Options, decontaminate  # noqa: E402

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")
PLANTS = 50
POOL = 20_000


def benchmark_items():
    items = []
    for path in sorted(glob.glob(os.path.join(SHARED, "benchmarks", "*.jsonl"))):
        items += load_benchmark(BenchmarkSource(os.path.basename(path)[:-6], path), "bench")
    items += load_benchmark(BenchmarkSource("mt_bench", os.path.join(SHARED, "mt_bench_questions.jsonl"), "turns",
                                            "question_id"), "bench")  # fmt: skip
    items += load_benchmark(BenchmarkSource("alpaca_eval", os.path.join(SHARED, "alpaca_eval_instructions.jsonl"),
                                            "instruction"), "bench")  # fmt: skip
    return items


class WordStream:
    """A long string of random vocabulary words and where each word starts: a text of k words is one slice."""

    def __init__(self, vocab: list[str], words: int, seed: int):
        rng = random.Random(seed)
        chosen = rng.choices(vocab, k=words)
        self.text = " ".join(chosen)
        self.starts, at = [], 0
        for word in chosen:
            self.starts.append(at)
            at += len(word) + 1
        self.starts.append(at)

    def take(self, rng: random.Random, k: int) -> str:
        first = rng.randrange(len(self.starts) - k - 1)
        return self.text[self.starts[first] : self.starts[first + k] - 1]


def make_rows(count: int, stream: WordStream, items, seed: int, plants: int, words: list[int]) -> Iterator[dict]:
    """UltraChat-shaped rows, yielded one by one (the scan streams them: none is held after its chunk); ``words``
    counts the words they hold. The rows cycle through a pool of at most POOL distinct rows, so that making them
    costs next to nothing in the timed scan (the reference, too, gets its texts ready-made); the scan's work on a
    row does not depend on having seen it before."""
    rng = random.Random(seed)
    pool, sizes = [], []
    for i in range(min(count, POOL)):
        messages, size = [], 0
        for _ in range(3):
            user, reply = rng.randint(30, 80), rng.randint(250, 350)
            messages.append({"role": "user", "content": stream.take(rng, user)})
            messages.append({"role": "assistant", "content": stream.take(rng, reply)})
            size += user + reply
        pool.append({"prompt": messages[0]["content"], "prompt_id": f"{seed}-{i}", "messages": messages})
        sizes.append(size)
    long_items = [it for it in items if len(it.text.split()) >= 20]  # at least 13 words once normalised
    planted = {at: rng.choice(long_items).text for at in rng.sample(range(count), plants)}
    for i in range(count):
        row = pool[i % len(pool)]
        words[0] += sizes[i % len(pool)]
        if i in planted:
            messages = [dict(m) for m in row["messages"]]
            messages[0]["content"] += " " + planted[i]
            row = {**row, "prompt": messages[0]["content"], "messages": messages}
        yield row


class WorkerPeak(threading.Thread):
    """The largest peak resident memory (VmHWM) seen among this process's live worker processes, sampled."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak_mb, self.done = 0.0, threading.Event()

    @staticmethod
    def children() -> list[str]:
        pids = []
        for task in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                pids += open(task).read().split()
        return pids

    def run(self) -> None:
        while not self.done.wait(0.2):
            for pid in self.children():
                try:  # a child not yet past exec still holds a copy of this process: not a worker yet
                    if b"spawn_main" in open(f"/proc/{pid}/cmdline", "rb").read():
                        self.peak_mb = max(self.peak_mb, rss_mb(pid, "VmHWM:"))
                except (OSError, StopIteration):
                    pass


def scan(rows: Iterable[dict], index: BenchmarkIndex, workers: int) -> tuple[set[int], float, float]:
    """Rows removed, seconds, and the workers' peak memory in MiB."""
    sampler = WorkerPeak()
    sampler.start()
    started = time.perf_counter()
    result = decontaminate(rows, index, Options(check="both", columns=("messages",), workers=workers), "bench")
    seconds = time.perf_counter() - started
    sampler.done.set()
    return {r["row_index"] for r in result.removed}, seconds, sampler.peak_mb


def reference(rows: list[dict], items, n: int) -> tuple[set[int], float, float]:
    """Rows the set-of-n-grams reference removes, its index build time and its scan time."""
    started = time.perf_counter()
    ref_index = reference_index([it.text for it in items], n)
    built = time.perf_counter() - started
    texts, row_of = [], []
    for i, row in enumerate(rows):
        for _, text in row_texts(row, "both", ("messages",)):
            texts.append(text)
            row_of.append(i)
    started = time.perf_counter()
    found = reference_matches(texts, ref_index, n)
    return {row_of[t] for t, _ in found}, built, time.perf_counter() - started


def rss_mb(pid: str = "self", field: str = "VmRSS:") -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reference_rows", type=int, default=2_000)
    parser.add_argument("--single_rows", type=int, default=20_000, help="rows for the 1-process scan")
    args = parser.parse_args()
    items = benchmark_items()
    stream = WordStream(sorted({w for it in items[::7] for w in it.text.split()}), 3_000_000, seed=0)
    started = time.perf_counter()
    index = BenchmarkIndex.build(items, 13, Normalization())
    build_s = time.perf_counter() - started
    per_million = index.nbytes / (index.ngram_count / 1e6) / 2**20
    print(f"benchmarks: {len(items):,} items, {index.ngram_count:,} distinct 13-grams, index built in {build_s:.1f} s,"
          f" {index.nbytes / 2**20:.0f} MiB ({per_million:.1f} MiB per million n-grams)")  # fmt: skip
    before_mb = rss_mb()
    words = [0]
    rows = make_rows(args.rows, stream, items, seed=1, plants=min(PLANTS, args.rows), words=words)
    removed, scan_s, worker_mb = scan(rows, index, args.workers)
    if len(removed) != min(PLANTS, args.rows):
        sys.exit(f"the scan removed {len(removed)} rows, not the {min(PLANTS, args.rows)} planted")
    rate, words = args.rows / scan_s, words[0]
    print(f"scan: {args.rows:,} rows, {words:,} words ({words / args.rows:.0f} a row) in {scan_s:.1f} s on "
          f"{args.workers} processes: {rate:,.0f} rows/s, {words / scan_s / 1e6:.1f} M words/s; {len(removed)} rows "
          f"removed, the planted ones")  # fmt: skip
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"peak memory: main process {peak_mb:,.0f} MiB ({before_mb:,.0f} MiB before the scan: the interpreter, the "
        f"index, the benchmarks and the word stream; then the {POOL:,} distinct rows the stream cycles through; the "
        f"rows are streamed, none held), largest worker {worker_mb:,.0f} MiB"
    )
    sub = list(make_rows(max(args.single_rows, args.reference_rows), stream, items, seed=2, plants=PLANTS, words=[0]))
    single, single_s, _ = scan(sub, index, 1)
    sub = sub[: args.reference_rows]
    ref, ref_build_s, ref_s = reference(sub, items, 13)
    if ref != {r for r in single if r < args.reference_rows}:
        sys.exit("the scan and the reference disagree")
    ref_rate, single_rate = args.reference_rows / ref_s, max(args.single_rows, args.reference_rows) / single_s
    print(
        f"reference, 1 process: {args.reference_rows} rows in {ref_s:.1f} s = {ref_rate:,.0f} rows/s (index built "
        f"in {ref_build_s:.1f} s), the same rows removed as the scan; scan, 1 process: {single_rate:,.0f} rows/s"
    )
    print(f"ratio per row: 1 process each {single_rate / ref_rate:.1f}x; scan on {args.workers} processes vs the "
          f"reference on 1: {rate / ref_rate:.1f}x; the reference would take {args.rows / ref_rate:,.0f} s for "
          f"{args.rows:,} rows")  # fmt: skip
    print(
        f"10M rows at this rate: {10_000_000 / rate / 60:,.0f} min on {args.workers} processes, in the same memory "
        f"(the index stays {index.nbytes / 2**20:.0f} MiB; only the chunks in flight and the removed rows are held)"
    )


if __name__ == "__main__":
    main()
