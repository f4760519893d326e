#!/usr/bin/env python
"""How fast the Self-Instruct ROUGE-L novelty filter runs, against rouge_score measured here and now.

1. Pool 2k: 2,000 candidates (edits of the real seed tasks, near-duplicates of earlier candidates, fresh
   synthetic instructions) filtered incrementally from the 175 seeds, once the original way (rouge_score's
   ``RougeScorer(["rougeL"])`` on every candidate x pool pair, in one process) and once with ``RougeLFilter``.
   The two must agree on every keep/reject decision and every best score. Target: at least x100.
2. Pool 50k: ``RougeLFilter`` alone grows a pool from the seeds to 50,000 instructions (seeds included) out of
   a synthetic generator with real vocabulary and phrase reuse, near-duplicates included so both branches run.
   Target: under 10 minutes. The baseline's time is extrapolated from its measured cost per pair.
"""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import sys
import time
from collections import Counter
from itertools import accumulate
from typing import Callable, Iterator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")
sys.path.insert(0, ROOT)

from data_gen.rouge import DEFAULT_THRESHOLD, RougeLFilter  # noqa: E402

SMALL_CANDIDATES = 2_000
SMALL_TARGET_SPEEDUP = 100.0
LARGE_POOL = 50_000
LARGE_TARGET_S = 600.0
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'-]*|[0-9]+")
_FUNCTION_WORDS = (
    "the",
    "a",
    "of",
    "to",
    "and",
    "in",
    "for",
    "with",
    "that",
    "is",
    "on",
    "an",
    "each",
    "your",
    "this",
    "from",
    "as",
    "it",
    "by",
    "or",
    "following",
    "given",
    "about",
    "how",
    "what",
)


