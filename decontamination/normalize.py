"""Text normalisation: what two texts must share, after it, for an n-gram of words to count as the same.

The defaults follow lm-eval-harness's decontamination: Unicode NFKC, lowercase, punctuation removed (deleted, not
replaced by a space, so "farmers'" and "farmers" are one word), and words are runs of non-whitespace. Every Unicode
whitespace character that ``str.split`` splits on becomes a plain space, so after ``normalize`` the only separator
left is " ". chunks.py gives the same words for a whole chunk of texts in one pass (the scan's path).
"""

from __future__ import annotations

import sys
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

NormalForm = str  # "NFKC", "NFC" or "none"


@dataclass(frozen=True)
class Normalization:
    lowercase: bool = True
    strip_punctuation: bool = True
    unicode_form: NormalForm = "NFKC"

    def describe(self) -> str:
        parts = [self.unicode_form if self.unicode_form != "none" else "no Unicode normal form"]
        parts += ["lowercase"] if self.lowercase else []
        parts += ["punctuation removed"] if self.strip_punctuation else []
        return ", ".join(parts) + ", whitespace tokens"


@lru_cache(maxsize=2)
def _table(strip_punctuation: bool) -> dict[int, int | None]:
    """Unicode whitespace -> space; punctuation (categories P*) and NUL -> deleted when asked."""
    table: dict[int, int | None] = {0: 32}
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if char.isspace():
            table[code] = 32
        elif strip_punctuation and unicodedata.category(char).startswith("P"):
            table[code] = None
    table[32] = 32
    return table


@lru_cache(maxsize=4)
def _ascii_table(strip_punctuation: bool, lowercase: bool) -> tuple[bytes, bytes]:
    """The table's ASCII part, as bytes.translate takes it (bytes above 127 unchanged: they are parts of UTF-8
    sequences): about 100 times faster than str.translate with a table of every code point."""
    table = _table(strip_punctuation)
    mapping = bytes(b if b > 127 or table.get(b, b) is None else table.get(b, b) for b in range(256))
    if lowercase:
        mapping = mapping.translate(bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz"))
    return mapping, bytes(b for b in range(128) if b in table and table[b] is None)


def normalize(text: str, how: Normalization = Normalization()) -> str:
    if how.unicode_form != "none" and not text.isascii():
        text = unicodedata.normalize(how.unicode_form, text)
    return _translate(text, how.strip_punctuation, how.lowercase)


def _translate(text: str, strip_punctuation: bool, lowercase: bool = False) -> str:
    return _translate_bytes(text, strip_punctuation, lowercase).decode("utf-8", "surrogatepass")


def _translate_bytes(text: str, strip_punctuation: bool, lowercase: bool = False) -> bytes:
    """``text.translate(_table(...))`` (after ``lower()`` when ``lowercase``) as UTF-8, many times faster: ASCII
    characters by one bytes.translate over the UTF-8 bytes (a multi-byte character has no byte below 0x80, so none
    is touched), then every non-ASCII character that changes, all at once (``replace_characters``)."""
    mapping, delete = _ascii_table(strip_punctuation, lowercase)
    if text.isascii():
        return text.encode("ascii").translate(mapping, delete)
    if lowercase and "\u03a3" in text:  # capital sigma: lower() depends on its neighbours
        text, lowercase = text.lower(), False
        mapping, delete = _ascii_table(strip_punctuation, False)
    data = text.encode("utf-8", "surrogatepass").translate(mapping, delete)
    table = _table(strip_punctuation)
    changes = {}
    for char in non_ascii_characters(data):
        to = (char.lower() if lowercase else char).translate(table)
        if to != char:
            changes[char] = to.encode("utf-8", "surrogatepass")
    return replace_characters(data, changes)


def _lead_codes(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each non-ASCII character of UTF-8 bytes starts, its length in bytes, and its bytes packed big-endian
    into one number (numpy, no Python loop per character)."""
    raw = np.frombuffer(data + b"\0\0\0", dtype=np.uint8)
    lead = np.flatnonzero(raw >= 0xC0)
    size = 2 + (raw[lead] >= 0xE0) + (raw[lead] >= 0xF0)
    code = np.zeros(len(lead), dtype=np.uint32)
    for k in range(4):
        code = (code << np.uint32(8)) | np.where(k < size, raw[lead + k], 0).astype(np.uint32)
    return lead, size, code


def _packed(char: str) -> int:
    return int.from_bytes(char.encode("utf-8", "surrogatepass").ljust(4, b"\0"), "big")


def non_ascii_characters(data: bytes) -> list[str]:
    """The distinct non-ASCII characters of UTF-8 bytes."""
    codes = np.unique(_lead_codes(data)[2])
    return [int(c).to_bytes(4, "big").rstrip(b"\0").decode("utf-8", "surrogatepass") for c in codes]


def replace_characters(data: bytes, changes: dict[str, bytes]) -> bytes:
    """``data`` with every occurrence of each non-ASCII character in ``changes`` replaced by its bytes (maybe none,
    maybe several): all at once, in numpy."""
    if not changes:
        return data
    lead, size, code = _lead_codes(data)
    keys = np.array(sorted(_packed(c) for c in changes), dtype=np.uint32)
    values = [changes[c] for c in sorted(changes, key=_packed)]
    at = np.minimum(np.searchsorted(keys, code), len(keys) - 1)
    hit = keys[at] == code
    where, size, which = lead[hit], size[hit], at[hit]
    raw = np.frombuffer(data, dtype=np.uint8)
    keep = np.ones(len(raw), dtype=bool)
    for k in range(4):
        keep[where[k < size] + k] = False
    lengths = np.array([len(v) for v in values], dtype=np.int64)[which]
    table = np.zeros((len(values), max(1, *map(len, values))), dtype=np.uint8)
    for i, value in enumerate(values):
        table[i, : len(value)] = np.frombuffer(value, dtype=np.uint8)
    before = where - (np.cumsum(size) - size)  # positions once the replaced characters are gone
    column = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    inserted = table[np.repeat(which, lengths), column]
    return np.insert(raw[keep], np.repeat(before, lengths), inserted).tobytes()


def words(text: str, how: Normalization = Normalization()) -> list[str]:
    return normalize(text, how).split()
