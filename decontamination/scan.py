"""Decontaminating a list of rows: flag candidates in bulk (ngrams.py), verify them exactly (index.py), apply the
match rule, and say what was removed and why.

Match rules: ``ngram`` removes a row that shares any n-gram with a benchmark item (lm-eval-harness);
``coverage`` removes it when the matched n-grams cover at least ``threshold`` of some item's words (open-instruct).
The result depends only on the rows, the benchmarks and the options, never on the number of workers or chunks.
"""

from __future__ import annotations

import multiprocessing
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterator

import numpy as np

from distill_core.errors import DataError

from .chunks import join_texts
from .index import BenchmarkIndex, ItemMatch
from .index import flag_texts as flag_chunk
from .normalize import normalize
from .rows import Check, row_texts

CHUNK_CHARS = 400_000  # a chunk's arrays stay near the cache: two processes scale, one chunk of megabytes does not
MIN_CHUNKS_TO_SHARE = 8  # fewer, and starting the workers costs more than it saves


@dataclass
class Options:
    check: Check = "both"
    columns: tuple[str, ...] | None = None
    rule: str = "ngram"  # "ngram" or "coverage"
    threshold: float = 1.0
    workers: int = 1
    max_examples: int = 3


@dataclass
class Result:
    clean: list[dict]
    removed: list[dict]
    report: dict[str, dict]  # benchmark -> counts and examples
    rows: int
    texts: int
    candidates: int = 0  # rows the hash scan flagged (verified afterwards)
    rows_without_text: int = 0
    hit_items: dict[str, set] = field(default_factory=dict)


_WORKER: tuple | None = None  # a worker's key filter, n and normalisation


def _start_worker(*state) -> None:
    global _WORKER
    _WORKER = state


def _flag_chunk(chunk: bytes | list[str]) -> np.ndarray:
    return flag_chunk(*_WORKER, chunk)


def chunk_spans(texts: list[str], chars: int | None = None) -> list[tuple[int, int]]:
    """Consecutive (start, end) ranges of the texts holding about ``chars`` (CHUNK_CHARS) characters each."""
    chars = chars or CHUNK_CHARS
    sizes = np.cumsum([len(t) for t in texts])
    total = int(sizes[-1]) if len(texts) else 0
    cuts = np.searchsorted(sizes, np.arange(chars, total, chars)) + 1
    bounds = sorted({0, len(texts), *np.minimum(cuts, len(texts)).tolist()})
    return [(a, b) for a, b in zip(bounds, bounds[1:])]


def _chunks(texts: list[str], spans: list[tuple[int, int]]) -> Iterator[bytes | list[str]]:
    for a, b in spans:
        joined = join_texts(texts[a:b])
        yield texts[a:b] if joined is None else joined


def flag_texts(index: BenchmarkIndex, texts: list[str], workers: int = 1) -> np.ndarray:
    """Indices of the texts with a benchmark n-gram key, in chunks, over ``workers`` processes. The workers are
    started fresh (not forked: after a fork, every page of the texts this process then reads would be copied) and
    get the key filter once; each chunk goes to them as one UTF-8 string, made as they ask for it."""
    spans = chunk_spans(texts)
    state = (index.keys, index.n, index.how)
    if workers > 1 and len(spans) >= MIN_CHUNKS_TO_SHARE:
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers, initializer=_start_worker, initargs=state) as pool:
            flagged = list(pool.imap(_flag_chunk, _chunks(texts, spans), chunksize=1))
    else:
        flagged = [flag_chunk(*state, chunk) for chunk in _chunks(texts, spans)]
    return np.concatenate([f + a for f, (a, _) in zip(flagged, spans)] or [np.empty(0, dtype=np.int64)])