def _read_jsonl(name: str) -> list[dict]:
    with open(os.path.join(SHARED_DATA, name), encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


class InstructionSource:
    """Synthetic instructions that look like an LLM's: real openings, real vocabulary, reused phrases."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        seeds = _read_jsonl("self_instruct_seed_tasks.jsonl")
        self.seed_instructions = [row["instruction"] for row in seeds]
        prompts = [row["prompt"] for row in _read_jsonl("alpaca_eval_completion_pool.jsonl")]
        prompts += [turn for row in _read_jsonl("mt_bench_questions.jsonl") for turn in row["turns"]]
        bodies = [inst["input"] + " " + inst["output"] for row in seeds for inst in row["instances"]]
        bodies += [c["text"] for row in _read_jsonl("alpaca_eval_completion_pool.jsonl") for c in row["completions"]]
        instructions = self.seed_instructions + prompts
        # Openings ("Write a", "Given a list of", ...) are what make generated instructions overlap most.
        self.openings = [
            words[:k] for words in map(_WORD_RE.findall, instructions) for k in (1, 2, 3, 4) if len(words) > k
        ]
        self.phrases = [words for words in map(_WORD_RE.findall, instructions + bodies) if len(words) >= 4]
        counts = Counter(w.lower() for text in instructions + bodies for w in _WORD_RE.findall(text))
        ranked = [w for w, _ in counts.most_common()]
        # Zipf over the real vocabulary: a few words everywhere, a long tail of rare ones.
        self.vocab = ranked
        self.cum_weights = list(accumulate(1.0 / (rank + 10) for rank in range(len(ranked))))

    def fresh(self) -> str:
        """A new instruction: a real opening, then words and reused phrases."""
        words = list(self.rng.choice(self.openings))
        target = self.rng.randint(5, 28)
        while len(words) < target:
            roll = self.rng.random()
            if roll < 0.25:
                phrase = self.rng.choice(self.phrases)
                start = self.rng.randrange(len(phrase) - 2)
                words += phrase[start : start + self.rng.randint(2, 5)]
            elif roll < 0.55:
                words.append(self.rng.choice(_FUNCTION_WORDS))
            else:
                words += self.rng.choices(self.vocab, cum_weights=self.cum_weights, k=1)
        return _sentence(words)

    def edited(self, text: str, max_edits: int = 5) -> str:
        """A near-duplicate of ``text``: a few word replacements, deletions, insertions or swaps."""
        words = _WORD_RE.findall(text) or [self.rng.choice(self.vocab)]
        for _ in range(self.rng.randint(1, max_edits)):
            op = self.rng.randrange(4)
            i = self.rng.randrange(len(words))
            if op == 0:
                words[i] = self.rng.choices(self.vocab, cum_weights=self.cum_weights, k=1)[0]
            elif op == 1 and len(words) > 2:
                del words[i]
            elif op == 2:
                words.insert(i, self.rng.choice(_FUNCTION_WORDS + tuple(self.vocab[:300])))
            elif len(words) > 1:
                j = self.rng.randrange(len(words))
                words[i], words[j] = words[j], words[i]
        return _sentence(words)

    def stream(self, earlier: Callable[[], str], p_seed_edit: float, p_dup: float) -> Iterator[str]:
        """Endless candidates: edits of seed tasks, near-duplicates of ``earlier()`` texts, fresh ones.

        Like Self-Instruct, texts of at most 3 words are dropped before any similarity check.
        """
        while True:
            roll = self.rng.random()
            if roll < p_seed_edit:
                text = self.edited(self.rng.choice(self.seed_instructions))
            elif roll < p_seed_edit + p_dup:
                text = self.edited(earlier())
            else:
                text = self.fresh()
            if len(text.split()) > 3:
                yield text


def _sentence(words: list[str]) -> str:
    text = " ".join(words)
    return text[:1].upper() + text[1:] + "."


def baseline_filter(seeds: list[str], candidates: list[str]) -> tuple[list[bool], list[float], int]:
    """The original Self-Instruct loop: rouge_score on every candidate x pool pair; gives decisions, scores, pairs."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pool = list(seeds)
    kept, best, pairs = [], [], 0
    for candidate in candidates:
        scores = [scorer.score(candidate, member)["rougeL"].fmeasure for member in pool]
        pairs += len(pool)
        top = max(scores, default=0.0)
        kept.append(not top > DEFAULT_THRESHOLD)
        best.append(top)
        if kept[-1]:
            pool.append(candidate)
    return kept, best, pairs


def ours_filter(seeds: list[str], candidates: list[str]) -> tuple[list[bool], list[float]]:
    """The same loop with RougeLFilter."""
    pool = RougeLFilter(texts=seeds)
    verdicts = [pool.check_and_add(candidate) for candidate in candidates]
    return [v.novel for v in verdicts], [v.score for v in verdicts]


def small_candidates(source: InstructionSource) -> list[str]:
    """2,000 candidates: a quarter edited seeds, some near-duplicates of earlier candidates, the rest fresh."""
    made: list[str] = []
    stream = source.stream(lambda: source.rng.choice(made or source.seed_instructions), 0.25, 0.15)
    while len(made) < SMALL_CANDIDATES:
        made.append(next(stream))
    return made


def bench_small(source: InstructionSource) -> float:
    """Phase 1; returns the baseline's measured seconds per pair."""
    seeds = source.seed_instructions
    candidates = small_candidates(source)
    runs = []
    for _ in range(3):
        # Ours takes a fraction of a second, so its median of three is steadier than one run.
        t0 = time.perf_counter()
        ours_kept, ours_best = ours_filter(seeds, candidates)
        runs.append(time.perf_counter() - t0)
    ours_s = statistics.median(runs)
    t0 = time.perf_counter()
    base_kept, base_best, pairs = baseline_filter(seeds, candidates)
    base_s = time.perf_counter() - t0
    same_kept, same_best = ours_kept == base_kept, ours_best == base_best
    rejected = base_kept.count(False)
    final_pool = len(seeds) + len(candidates) - rejected
    print(
        f"decisions on {len(candidates)} candidates from {len(seeds)} seeds: "
        f"{'identical' if same_kept else 'DIFFERENT'} ({rejected} rejected, final pool {final_pool}); "
        f"best scores {'identical' if same_best else 'DIFFERENT'}"
    )
    assert same_kept and same_best, "RougeLFilter disagrees with rouge_score"
    speedup = base_s / ours_s
    print(
        f"rouge-L filter, pool 2k: rouge_score {base_s:.1f} s, ours {ours_s:.2f} s, x{speedup:.0f} "
        f"(target x{SMALL_TARGET_SPEEDUP:.0f}): {'ok' if speedup >= SMALL_TARGET_SPEEDUP else 'MISSED'}"
    )
    per_pair = base_s / pairs
    print(f"rouge_score: {pairs:,} pairs, {per_pair * 1e6:.1f} us per pair")
    return per_pair


def bench_large(source: InstructionSource, per_pair: float) -> None:
    """Phase 2: grow a pool to 50,000 with RougeLFilter alone."""
    pool = RougeLFilter(texts=source.seed_instructions)
    texts = pool.texts
    stream = source.stream(lambda: texts[source.rng.randrange(len(texts))], 0.02, 0.18)
    checked = rejected = pairs = 0
    ours_s = 0.0
    t_all = time.perf_counter()
    for candidate in stream:
        pairs += len(pool)
        checked += 1
        t0 = time.perf_counter()
        novel = pool.check_and_add(candidate).novel
        ours_s += time.perf_counter() - t0
        if not novel:
            rejected += 1
        elif len(pool) >= LARGE_POOL:
            break
        if checked % 4096 == 0:
            # The generator draws near-duplicates from a snapshot; refreshing it now and then is enough.
            texts = pool.texts
    all_s = time.perf_counter() - t_all
    base_h = pairs * per_pair / 3600
    print(
        f"rouge-L filter, grow to 50k: ours {ours_s:.1f} s (target < {LARGE_TARGET_S:.0f} s): "
        f"{'ok' if ours_s < LARGE_TARGET_S else 'MISSED'}; {checked:,} candidates checked, {rejected:,} rejected "
        f"({all_s:.1f} s with the generator)"
    )
    print(
        f"rouge_score would take ~{base_h:.1f} h ({pairs:.3g} pairs x {per_pair * 1e6:.1f} us), "
        f"x{base_h * 3600 / ours_s:.0f}"
    )


def main() -> None:
    per_pair = bench_small(InstructionSource(seed=1))
    bench_large(InstructionSource(seed=2), per_pair)


if __name__ == "__main__":
    main()
