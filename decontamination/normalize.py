"""Text normalisation: what two texts must share, after it, for an n-gram of words to count as the same.

The defaults follow lm-eval-harness's decontamination: Unicode NFKC, lowercase, punctuation removed (deleted, not
replaced by a space, so "farmers'" and "farmers" are one word), and words are runs of non-whitespace. Every Unicode
whitespace character that ``str.split`` splits on becomes a plain space, so after ``normalize`` the only separator
left is " " (the vectorised hashing in ngrams.py splits UTF-8 bytes on 0x20 and agrees with ``str.split``).
"""

from __future__ import annotations

import sys
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

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


@lru_cache(maxsize=2)
def _ascii_table(strip_punctuation: bool) -> tuple[bytes, bytes]:
    """The same table for ASCII text, as bytes.translate takes it: about 100 times faster than str.translate with
    a table of every code point."""
    table = _table(strip_punctuation)
    mapping = bytes(table.get(b, b) if table.get(b, b) is not None else b for b in range(256))
    return mapping, bytes(b for b in range(128) if b in table and table[b] is None)


def normalize(text: str, how: Normalization = Normalization()) -> str:
    if how.unicode_form != "none":
        text = unicodedata.normalize(how.unicode_form, text)
    if how.lowercase:
        text = text.lower()
    if text.isascii():
        mapping, delete = _ascii_table(how.strip_punctuation)
        return text.encode("ascii").translate(mapping, delete).decode("ascii")
    return text.translate(_table(how.strip_punctuation))


def words(text: str, how: Normalization = Normalization()) -> list[str]:
    return normalize(text, how).split()
