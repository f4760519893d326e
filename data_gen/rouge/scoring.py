"""ROUGE-L of two texts exactly as ``rouge_score`` computes it: its tokenizer, a bit-parallel LCS and its F1.

The novelty filter tokenizes with these and runs the one-pair LCS for members too long for one machine word; its
vectorised F1 repeats ``rouge_l_f1``'s operations over many members at once.
"""

from __future__ import annotations

import re
from typing import Hashable, Sequence

# rouge_score lowercases, turns every run of characters outside [a-z0-9] into a space, splits on whitespace and
# keeps the [a-z0-9]+ pieces: exactly the maximal ASCII alphanumeric runs of the lowercased text. Lowercasing must
# come first, since some non-ASCII letters lowercase to ASCII ones (the Kelvin sign, dotted capital I).
_TOKEN_RE = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Tokens of ``text`` exactly as ``rouge_score``'s default tokenizer (``use_stemmer=False``) produces them."""
    return _TOKEN_RE.findall(text.lower())


def position_masks(seq: Sequence[Hashable]) -> dict[Hashable, int]:
    """For each distinct item of ``seq``, an integer whose bit ``i`` is set where ``seq[i]`` is that item."""
    masks: dict[Hashable, int] = {}
    for i, item in enumerate(seq):
        masks[item] = masks.get(item, 0) | (1 << i)
    return masks


def lcs_with_masks(a: Sequence[Hashable], b_masks: dict[Hashable, int], b_len: int) -> int:
    """LCS length of ``a`` and the sequence described by ``b_masks``, bit-parallel (Allison-Dix, Hyyro)."""
    full = (1 << b_len) - 1
    v = full
    for item in a:
        u = v & b_masks.get(item, 0)
        # Each zero bit of v marks a column where the LCS grew; the carry moves a match to its leftmost use.
        v = ((v + u) | (v - u)) & full
    return b_len - v.bit_count()


def lcs_length(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Length of the longest common subsequence of ``a`` and ``b``."""
    if len(a) > len(b):
        # One Python-level step per item of the iterated side, while wider ints cost next to nothing:
        # iterate over the shorter sequence and put the longer one in the bits.
        a, b = b, a
    if not a:
        return 0
    return lcs_with_masks(a, position_masks(b), len(b))


def _fmeasure(lcs: int, target_len: int, prediction_len: int) -> float:
    """ROUGE-L F1 from an LCS length, with rouge_score's own operations so that it rounds the same way."""
    if lcs == 0:
        # rouge_score returns 0 for empty inputs and when precision + recall == 0.
        return 0.0
    precision = lcs / prediction_len
    recall = lcs / target_len
    return 2 * precision * recall / (precision + recall)


def rouge_l_f1(a_tokens: Sequence[str], b_tokens: Sequence[str]) -> float:
    """ROUGE-L F1 of two token lists: ``rouge_score``'s ``score(target=a, prediction=b)["rougeL"].fmeasure``.

    The value does not depend on which side is the target: only ``2 * p * r`` and ``p + r`` enter, and both are
    symmetric in floating point (doubling is exact).
    """
    if not a_tokens or not b_tokens:
        return 0.0
    return _fmeasure(lcs_length(a_tokens, b_tokens), len(a_tokens), len(b_tokens))
