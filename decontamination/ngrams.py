"""N-gram keys over word ids: whole chunks of texts in a few numpy passes, one dictionary look-up per word.

Every distinct word of the benchmarks gets a small id (1, 2, ...) once, when the index is built, in the order the
words first appear, so ids and keys are the same in every process and every run. A training word outside that
vocabulary gets ``OUTSIDE`` (0) and the end of each text ``END``: no benchmark n-gram holds either, so a window
holding one is never a match. An n-gram's key is a polynomial over its ids (mod 2**64, numpy's wrapping
arithmetic), mixed with the splitmix64 finaliser so that its top bits index a bitmap. Keys only pick candidates;
every candidate text is checked word for word (index.py), so a collision can never remove a clean row.
"""

from __future__ import annotations

import numpy as np

_P = np.uint64(0x9E3779B97F4A7C15)  # odd
OUTSIDE = 0  # a word in no benchmark item


class Vocabulary(dict):
    """word -> id; a word it does not hold is OUTSIDE (dict's ``__missing__``, so ``map(v.__getitem__, ...)``
    looks every word up in C)."""

    def __missing__(self, word: str) -> int:
        return OUTSIDE


def build_vocabulary(item_words: list[list[str]]) -> Vocabulary:
    vocab = Vocabulary()
    for words in item_words:
        for word in words:
            if word not in vocab:
                vocab[word] = len(vocab) + 1
    return vocab


def word_ids(words: list[str], vocab: Vocabulary) -> np.ndarray:
    return np.fromiter(list(map(vocab.__getitem__, words)), dtype=np.uint64, count=len(words))


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place: every input bit affects every output bit."""
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def window_keys(ids: np.ndarray, n: int) -> np.ndarray:
    """The key of the n ids starting at each position (len(ids) - n + 1 of them): n contiguous passes."""
    count = len(ids) - n + 1
    if count <= 0:
        return np.empty(0, dtype=np.uint64)
    keys = ids[:count].copy()
    with np.errstate(over="ignore"):
        for k in range(1, n):
            keys *= _P
            keys += ids[k : k + count]
    return _mix(keys)


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique without its hash table, which is slow on uint64 (seconds for a few million)."""
    values = np.sort(values)
    keep = np.ones(len(values), dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


class KeyFilter:
    """A bitmap of the top bits of a set of keys (at least 32 bits per key, so about 3% of keys outside the set
    pass it), then an exact search of the sorted keys for those that pass."""

    def __init__(self, keys: np.ndarray):
        self.keys = keys  # sorted, unique
        bits = max(16, int(32 * max(len(keys), 1) - 1).bit_length())
        self.shift = np.uint64(64 - bits)
        slots = keys >> self.shift
        self.bitmap = np.zeros(1 << (bits - 3), dtype=np.uint8)
        np.bitwise_or.at(self.bitmap, slots >> np.uint64(3), np.left_shift(1, slots & np.uint64(7)).astype(np.uint8))

    def members(self, keys: np.ndarray) -> np.ndarray:
        """Positions of ``keys`` that are in the set."""
        if not len(self.keys):
            return np.empty(0, dtype=np.int64)
        slots = keys >> self.shift
        bits = self.bitmap[slots >> np.uint64(3)] >> (slots & np.uint64(7)).astype(np.uint8)
        passed = np.flatnonzero(bits & 1)
        at = np.searchsorted(self.keys, keys[passed])
        at[at == len(self.keys)] = 0
        return passed[self.keys[at] == keys[passed]]

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.bitmap.nbytes
