"""JSON Lines in and out: line-numbered errors on read, atomic replacement on write."""

from __future__ import annotations

import json
from typing import Iterable, Iterator

from .errors import DataError
from .records import write_atomic


def read_jsonl(path: str) -> Iterator[tuple[int, dict]]:
    """(line number, row) for each non-blank line; a line that is not UTF-8 or not a JSON object is a one-line
    DataError.

    Lines are decoded one by one so that a bad byte is reported with its line number; a UTF-8 byte order mark
    (which some editors write) is accepted on the first line.
    """
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{path} line {n}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                    f"save it as UTF-8"
                ) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise DataError(f"{path} line {n}: not valid JSON; fix or remove the line") from None
            if not isinstance(row, dict):
                raise DataError(f"{path} line {n}: expected a JSON object, got {type(row).__name__}")
            yield n, row


def write_jsonl_atomic(path: str, rows: Iterable[dict]) -> None:
    """One JSON object a line (UTF-8, not escaped), written as the rows come (a stream is never held whole)."""
    write_atomic(path, (json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
