"""N-gram keys straight from normalised UTF-8 bytes: whole chunks of texts in a few numpy passes, no Python object
per word.

A word is a run of bytes other than the space (after normalisation the space is the only separator left). Its hash
is a polynomial over its bytes mod 2**64, computed for every word of a chunk at once from prefix sums (each word's
slice of the prefix sum, divided by the power of the multiplier at its start: the multiplier is odd, so it has an
inverse mod 2**64). An n-gram's key is a polynomial over its words' hashes, mixed with the splitmix64 finaliser so
that its top bits index a bitmap. The same function hashes the benchmark side, so keys agree in every process and
every run. Keys only pick candidates; every candidate text is checked word for word (index.py), so a collision can
never remove a clean row.
"""

from __future__ import annotations

import numpy as np

from .chunks import SEPARATOR, join_texts, normalized_chunk
from .normalize import Normalization, normalize

_P = np.uint64(0x9E3779B97F4A7C15)  # odd: the multiplier over words
_B = 0x100000001B3  # odd: the multiplier over bytes
_B_INVERSE = pow(_B, -1, 1 << 64)
_powers = {"up": np.ones(1, dtype=np.uint64), "down": np.ones(1, dtype=np.uint64)}


def _power_table(length: int) -> tuple[np.ndarray, np.ndarray]:
    """_B**k and _B**-k mod 2**64 for k < length, grown by doubling and kept."""
    if len(_powers["up"]) < length:
        size = max(length, 2 * len(_powers["up"]))
        for name, base in (("up", _B), ("down", _B_INVERSE)):
            table = np.full(size, base, dtype=np.uint64)
            table[0] = 1
            _powers[name] = np.cumprod(table, dtype=np.uint64)
    return _powers["up"][:length], _powers["down"][:length]


def word_hashes(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The hash of each word of normalised UTF-8 bytes, and each word's first and last-plus-one byte offsets."""
    raw = np.frombuffer(data, dtype=np.uint8)
    inside = np.empty(len(raw) + 2, dtype=bool)
    inside[0] = inside[-1] = False
    np.not_equal(raw, 32, out=inside[1:-1])
    edges = np.flatnonzero(inside[1:] != inside[:-1])
    starts, ends = edges[0::2], edges[1::2]
    up, down = _power_table(len(raw) + 1)
    prefix = np.empty(len(raw) + 1, dtype=np.uint64)
    prefix[0] = 0
    with np.errstate(over="ignore"):
        np.multiply(up[: len(raw)], raw, out=prefix[1:])
        np.cumsum(prefix[1:], out=prefix[1:])
        hashes = prefix[ends]
        hashes -= prefix[starts]
        hashes *= down[starts]
    return hashes, starts, ends


def text_hashes(texts: bytes | list[str], how: Normalization) -> tuple[np.ndarray, np.ndarray]:
    """The word hashes of many texts in a row (a list, or a chunk from ``join_texts``), each text followed by one end
    word, and the positions of the end words (text i's words lie between end i-1 and end i). One normalisation pass
    over the joined texts; texts of which one holds the end word are hashed text by text."""
    joined = texts if isinstance(texts, bytes) else join_texts(texts)
    if joined is not None:
        data = normalized_chunk(joined, how)
        hashes, starts, ends = word_hashes(data)
        raw = np.frombuffer(data, dtype=np.uint8)
        return hashes, np.flatnonzero((ends - starts == 1) & (raw[starts] == ord(SEPARATOR)))
    parts, stops, total = [], [], 0
    for text in texts:
        hashes = word_hashes(normalize(text, how).encode("utf-8", "surrogatepass"))[0]
        parts += [hashes, np.ones(1, dtype=np.uint64)]
        total += len(hashes) + 1
        stops.append(total - 1)
    return np.concatenate(parts or [np.empty(0, dtype=np.uint64)]), np.array(stops, dtype=np.int64)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place: every input bit affects every output bit."""
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def window_keys(hashes: np.ndarray, n: int) -> np.ndarray:
    """The key of the n word hashes starting at each position (len(hashes) - n + 1 of them): n contiguous passes."""
    count = len(hashes) - n + 1
    if count <= 0:
        return np.empty(0, dtype=np.uint64)
    keys = hashes[:count].copy()
    with np.errstate(over="ignore"):
        for k in range(1, n):
            keys *= _P
            keys += hashes[k : k + count]
    return _mix(keys)


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique without its hash table, which is slow on uint64 (seconds for a few million)."""
    values = np.sort(values)
    keep = np.ones(len(values), dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


class _Bitmap:
    """One bit per slot, ``bits_per_key`` slots a key: a key's top bits pick the byte, the three below them the bit.
    ``salt`` (odd) remixes the keys first, so that two bitmaps over the same keys fail independently."""

    def __init__(self, keys: np.ndarray, bits_per_key: int, salt: int):
        bits = max(16, int(bits_per_key * max(len(keys), 1) - 1).bit_length())
        self.shift, self.salt = np.uint64(64 - bits), np.uint64(salt)
        self.bytes = np.zeros(1 << (bits - 3), dtype=np.uint8)
        at, bit = self._slots(keys)
        np.bitwise_or.at(self.bytes, at, np.left_shift(1, bit))

    def _slots(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(over="ignore"):
            slot = (keys * self.salt) >> self.shift
        return slot >> np.uint64(3), (slot & np.uint64(7)).astype(np.uint8)

    def passed(self, keys: np.ndarray) -> np.ndarray:
        """Positions of ``keys`` whose bit is set: every key of the set, and a few others."""
        at, bit = self._slots(keys)
        found = self.bytes[at]
        found >>= bit
        return np.flatnonzero(found & 1)


class KeyFilter:
    """Set membership for millions of keys a second: a small bitmap (8 bits a key, a few MiB, so near the cache; it
    lets about 12% of keys outside the set through), then a large one with other bits (32 bits a key; about 3% of
    those through), then an exact search of the sorted keys for the few left."""

    def __init__(self, keys: np.ndarray):
        self.keys = keys  # sorted, unique
        self.coarse = _Bitmap(keys, 8, 1)
        self.fine = _Bitmap(keys, 32, 0xD6E8FEB86659FD93)

    def members(self, keys: np.ndarray) -> np.ndarray:
        """Positions of ``keys`` that are in the set."""
        if not len(self.keys):
            return np.empty(0, dtype=np.int64)
        passed = self.coarse.passed(keys)
        passed = passed[self.fine.passed(keys[passed])]
        candidates = keys[passed]
        at = np.searchsorted(self.keys, candidates)
        at[at == len(self.keys)] = 0
        return passed[self.keys[at] == candidates]

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.coarse.bytes.nbytes + self.fine.bytes.nbytes
