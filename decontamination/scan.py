"""Decontaminating rows (a list, or a stream read once): flag candidates in bulk (ngrams.py), verify them exactly
(index.py), apply the match rule, and say what was removed and why. Only the rows removed are held.

Match rules: ``ngram`` removes a row that shares any n-gram with a benchmark item (lm-eval-harness);
``coverage`` removes it when the matched n-grams cover at least ``threshold`` of some item's words (open-instruct).
The result depends only on the rows, the benchmarks and the options, never on the number of workers or chunks.
"""

from __future__ import annotations

import collections
import itertools
import multiprocessing
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Iterator

import numpy as np

from distill_core.errors import DataError

from .chunks import join_texts
from .index import BenchmarkIndex, ItemMatch
from .index import flag_texts as flag_chunk
from .normalize import normalize
from .rows import Check, row_texts

CHUNK_CHARS = 400_000  # a chunk's arrays stay near the cache: two processes scale, one chunk of megabytes does not
MIN_CHUNKS_TO_SHARE = 8  # fewer, and starting the workers costs more than it saves
IN_FLIGHT_PER_WORKER = 3  # chunks sent ahead to each worker: enough to keep it busy, few enough to bound memory


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
    """What a scan found; the rows kept are not held (a corpus may not fit in memory): ``clean_rows`` gives them."""

    removed: list[dict]  # {"row_index", "row", "matches"}, by row index
    report: dict[str, dict]  # benchmark -> counts and examples
    rows: int
    texts: int
    candidates: int = 0  # rows the hash scan flagged (verified afterwards)
    rows_without_text: int = 0

    @property
    def kept(self) -> int:
        return self.rows - len(self.removed)


def clean_rows(rows: Iterable[dict], removed: list[dict]) -> Iterator[dict]:
    """The rows a scan of ``rows`` kept, in their order: all but its ``removed`` entries' (by ``row_index``)."""
    removed_at = {entry["row_index"] for entry in removed}
    return (row for i, row in enumerate(rows) if i not in removed_at)


_WORKER: tuple | None = None  # a worker's key filter, n and normalisation


def _start_worker(*state) -> None:
    global _WORKER
    _WORKER = state


def _flag_chunk(chunk: bytes | list[str]) -> np.ndarray:
    return flag_chunk(*_WORKER, chunk)


@dataclass
class _Chunk:
    texts: list[str] = field(default_factory=list)
    owners: list[tuple[int, str, dict]] = field(default_factory=list)  # each text's row index, column and row
    chars: int = 0


class _TextStream:
    """The checked texts of the rows, read once, in chunks of about CHUNK_CHARS characters (whole rows). Each chunk
    is kept in ``pending`` until its flags come back (in order): only the chunks in flight are held, whatever the
    size of the corpus. Counts rows and texts as they pass."""

    def __init__(self, rows: Iterable[dict], options: Options):
        self.rows, self.options = rows, options
        self.pending: collections.deque[_Chunk] = collections.deque()
        self.row_count = self.text_count = self.rows_with_text = 0

    def __iter__(self) -> Iterator[bytes | list[str]]:
        chunk = _Chunk()
        for i, row in enumerate(self.rows):
            self.row_count += 1
            texts = row_texts(row, self.options.check, self.options.columns)
            self.rows_with_text += bool(texts)
            for column, text in texts:
                chunk.texts.append(text)
                chunk.owners.append((i, column, row))
                chunk.chars += len(text)
            if chunk.chars >= CHUNK_CHARS:
                yield self._send(chunk)
                chunk = _Chunk()
        if chunk.texts:
            yield self._send(chunk)

    def _send(self, chunk: _Chunk) -> bytes | list[str]:
        self.pending.append(chunk)
        self.text_count += len(chunk.texts)
        joined = join_texts(chunk.texts)
        return chunk.texts if joined is None else joined


def _flags(chunks: Iterator[bytes | list[str]], index: BenchmarkIndex, workers: int) -> Iterator[np.ndarray]:
    """Each chunk's flagged texts (positions in the chunk), in order, over ``workers`` processes once there are at
    least MIN_CHUNKS_TO_SHARE chunks. The workers are started fresh (not forked: after a fork, every page this
    process then reads would be copied) and get the key filter once; each chunk goes to them as one UTF-8 string.
    At most IN_FLIGHT_PER_WORKER chunks a worker are sent ahead of the one consumed, so the rows held stay bounded
    however fast the workers are and however slowly the consumer takes their flags."""
    state = (index.keys, index.n, index.how)
    head = list(itertools.islice(chunks, MIN_CHUNKS_TO_SHARE)) if workers > 1 else []
    if len(head) < MIN_CHUNKS_TO_SHARE:
        for chunk in itertools.chain(head, chunks):
            yield flag_chunk(*state, chunk)
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_start_worker, initargs=state) as pool:
        in_flight: collections.deque = collections.deque()
        for chunk in itertools.chain(head, chunks):
            in_flight.append(pool.apply_async(_flag_chunk, (chunk,)))
            if len(in_flight) >= workers * IN_FLIGHT_PER_WORKER:
                yield in_flight.popleft().get()
        while in_flight:
            yield in_flight.popleft().get()


def decontaminate(rows: Iterable[dict], index: BenchmarkIndex, options: Options, source: str) -> Result:
    """Scan ``rows`` (any iterable, read once; a list or a stream of a dataset too large to hold) against the
    index. Holds the rows removed, never the rows kept."""
    stream = _TextStream(rows, options)
    found: dict[int, list[dict]] = {}
    removed_rows: dict[int, dict] = {}
    candidates: set[int] = set()
    for flagged in _flags(iter(stream), index, options.workers):
        chunk = stream.pending.popleft()
        for t in flagged.tolist():
            i, column, row = chunk.owners[t]
            candidates.add(i)
            for match in index.verify(chunk.texts[t]):
                if options.rule == "ngram" or match.coverage >= options.threshold:
                    found.setdefault(i, []).append(_describe(index, match, column, chunk.texts[t]))
                    removed_rows[i] = row
    if not stream.text_count:
        columns = ", ".join(options.columns or ("messages", "prompt", "chosen", "rejected", "completions"))
        raise DataError(
            f"{source}: no row has {options.check} text to check in its columns ({columns}); set check or "
            f"text_columns to the columns that hold the text"
        )
    result = Result(
        removed=[{"row_index": i, "row": removed_rows[i], "matches": found[i]} for i in sorted(found)],
        report={},
        rows=stream.row_count,
        texts=stream.text_count,
        candidates=len(candidates),
        rows_without_text=stream.row_count - stream.rows_with_text,
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
