"""The plain Python reference: sets of n-gram tuples. Slow and obviously right; tests and bench/decontamination.py
check the vectorised scan against it."""

from __future__ import annotations

from .normalize import Normalization, words


def ngram_set(text: str, n: int, how: Normalization = Normalization()) -> set[tuple[str, ...]]:
    tokens = words(text, how)
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def reference_index(item_texts: list[str], n: int, how: Normalization = Normalization()) -> dict[tuple, set[int]]:
    index: dict[tuple, set[int]] = {}
    for i, text in enumerate(item_texts):
        for gram in ngram_set(text, n, how):
            index.setdefault(gram, set()).add(i)
    return index


def reference_matches(texts: list[str], index: dict[tuple, set[int]], n: int, how=Normalization()) -> set[tuple]:
    """(text index, item index) for every text that shares an n-gram with an item."""
    found = set()
    for t, text in enumerate(texts):
        for gram in ngram_set(text, n, how):
            for item in index.get(gram, ()):
                found.add((t, item))
    return found
