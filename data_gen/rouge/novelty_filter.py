"""The Self-Instruct novelty filter: a pool of texts and whether a new one has a ROUGE-L F1 above the threshold
with any member, decided exactly as ``rouge_score`` would but pruned by token-overlap bounds (see the package).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Hashable, Iterable, Sequence

import numpy as np

from .scoring import lcs_with_masks, position_masks, tokenize

DEFAULT_THRESHOLD = 0.7

# Pool members up to this many tokens keep their position masks in one machine word.
_WORD_BITS = 64
_ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)

# Bounds and scores are both within a few ulps of exact rationals; a member is skipped only when its bound is
# below the score to beat by far more than that, so rounding can never hide a member that matters.
_PRUNE_SLACK = 1e-9

# How many of the highest-bounded members are scored first, to get a good score to prune the rest against.
_FIRST_BATCH = 32


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one text against the pool.

    ``score`` is the highest ROUGE-L F1 with any pool member, exactly as rouge_score computes it; ``match`` and
    ``match_index`` name the first pool member (in insertion order) reaching it, or are None when no member
    shares a token with the text (score 0).
    """

    novel: bool
    score: float
    match: str | None
    match_index: int | None


class _Buffer:
    """A numpy array that grows by doubling, so appending one value at a time stays amortised O(1)."""

    __slots__ = ("data", "size")

    def __init__(self, dtype: type, capacity: int = 4) -> None:
        self.data = np.zeros(capacity, dtype=dtype)
        self.size = 0

    def append(self, value: int) -> None:
        if self.size == len(self.data):
            grown = np.zeros(2 * len(self.data), dtype=self.data.dtype)
            grown[: self.size] = self.data
            self.data = grown
        self.data[self.size] = value
        self.size += 1

    def view(self) -> np.ndarray:
        return self.data[: self.size]


class _Postings:
    """Where one token occurs: the pool members holding it, how often, and at which positions (short members)."""

    __slots__ = ("members", "counts", "masks")

    def __init__(self) -> None:
        self.members = _Buffer(np.int64)
        self.counts = _Buffer(np.int64)
        self.masks = _Buffer(np.uint64)


