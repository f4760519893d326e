"""Text normalisation: what two texts must share, after it, for an n-gram of words to count as the same.

The defaults follow lm-eval-harness's decontamination: Unicode NFKC, lowercase, punctuation removed (deleted, not
replaced by a space, so "farmers'" and "farmers" are one word), and words are runs of non-whitespace. Every Unicode
whitespace character that ``str.split`` splits on becomes a plain space, so after ``normalize`` the only separator
left is " ". ``chunk_words`` gives the same words for a whole chunk of texts in one pass (the scan's path).
"""

from __future__ import annotations

import sys
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

NormalForm = str  # "NFKC", "NFC" or "none"
SEPARATOR = "\x01"  # ends each text in chunk_words: neither space nor punctuation, unchanged by normalisation


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
    """``text.translate(_table(...))`` (after ``lower()`` when ``lowercase``), many times faster: ASCII characters
    by one bytes.translate over the UTF-8 bytes (a multi-byte character has no byte below 0x80, so none is
    touched), then each distinct non-ASCII character that changes by one bytes.replace (a text holds few)."""
    mapping, delete = _ascii_table(strip_punctuation, lowercase)
    if text.isascii():
        return text.encode("ascii").translate(mapping, delete).decode("ascii")
    if lowercase and "\u03a3" in text:  # capital sigma: lower() depends on its neighbours
        text, lowercase = text.lower(), False
        mapping, delete = _ascii_table(strip_punctuation, False)
    data = text.encode("utf-8", "surrogatepass").translate(mapping, delete)
    table = _table(strip_punctuation)
    for char in _non_ascii_characters(data):
        to = (char.lower() if lowercase else char).translate(table)
        if to != char:
            data = data.replace(char.encode("utf-8", "surrogatepass"), to.encode("utf-8", "surrogatepass"))
    return data.decode("utf-8", "surrogatepass")


def _non_ascii_characters(data: bytes) -> list[str]:
    """The distinct non-ASCII characters of UTF-8 bytes, from their lead bytes (numpy, no Python loop per
    character)."""
    data = np.frombuffer(data + b"\0\0\0", dtype=np.uint8)
    lead = np.flatnonzero(data >= 0xC0)
    size = 2 + (data[lead] >= 0xE0) + (data[lead] >= 0xF0)
    code = np.zeros(len(lead), dtype=np.uint32)
    for k in range(4):
        code = (code << np.uint32(8)) | np.where(k < size, data[lead + k], 0).astype(np.uint32)
    return [int(c).to_bytes(4, "big").rstrip(b"\0").decode("utf-8", "surrogatepass") for c in np.unique(code)]


def words(text: str, how: Normalization = Normalization()) -> list[str]:
    return normalize(text, how).split()


def chunk_words(texts: list[str], how: Normalization, separator: str = SEPARATOR) -> list[str]:
    """The words of many texts, each text followed by the word ``separator``: one normalisation pass over the
    joined texts (the same words as ``words`` of each text: the joint is a space, where no normal form, case
    mapping or deletion reaches across). A text that itself holds ``separator`` sends the chunk text by text."""
    joint = f" {separator} "
    joined = joint.join(texts) + joint
    if joined.count(separator) != len(texts):
        return [w for text in texts for w in (*words(text, how), separator)]
    if how.unicode_form != "none" and not joined.isascii():  # text by text, only those that change
        form = how.unicode_form
        texts = [t if t.isascii() or unicodedata.is_normalized(form, t) else unicodedata.normalize(form, t)
                 for t in texts]  # fmt: skip
        joined = joint.join(texts) + joint
    return _translate(joined, how.strip_punctuation, how.lowercase).split()
