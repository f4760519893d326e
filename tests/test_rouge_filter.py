"""The ROUGE-L novelty filter decides exactly as rouge_score does: same tokens, same F1, same strict threshold."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
from conftest import SHARED_DATA
from rouge_score import rouge_scorer
from rouge_score.rouge_scorer import _lcs_table
from rouge_score.tokenizers import DefaultTokenizer

from data_gen.rouge import RougeLFilter, lcs_length, rouge_l_f1, tokenize

SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
REFERENCE_TOKENIZER = DefaultTokenizer(use_stemmer=False)

TRICKY_TEXTS = [
    "",
    "   ",
    "!!! ... ???",
    "Hello, World!",
    "the the the the",
    "Don't stop -- e-mail me at a.b@c.com by 3.14pm, ok?",
    "C++ vs. C# vs. F*; x=y+2; (a[i]) {b} <c>",
    "tabs\tand\nnew\r\nlines\u2028and\u00a0nbsp",
    "naïve café Straße façade coöperate",
    "İstanbul İİ",  # lowercases to 'i' + combining dot: the 'i' survives
    "\u212a is the Kelvin sign",  # lowercases to an ASCII 'k'
    "ﬁne ligature, ＡＢＣ１２３ fullwidth, ½ and ² and ٣",
    "Emoji 🙂 in 👍🏽 the middle",
    "증상에 대한 설명이 주어지면 가능한 질병을 식별하고 약을 제안합니다.",
    "질문: 서장훈은 몇 년도에 은퇴했습니까?\n답:",
    "4개의 가장 작은 완전 수를 찾아주세요",
    "UPPER lower MiXeD 123abc abc123 0007",
    "word_with_underscores and-hyphens and/slashes",
]


def _seed_rows() -> list[dict]:
    with open(os.path.join(SHARED_DATA, "self_instruct_seed_tasks.jsonl"), encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="module")
def seed_instructions() -> list[str]:
    return [row["instruction"] for row in _seed_rows()]


@pytest.fixture(scope="module")
def varied_texts() -> list[str]:
    """Tricky strings, the real seed tasks (instructions, inputs, outputs) and random character soup."""
    rows = _seed_rows()
    texts = list(TRICKY_TEXTS)
    texts += [row["instruction"] for row in rows]
    texts += [inst["input"] for row in rows for inst in row["instances"]][:60]
    texts += [inst["output"] for row in rows for inst in row["instances"]][:60]
    rng = random.Random(7)
    alphabet = "abcXYZ019 ,.-'_\t\né中ß\u0130\u212a🙂"
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(100)]
    return texts


def reference_f1(target: str, prediction: str) -> float:
    return SCORER.score(target, prediction)["rougeL"].fmeasure


def test_tokenize_matches_rouge_score(varied_texts: list[str]) -> None:
    for text in varied_texts:
        assert tokenize(text) == REFERENCE_TOKENIZER.tokenize(text), text


def test_lcs_length_matches_dynamic_programming() -> None:
    rng = random.Random(3)
    for _ in range(400):
        # Small alphabets force many repeats; lengths cross the 64-token word size.
        alphabet = "abcdefghij"[: rng.randint(1, 10)]
        a = [rng.choice(alphabet) for _ in range(rng.randint(0, 90))]
        b = [rng.choice(alphabet) for _ in range(rng.randint(0, 90))]
        expected = _lcs_table(a, b)[-1][-1] if a and b else 0
        assert lcs_length(a, b) == expected == lcs_length(b, a)


def test_rouge_l_f1_matches_rouge_score(varied_texts: list[str]) -> None:
    rng = random.Random(5)
    pairs = [(rng.choice(varied_texts), rng.choice(varied_texts)) for _ in range(300)]
    pairs += [(t, t) for t in TRICKY_TEXTS]
    words = ["the", "a", "of", "write", "list", "given", "sentence", "7"]
    for _ in range(300):
        pairs.append(
            (
                " ".join(rng.choice(words) for _ in range(rng.randint(0, 80))),
                " ".join(rng.choice(words) for _ in range(rng.randint(0, 80))),
            )
        )
    for target, prediction in pairs:
        ours = rouge_l_f1(tokenize(target), tokenize(prediction))
        assert ours == reference_f1(target, prediction), (target, prediction)


def _edit(rng: random.Random, text: str, vocabulary: list[str]) -> str:
    """A near-duplicate: one to four word replacements, deletions, insertions or swaps."""
    words = text.split() or [rng.choice(vocabulary)]
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(words))
        op = rng.randrange(4)
        if op == 0:
            words[i] = rng.choice(vocabulary)
        elif op == 1 and len(words) > 1:
            del words[i]
        elif op == 2:
            words.insert(i, rng.choice(vocabulary))
        else:
            j = rng.randrange(len(words))
            words[i], words[j] = words[j], words[i]
    return " ".join(words)


def _candidates(seeds: list[str], count: int) -> list[str]:
    """Edited seeds, near-duplicates of earlier candidates, exact repeats, fresh mixes and a few long texts."""
    rng = random.Random(11)
    vocabulary = sorted({w for s in seeds for w in s.split()})
    made: list[str] = []
    while len(made) < count:
        roll = rng.random()
        if roll < 0.4:
            made.append(_edit(rng, rng.choice(seeds), vocabulary))
        elif roll < 0.6 and made:
            made.append(_edit(rng, rng.choice(made), vocabulary))
        elif roll < 0.65:
            made.append(rng.choice(seeds + made))
        elif roll < 0.7:
            made.append(" ".join(rng.sample(seeds, 4)))
        else:
            made.append(" ".join(rng.choice(vocabulary) for _ in range(rng.randint(3, 25))))
    return made


def test_filter_decides_like_the_rouge_score_loop(seed_instructions: list[str]) -> None:
    candidates = _candidates(seed_instructions, 600)
    pool = list(seed_instructions)
    ours = RougeLFilter(texts=seed_instructions)
    kept = 0
    for candidate in candidates:
        scores = [reference_f1(candidate, member) for member in pool]
        expected_best = max(scores)
        verdict = ours.check_and_add(candidate)
        assert verdict.novel == (not expected_best > 0.7), candidate
        assert verdict.score == expected_best, candidate
        if expected_best > 0:
            assert verdict.match_index == int(np.argmax(scores))
            assert verdict.match == pool[verdict.match_index]
        if verdict.novel:
            pool.append(candidate)
            kept += 1
        assert list(ours.texts) == pool
    # Both branches must have been exercised for the comparison to mean anything.
    assert 100 < kept < len(candidates) - 100


def _pair(lcs: int, target_len: int, prediction_len: int) -> tuple[str, str]:
    """Two texts with these lengths and LCS: a shared prefix, then words of their own."""
    common = [f"w{i}" for i in range(lcs)]
    target = common + [f"t{i}" for i in range(target_len - lcs)]
    prediction = common + [f"p{i}" for i in range(prediction_len - lcs)]
    return " ".join(target), " ".join(prediction)


@pytest.mark.parametrize(
    ("lcs", "target_len", "prediction_len", "novel"),
    [
        (7, 10, 10, True),  # 2L/(m+n) = 0.7 and rouge_score rounds it to exactly 0.7: not > 0.7, kept
        (21, 23, 37, True),  # also 0.7 exactly, rounded to 0.6999999999999998: kept
        (7, 7, 13, False),  # also 0.7 exactly, but rounded to 0.7000000000000001 > 0.7: rejected
        (28, 29, 51, False),  # also 0.7 exactly, rounded to 0.7000000000000002: rejected
        (15, 21, 21, False),  # 0.714..., just above: rejected
        (13, 19, 19, True),  # 0.684..., just below: kept
    ],
)
def test_threshold_boundary(lcs: int, target_len: int, prediction_len: int, novel: bool) -> None:
    candidate, member = _pair(lcs, target_len, prediction_len)
    expected = reference_f1(candidate, member)
    assert (not expected > 0.7) == novel, "the case no longer probes the boundary it claims to"
    verdict = RougeLFilter(texts=["unrelated words only", member]).check(candidate)
    assert verdict.score == expected
    assert verdict.novel == novel
    assert verdict.match_index == 1


def test_check_leaves_pool_alone_and_check_and_add_adds_only_novel_texts() -> None:
    pool = RougeLFilter(threshold=0.7)
    first = pool.check_and_add("Write a poem about the sea.")
    assert first.novel and first.score == 0.0 and first.match is None and len(pool) == 1
    assert not pool.check("write a POEM about the sea!!").novel
    assert len(pool) == 1
    repeat = pool.check_and_add("Write a poem about the sea")
    assert not repeat.novel and repeat.score == 1.0 and repeat.match_index == 0 and len(pool) == 1
    empty = pool.check_and_add("간단한 농담 하나 해주세요.")
    assert empty.novel and empty.score == 0.0 and empty.match is None and len(pool) == 2


def test_custom_threshold_and_validation() -> None:
    candidate, member = _pair(5, 10, 10)  # F1 0.5
    assert RougeLFilter(threshold=0.7, texts=[member]).check(candidate).novel
    assert not RougeLFilter(threshold=0.4, texts=[member]).check(candidate).novel
    assert RougeLFilter(threshold=0.5, texts=[member]).check(candidate).novel
    with pytest.raises(ValueError):
        RougeLFilter(threshold=1.5)


def test_filter_scores_across_the_word_size() -> None:
    # Members of up to 64 tokens are scored in uint64 lanes, longer ones with Python ints: both must be exact,
    # including a full 64-token word whose carry falls off the top.
    rng = random.Random(13)
    words = ["the", "a", "of", "to", "list", "write", "x", "y"]
    members = [" ".join(rng.choice(words) for _ in range(n)) for n in (1, 2, 5, 30, 62, 63, 64, 64, 65, 66, 90)]
    pool = RougeLFilter(threshold=1.0, texts=members)
    for _ in range(25):
        candidate = " ".join(rng.choice(words) for _ in range(rng.randint(1, 80)))
        scores = [reference_f1(candidate, member) for member in members]
        verdict = pool.check(candidate)
        assert verdict.score == max(scores)
        assert verdict.match_index == int(np.argmax(scores))


def test_best_match_is_the_first_of_many_ties() -> None:
    # More tied members than the first scoring batch holds: the earliest one must still be reported, as
    # np.argmax over rouge_score's scores would.
    filler = [f"Describe the history of topic number {i} in detail." for i in range(200)]
    twins = ["Write a short poem about the sea at night."] * 100
    pool = RougeLFilter(texts=filler + twins + filler)
    verdict = pool.check("write a short poem about the sea at night")
    assert (verdict.novel, verdict.score, verdict.match_index) == (False, 1.0, 200)
    candidate = "Describe the history of topic number 7 in great detail."
    near = pool.check(candidate)
    assert near.match_index == 7 and near.score == reference_f1(candidate, filler[7])


def test_pruning_keeps_every_member_that_can_reach_the_best_score() -> None:
    # 40 decoys whose overlap bound (0.75) exceeds their score (0.5) fill the first scoring batch; the earliest
    # member scores 0.5 too, with a bound of exactly 0.5, and must still be found.
    pool = RougeLFilter(texts=["a b x y"] + ["b a c x"] * 40)
    verdict = pool.check("a b c d")
    assert (verdict.score, verdict.match_index) == (0.5, 0)
    # Repeated tokens: the bound must count them (min of both counts), or "a a a c" (0.75) is pruned away.
    pool = RougeLFilter(texts=["a b q r"] * 40 + ["a a a c"])
    verdict = pool.check("a a a b")
    assert (verdict.score, verdict.match_index) == (reference_f1("a a a b", "a a a c"), 40)
