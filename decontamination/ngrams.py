"""Vectorised n-gram hashing of normalised text: whole batches of texts in a few numpy passes, no Python per word.

A batch of normalised texts is joined with a separator word and read as UTF-8 bytes. A word is a run of bytes
other than the space; its hash is a polynomial over its bytes, read off prefix sums (mod 2**64, so numpy's
wrapping arithmetic is the modular arithmetic) and mixed with the splitmix64 finaliser. An n-gram's hash is the
same construction over its word hashes. An n-gram never spans two texts: its first and last word must lie in the
same text. Hashes only pick candidates; every candidate is checked word for word (index.py), so a collision can
never remove a clean row.
"""

from __future__ import annotations

import numpy as np

_P = np.uint64(0x100000001B3)  # odd, so it has an inverse mod 2**64
_Q = np.uint64(0x9E3779B97F4A7C15)
_SEPARATOR = "\x00"  # normalize() turns NUL into a space, so a normalised text never holds this word
_POWERS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _powers(base: np.uint64, length: int) -> tuple[np.ndarray, np.ndarray]:
    """base**i and base**-i (mod 2**64) for i < length, cached and grown as needed.

    Built as an outer product of block powers and in-block powers: numpy's cumprod on uint64 is about 100 ns per
    element, an outer product a few.
    """
    have = _POWERS.get(int(base))
    if have is None or len(have[0]) < length:
        size = max(2 * length, 1 << 20, 2 * len(have[0]) if have else 0)
        have = _POWERS[int(base)] = (_power_table(int(base), size), _power_table(pow(int(base), -1, 1 << 64), size))
    return have[0][:length], have[1][:length]


def _power_table(base: int, size: int, block: int = 1 << 12) -> np.ndarray:
    mask = (1 << 64) - 1
    inner = np.array([pow(base, j, 1 << 64) for j in range(block)], dtype=np.uint64)
    step = pow(base, block, 1 << 64)
    outer = [1]
    for _ in range((size + block - 1) // block - 1):
        outer.append(outer[-1] * step & mask)
    with np.errstate(over="ignore"):
        return (np.array(outer, dtype=np.uint64)[:, None] * inner[None, :]).ravel()[:size]


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit affects every output bit."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _window_hashes(values: np.ndarray, starts: np.ndarray, ends: np.ndarray, base: np.uint64) -> np.ndarray:
    """The polynomial hash of values[s:e] for each (s, e), from one prefix sum."""
    up, down = _powers(base, len(values) + 1)
    with np.errstate(over="ignore"):
        prefix = np.zeros(len(values) + 1, dtype=np.uint64)
        np.cumsum(values * up[: len(values)], out=prefix[1:])
        return _mix((prefix[ends] - prefix[starts]) * down[starts])


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique without its hash table, which is slow on uint64 (seconds for a few million)."""
    values = np.sort(values)
    keep = np.ones(len(values), dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


def word_hashes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(hash of each word, index of the text it is in), for normalised texts."""
    joined = f" {_SEPARATOR} ".join(texts).encode("utf-8")
    data = np.frombuffer(joined, dtype=np.uint8)
    is_word = np.empty(len(data) + 2, dtype=np.int8)
    is_word[0] = is_word[-1] = 0
    is_word[1:-1] = data != 32
    edges = np.diff(is_word)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    separator = (ends - starts == 1) & (data[starts] == 0)
    text_of = np.cumsum(separator)
    keep = ~separator
    hashes = _window_hashes(data.astype(np.uint64) + np.uint64(1), starts[keep], ends[keep], _P)
    return hashes, text_of[keep]


def ngram_hashes(texts: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(hash of each n-gram, index of its text), for normalised texts; a text shorter than n has none."""
    words, text_of = word_hashes(texts)
    if len(words) < n:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64)
    starts = np.arange(len(words) - n + 1)
    same_text = text_of[starts] == text_of[starts + n - 1]
    starts = starts[same_text]
    return _window_hashes(words, starts, starts + n, _Q), text_of[starts]


def positioned_ngram_hashes(text: str, n: int) -> np.ndarray:
    """The hash of the n-gram starting at each word of one normalised text (index = word position)."""
    return ngram_hashes([text], n)[0]