def decontaminate(rows: list[dict], index: BenchmarkIndex, options: Options, source: str) -> Result:
    texts, row_of, where = [], [], []
    for i, row in enumerate(rows):
        for column, text in row_texts(row, options.check, options.columns):
            texts.append(text)
            row_of.append(i)
            where.append(column)
    if not texts:
        columns = ", ".join(options.columns or ("messages", "prompt", "chosen", "rejected", "completions"))
        raise DataError(
            f"{source}: no row has {options.check} text to check in its columns ({columns}); set check or "
            f"text_columns to the columns that hold the text"
        )
    flagged = flag_texts(index, texts, options.workers)
    found: dict[int, list[dict]] = {}
    for t in flagged.tolist():
        for match in index.verify(texts[t]):
            if options.rule == "ngram" or match.coverage >= options.threshold:
                found.setdefault(row_of[t], []).append(_describe(index, match, where[t], texts[t]))
    result = Result(
        clean=[row for i, row in enumerate(rows) if i not in found],
        removed=[{"row_index": i, "row": rows[i], "matches": found[i]} for i in sorted(found)],
        report={},
        rows=len(rows),
        texts=len(texts),
        candidates=len({row_of[t] for t in flagged.tolist()}),
        rows_without_text=len(rows) - len(set(row_of)),
    )
    result.report = _report(index, result, options.max_examples)
    return result


def _describe(index: BenchmarkIndex, match: ItemMatch, column: str, text: str) -> dict:
    item = index.items[match.item]
    words = _offsets(text, index.how)[1]
    return {
        "benchmark": item.benchmark,
        "item_id": item.item_id,
        "item_text": item.text,
        "column": column,
        "coverage": round(match.coverage, 4),
        "matched_ngrams": match.ngrams,
        "span": " ".join(words[match.span[0] : match.span[1]]),
        **excerpt(text, index, match.span),
    }


def excerpt(text: str, index: BenchmarkIndex, span: tuple[int, int], context: int = 80) -> dict:
    """The training text around the matched span: ``excerpt``, the span in **bold**, and ``excerpt_parts``, the text
    before it, the span and the text after (the text itself may hold ``**``: a page marks the span from the parts).

    By word positions of the normalised text, mapped back to the original through its whitespace tokens (each
    normalises to at most a few words)."""
    offsets, words = _offsets(text, index.how)
    if len(offsets) != len(words):  # an odd Unicode case: show normalised words
        parts = [" ".join(words[max(0, span[0] - 10) : span[0]]) + " ", " ".join(words[span[0] : span[1]]), ""]
    else:
        start, end = offsets[span[0]][0], offsets[span[1] - 1][1]
        lead, tail = ("…" if start > context else ""), ("…" if end + context < len(text) else "")
        parts = [lead + text[max(0, start - context) : start], text[start:end], text[end : end + context] + tail]
    return {"excerpt": "**".join(parts), "excerpt_parts": parts}


@lru_cache(maxsize=16)
def _offsets(text: str, how) -> tuple[list[tuple[int, int]], list[str]]:
    """Each normalised word's whitespace token in the original text, and the normalised words (one text may match
    hundreds of items: computed once)."""
    offsets: list[tuple[int, int]] = []
    for token in re.finditer(r"\S+", text):
        offsets.extend([token.span()] * len(normalize(token.group(), how).split()))
    return offsets, normalize(text, how).split()


def _report(index: BenchmarkIndex, result: Result, max_examples: int) -> dict[str, dict]:
    report: dict[str, dict] = {}
    for item in index.items:
        entry = report.setdefault(item.benchmark, {"items": 0, "too_short": index.too_short.get(item.benchmark, 0)})
        entry["items"] += 1
    for name, entry in report.items():
        hit_items: set[str] = set()
        rows_removed, examples = 0, []
        for removed in result.removed:
            mine = [m for m in removed["matches"] if m["benchmark"] == name]
            if mine:
                rows_removed += 1
                hit_items.update(m["item_id"] for m in mine)
                if len(examples) < max_examples:
                    m = mine[0]
                    examples.append({"row_index": removed["row_index"], "item_id": m["item_id"],
                                     "column": m["column"], "excerpt": m["excerpt"],
                                     "excerpt_parts": m["excerpt_parts"]})  # fmt: skip
        checked = entry["items"] - entry["too_short"]
        entry.update(
            items_hit=len(hit_items),
            contaminated_fraction=round(len(hit_items) / checked, 6) if checked else 0.0,
            rows_removed=rows_removed,
            examples=examples,
        )
    return report
