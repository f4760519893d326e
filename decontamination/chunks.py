"""A whole chunk of texts normalised at once, as UTF-8 bytes: the scan's path. ``normalize`` (normalize.py) is the
definition; this gives the same words, text by text, many times faster.

ASCII characters go through one bytes.translate over the joined texts. A non-ASCII character is then replaced on
its own, wherever it occurs (its normal form, lower-cased, whitespace and punctuation rules applied), when the
result cannot depend on its neighbours: it and every character of its normal form are starters (combining class 0)
that are never the second part of a canonical composition, and none is capital sigma (whose lower case depends on
the next letter). A text holding any other character (a combining mark, a Hangul jamo, sigma, a lone surrogate) is
normalised on its own by ``normalize``.
"""

from __future__ import annotations

import sys
import unicodedata
from functools import lru_cache

import numpy as np

from .normalize import (
    Normalization,
    _ascii_table,
    _lead_codes,
    _packed,
    _table,
    non_ascii_characters,
    normalize,
    replace_characters,
)

SEPARATOR = "\x01"  # ends each text in a chunk: neither space nor punctuation, unchanged by normalisation
_SIGMA = "\u03a3"


@lru_cache(maxsize=1)
def _second_parts() -> frozenset[str]:
    """Every character that is the second of a two-character canonical decomposition (so may compose with the
    character before it), and the Hangul vowel and trailing jamo (composed by rule)."""
    found = {chr(c) for c in [*range(0x1161, 0x1176), *range(0x11A8, 0x11C3)]}
    for code in range(sys.maxunicode + 1):
        parts = unicodedata.decomposition(chr(code)).split()
        if len(parts) == 2 and not parts[0].startswith("<"):
            found.add(chr(int(parts[1], 16)))
    return frozenset(found)


def _standalone(char: str) -> bool:
    return unicodedata.combining(char) == 0 and char not in _second_parts() and char != _SIGMA


@lru_cache(maxsize=65536)
def _replacement(char: str, how: Normalization) -> str | None:
    """What ``normalize`` turns ``char`` into wherever it stands; None when that depends on its neighbours."""
    if "\ud800" <= char <= "\udfff" or not _standalone(char):
        return None
    formed = unicodedata.normalize(how.unicode_form, char) if how.unicode_form != "none" else char
    if not all(map(_standalone, formed)):
        return None
    return (formed.lower() if how.lowercase else formed).translate(_table(how.strip_punctuation))


JOINT = f" {SEPARATOR} ".encode()


def join_texts(texts: list[str]) -> bytes | None:
    """The texts as one chunk of UTF-8, each followed by the word SEPARATOR; None when a text itself holds it."""
    joined = JOINT.join([text.encode("utf-8", "surrogatepass") for text in texts]) + JOINT  # no str of the whole
    return joined if joined.count(SEPARATOR.encode()) == len(texts) else None


def normalized_chunk(joined: bytes, how: Normalization) -> bytes:
    """A chunk from ``join_texts`` normalised, as UTF-8 bytes: the words of each text are those of ``normalize``."""
    mapping, delete = _ascii_table(how.strip_punctuation, how.lowercase)
    data = joined.translate(mapping, delete)
    if joined.isascii():
        return data
    changes, hard = {}, []
    for char in non_ascii_characters(data):
        to = _replacement(char, how)
        if to is None:
            hard.append(_packed(char))
        elif to != char:
            changes[char] = to.encode("utf-8", "surrogatepass")
    data = replace_characters(data, changes)
    if not hard:
        return data
    return _redo_texts(joined, data, np.array(sorted(hard), dtype=np.uint32), how)


def _redo_texts(joined: bytes, data: bytes, hard: np.ndarray, how: Normalization) -> bytes:
    """``data`` with each text that holds one of the ``hard`` characters normalised on its own."""
    lead, _, code = _lead_codes(data)
    at = np.minimum(np.searchsorted(hard, code), len(hard) - 1)
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord(SEPARATOR))  # each text's separator
    joined_ends = np.flatnonzero(np.frombuffer(joined, dtype=np.uint8) == ord(SEPARATOR))  # the same, before
    pieces, done = [], 0
    for i in np.unique(np.searchsorted(ends, lead[hard[at] == code])).tolist():
        start = int(ends[i - 1]) + 2 if i else 0
        first = int(joined_ends[i - 1]) + 2 if i else 0
        text = joined[first : int(joined_ends[i]) - 1].decode("utf-8", "surrogatepass")
        pieces += [data[done:start], normalize(text, how).encode("utf-8", "surrogatepass")]
        done = int(ends[i]) - 1
    return b"".join([*pieces, data[done:]])
