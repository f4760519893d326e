"""JSON Lines in and out: line-numbered errors on read, atomic replacement on write."""

from __future__ import annotations

import json
from typing import Iterator

from .errors import DataError
from .records import write_atomic


def read_jsonl(path: str) -> Iterator[tuple[int, dict]]:
    """(line number, row) for each non-blank line; a line that is not a JSON object is a one-line DataError."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise DataError(f"{path} line {n}: not valid JSON; fix or remove the line") from None
            if not isinstance(row, dict):
                raise DataError(f"{path} line {n}: expected a JSON object, got {type(row).__name__}")
            yield n, row


def write_jsonl_atomic(path: str, rows: list[dict]) -> None:
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
