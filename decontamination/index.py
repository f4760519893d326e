"""The benchmark side as a sorted array of n-gram hashes, the fast scan of training texts against it, and the exact
word-for-word check of the few texts the scan flags.

Items shorter than n words have no n-gram and are not checked; they are counted per benchmark (``too_short``).
Matching such an item whole, as some tools do, would remove any row that contains a short phrase such as "Which
of these is a mammal?": the decision is to report them, not to guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .benchmarks import BenchmarkItem
from .ngrams import KeyFilter, sorted_unique, text_hashes, window_keys, word_hashes
from .normalize import Normalization, normalize


@dataclass
class ItemMatch:
    """One benchmark item found in one training text: which words matched, and how much of the item they cover."""

    item: int  # index into BenchmarkIndex.items
    coverage: float  # fraction of the item's words inside a matched n-gram
    span: tuple[int, int]  # the longest matched run, as word positions in the normalised training text
    ngrams: int  # matched n-gram positions in the training text


@dataclass
class BenchmarkIndex:
    items: list[BenchmarkItem]
    n: int
    how: Normalization
    keys: KeyFilter  # the sorted unique n-gram keys of every item, behind a bitmap
    pair_hashes: np.ndarray  # sorted key of each (key, item) pair ...
    pair_items: np.ndarray  # ... and its item
    too_short: dict[str, int]  # benchmark -> items with fewer than n words
    _ngram_positions: dict[int, dict[tuple, list[int]]] = field(default_factory=dict)

    @classmethod
    def build(cls, items: list[BenchmarkItem], n: int, how: Normalization) -> BenchmarkIndex:
        hashes, ends = text_hashes([item.text for item in items], how)
        keys = window_keys(hashes, n)
        ended = np.zeros(len(hashes) + 1, dtype=np.int64)
        ended[ends + 1] = 1
        ended = np.cumsum(ended)  # ended[p]: items ended before word p
        starts = np.flatnonzero(ended[n : n + len(keys)] == ended[: len(keys)])  # windows inside one item
        keys, item_of = keys[starts], ended[starts]
        order = np.lexsort((item_of, keys))
        keys, item_of = keys[order], item_of[order]
        first = np.ones(len(keys), dtype=bool)
        first[1:] = (keys[1:] != keys[:-1]) | (item_of[1:] != item_of[:-1])
        lengths = np.diff(ends, prepend=-1) - 1
        too_short: dict[str, int] = {}
        for item, length in zip(items, lengths.tolist()):
            too_short.setdefault(item.benchmark, 0)
            too_short[item.benchmark] += length < n
        return cls(items, n, how, KeyFilter(sorted_unique(keys)), keys[first], item_of[first], too_short)

    @property
    def hashes(self) -> np.ndarray:
        return self.keys.keys

    @property
    def ngram_count(self) -> int:
        return len(self.hashes)

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.pair_hashes.nbytes + self.pair_items.nbytes

    def flag(self, texts: bytes | list[str]) -> np.ndarray:
        return flag_texts(self.keys, self.n, self.how, texts)

    def verify(self, text: str) -> list[ItemMatch]:
        """The items one training text really shares an n-gram with, checked word for word (no hash decides)."""
        words = normalize(text, self.how).split()
        hashes = window_keys(word_hashes(" ".join(words).encode("utf-8", "surrogatepass"))[0], self.n)
        matched: dict[int, list[int]] = {}  # item -> positions in the training text
        lo = np.searchsorted(self.pair_hashes, hashes, side="left")
        hi = np.searchsorted(self.pair_hashes, hashes, side="right")
        for position in np.flatnonzero(hi > lo):
            gram = tuple(words[position : position + self.n])
            for item in self.pair_items[lo[position] : hi[position]]:
                if gram in self._positions(int(item)):
                    matched.setdefault(int(item), []).append(int(position))
        return [self._describe(item, positions, words) for item, positions in sorted(matched.items())]

    def _positions(self, item: int) -> dict[tuple, list[int]]:
        """Each n-gram of an item and where it starts (an n-gram may repeat), built for the items that are hit."""
        found = self._ngram_positions.get(item)
        if found is None:
            words = normalize(self.items[item].text, self.how).split()
            found = {}
            for p in range(len(words) - self.n + 1):
                found.setdefault(tuple(words[p : p + self.n]), []).append(p)
            self._ngram_positions[item] = found
        return found

    def _describe(self, item: int, positions: list[int], words: list[str]) -> ItemMatch:
        grams = self._positions(item)
        item_words = sum(len(v) for v in grams.values()) + self.n - 1
        covered: set[int] = set()
        for p in positions:
            for start in grams[tuple(words[p : p + self.n])]:
                covered.update(range(start, start + self.n))
        runs, start, end = [], positions[0], positions[0] + self.n
        for p in positions[1:]:
            if p <= end:
                end = max(end, p + self.n)
            else:
                runs.append((start, end))
                start, end = p, p + self.n
        runs.append((start, end))
        longest = max(runs, key=lambda r: (r[1] - r[0], -r[0]))
        return ItemMatch(item, len(covered) / item_words, longest, len(positions))


def flag_texts(keys: KeyFilter, n: int, how: Normalization, texts: bytes | list[str]) -> np.ndarray:
    """Indices of the texts (not yet normalised; a list, or a chunk from ``join_texts``) holding at least one
    benchmark n-gram key inside the text: candidates, not verdicts."""
    hashes, ends = text_hashes(texts, how)
    hits = keys.members(window_keys(hashes, n))
    text_of = np.searchsorted(ends, hits)  # the text a window starts in ...
    inside = hits + n - 1 < ends[np.minimum(text_of, len(ends) - 1)]  # ... and ends in
    return sorted_unique(text_of[inside]).astype(np.int64)