class RougeLFilter:
    """A pool of texts, and the Self-Instruct test of whether a new text is novel enough to join it.

    A text is novel when no pool member has a ROUGE-L F1 with it strictly greater than ``threshold``; the
    decisions, scores and tokenization are exactly those of ``rouge_score`` with ``RougeScorer(["rougeL"])``.
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, texts: Iterable[str] = ()) -> None:
        if not 0.0 <= threshold <= 1.0:
            # Below 0 every pair would be "similar", making pruning pointless and the filter meaningless.
            raise ValueError(f"threshold must lie in [0, 1], got {threshold!r}")
        self.threshold = float(threshold)
        self._texts: list[str] = []
        self._vocab: dict[str, int] = {}
        self._postings: list[_Postings] = []
        self._lengths = _Buffer(np.int64)
        self._lowmasks = _Buffer(np.uint64)
        # Token ids of members too long for one word, scored with Python integers instead.
        self._long: dict[int, tuple[list[int], dict[Hashable, int]]] = {}
        # Reused to spread one token's position masks over the whole pool without allocating each time.
        self._scratch = np.zeros(0, dtype=np.uint64)
        self.extend(texts)

    def __len__(self) -> int:
        return len(self._texts)

    @property
    def texts(self) -> Sequence[str]:
        """The pool, in insertion order (indices match ``Verdict.match_index``)."""
        return tuple(self._texts)

    def add(self, text: str) -> int:
        """Put ``text`` in the pool unconditionally; returns its index."""
        index = len(self._texts)
        ids = [self._token_id(token) for token in tokenize(text)]
        short = len(ids) <= _WORD_BITS
        masks = position_masks(ids)
        for tid, count in Counter(ids).items():
            postings = self._postings[tid]
            postings.members.append(index)
            postings.counts.append(count)
            postings.masks.append(masks[tid] if short else 0)
        if not short:
            self._long[index] = (ids, masks)
        self._texts.append(text)
        self._lengths.append(len(ids))
        self._lowmasks.append((1 << len(ids)) - 1 if short else 0)
        return index

    def extend(self, texts: Iterable[str]) -> None:
        """Put every text of ``texts`` in the pool unconditionally (e.g. the seed tasks)."""
        for text in texts:
            self.add(text)

    def check(self, text: str) -> Verdict:
        """Score ``text`` against the whole pool without changing it."""
        tokens = tokenize(text)
        score, index = self._best_match(tokens)
        return Verdict(
            novel=not score > self.threshold,
            score=score,
            match=None if index is None else self._texts[index],
            match_index=index,
        )

    def check_and_add(self, text: str) -> Verdict:
        """Score ``text`` against the pool and add it when novel: one Self-Instruct filtering step."""
        verdict = self.check(text)
        if verdict.novel:
            self.add(text)
        return verdict

    def _token_id(self, token: str) -> int:
        tid = self._vocab.get(token)
        if tid is None:
            tid = self._vocab[token] = len(self._postings)
            self._postings.append(_Postings())
        return tid

    def _best_match(self, tokens: list[str]) -> tuple[float, int | None]:
        """The highest F1 over the pool and the first member reaching it (None when the score is 0)."""
        m = len(tokens)
        # Tokens the pool has never seen match nothing; they only count towards the candidate's length.
        seq = [tid for tid in (self._vocab.get(t) for t in tokens) if tid is not None]
        members, bounds = self._bounded_members(seq, m)
        if members.size == 0:
            return 0.0, None
        # Score the most promising members first, then only those whose bound can still reach the best score.
        if members.size > _FIRST_BATCH:
            first = np.sort(np.argpartition(bounds, members.size - _FIRST_BATCH)[-_FIRST_BATCH:])
        else:
            first = np.arange(members.size)
        scored = members[first]
        scores = self._exact_scores(seq, m, scored)
        bounds[first] = -1.0
        rest = members[bounds >= scores.max() - _PRUNE_SLACK]
        if rest.size:
            scored = np.concatenate([scored, rest])
            scores = np.concatenate([scores, self._exact_scores(seq, m, rest)])
        best = float(scores.max())
        # Ties go to the earliest member, as np.argmax over rouge_score's scores would have it.
        return best, int(scored[scores == best].min())

    def _bounded_members(self, seq: list[int], m: int) -> tuple[np.ndarray, np.ndarray]:
        """Members sharing a token with the candidate (sorted), and an upper bound on each one's F1."""
        if not seq or not self._texts:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        overlap = self._overlap(Counter(seq))
        members = np.flatnonzero(overlap)
        # F1 = 2 L / (m + n) exactly, and L cannot exceed the multiset overlap.
        bounds = 2.0 * overlap[members] / (m + self._lengths.view()[members])
        return members, bounds

    def _overlap(self, counts: Counter[int]) -> np.ndarray:
        """Multiset token overlap of the candidate with every pool member: an upper bound on their LCS."""
        overlap = np.zeros(len(self._texts), dtype=np.int64)
        for tid, count in counts.items():
            postings = self._postings[tid]
            # Within one token's postings every member appears once, so fancy-indexed += is safe.
            if count == 1:
                overlap[postings.members.view()] += 1
            else:
                overlap[postings.members.view()] += np.minimum(postings.counts.view(), count)
        return overlap

    def _exact_scores(self, seq: list[int], m: int, members: np.ndarray) -> np.ndarray:
        """rouge_score's F1 of the candidate (``seq``: its known token ids; ``m``: its length) with ``members``."""
        lengths = self._lengths.view()[members]
        lcs = np.zeros(members.size, dtype=np.int64)
        short = lengths <= _WORD_BITS
        if short.all():
            lcs[:] = self._lcs_short(seq, members)
        else:
            lcs[short] = self._lcs_short(seq, members[short])
            for k in np.flatnonzero(~short):
                ids, masks = self._long[int(members[k])]
                lcs[k] = lcs_with_masks(seq, masks, len(ids))
        # Same operations, in the same order, as rouge_score: target = candidate, prediction = pool member.
        safe_lcs = np.maximum(lcs, 1)
        precision = safe_lcs / lengths
        recall = safe_lcs / m
        f1 = 2 * precision * recall / (precision + recall)
        return np.where(lcs > 0, f1, 0.0)

    def _lcs_short(self, seq: list[int], members: np.ndarray) -> np.ndarray:
        """LCS lengths of ``seq`` with many members of at most 64 tokens at once, one uint64 lane per member."""
        if members.size == 0:
            return np.zeros(0, dtype=np.int64)
        match = {tid: self._member_masks(tid, members) for tid in set(seq)}
        v = np.full(members.size, _ALL_ONES, dtype=np.uint64)
        for tid in seq:
            u = v & match[tid]
            # Bits above a member's length are never read back, so the carry out of bit 63 may be dropped.
            v = (v + u) | (v - u)
        unmatched = np.bitwise_count(v & self._lowmasks.view()[members])
        return self._lengths.view()[members] - unmatched.astype(np.int64)

    def _member_masks(self, tid: int, members: np.ndarray) -> np.ndarray:
        """Position masks of token ``tid`` in each of ``members`` (sorted), 0 where it does not occur."""
        postings = self._postings[tid]
        holders = postings.members.view()
        masks = postings.masks.view()
        if 8 * members.size < holders.size:
            # Few members against a long posting list: binary search beats touching the whole list.
            at = np.minimum(np.searchsorted(holders, members), holders.size - 1)
            return np.where(holders[at] == members, masks[at], np.uint64(0))
        if self._scratch.size < len(self._texts):
            self._scratch = np.zeros(2 * len(self._texts), dtype=np.uint64)
        self._scratch[holders] = masks
        picked = self._scratch[members]
        self._scratch[holders] = 0
        return picked
