"""The request journal: every endpoint call's outcome, appended as it arrives, keyed by content hash.

A request's key is the hash of (model, messages, sampling params, sample index): the same logical request
always has the same key, so a rerun finds what was already paid for and never sends it again. Each record
is one JSON line written with a single ``write`` on an ``O_APPEND`` descriptor: a ``kill -9`` loses only the
requests still in flight.

Reading never deletes a good record. Only the final line may be cut off, and only when it is torn (a write
cut short by a crash: no trailing newline, or unparsable as the last line); a torn final line that still
parses as a whole record is kept and given its newline. A bad line anywhere else (unparsable, not an object,
no string ``key``) is skipped and left in place, counted in ``skipped_lines`` and named in one warning; the
records after it load as usual.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from typing import Any

logger = logging.getLogger(__name__)

FINAL_STATUSES = ("ok", "truncated")  # a truncated reply was paid for; whether it is kept is the stage's choice
_NAMED_LINES = 10  # how many bad line numbers one warning spells out


def request_key(model: str, messages: list[dict], params: dict, sample: int) -> str:
    blob = json.dumps(
        {"model": model, "messages": messages, "params": params, "sample": sample},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _as_record(raw: bytes) -> dict[str, Any] | None:
    """The record a line holds, or None when it is not one (unparsable, not an object, no string key)."""
    try:
        record = json.loads(raw)
    except ValueError:  # includes bytes that are not UTF-8
        return None
    if not isinstance(record, dict) or not isinstance(record.get("key"), str):
        return None
    return record


def _is_final(record: dict[str, Any] | None) -> bool:
    return record is not None and record.get("status") in FINAL_STATUSES


class Journal:
    def __init__(self, path: str, fsync_every_s: float | None = 5.0):
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        self.skipped_lines = 0  # bad lines found in the middle of the file, left in place and ignored
        self.skipped_line_numbers: list[int] = []
        # Requests being sent right now, by key: whoever needs the same key meanwhile waits for that send
        # instead of paying for a second one. Owned by the client; the journal only gives it one shared place.
        self.in_flight: dict[str, Any] = {}
        self._fsync_every_s = fsync_every_s
        self._last_fsync = time.monotonic()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._load()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _load(self) -> None:
        if not os.path.exists(self.path):
            return
        end = 0  # byte offset just past the last line read
        last: tuple[int, int, bytes] | None = None  # (line number, offset, bytes) of the line before the current one
        with open(self.path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                if last is not None:
                    self._take(*last, is_last=False)
                last = (number, end, raw)
                end += len(raw)
        if last is not None:
            self._take(*last, is_last=True)
        if self.skipped_lines:
            shown = ", ".join(map(str, self.skipped_line_numbers[:_NAMED_LINES]))
            more = self.skipped_lines - min(self.skipped_lines, _NAMED_LINES)
            logger.warning(
                "journal %s: skipped %d unreadable line(s) (line %s%s); they are left in the file and "
                "every other record is used",
                self.path,
                self.skipped_lines,
                shown,
                f" and {more} more" if more else "",
            )

    def _take(self, number: int, offset: int, raw: bytes, *, is_last: bool) -> None:
        record = _as_record(raw)
        complete = raw.endswith(b"\n")
        if is_last and not complete:
            if record is not None:
                # The write was cut right before its newline: the record is whole, so keep it and end the line.
                self._keep(record)
                with open(self.path, "ab") as f:
                    f.write(b"\n")
                return
            logger.warning(
                "journal %s: dropping a torn last line (line %d), written by a run that was cut off", self.path, number
            )
            self._cut(offset)
            return
        if record is None:
            if is_last:
                logger.warning(
                    "journal %s: dropping an unreadable last line (line %d), written by a run that was cut off",
                    self.path,
                    number,
                )
                self._cut(offset)
                return
            self.skipped_lines += 1
            self.skipped_line_numbers.append(number)
            return
        self._keep(record)

    def _cut(self, offset: int) -> None:
        with open(self.path, "r+b") as f:
            f.truncate(offset)

    def _keep(self, record: dict[str, Any]) -> None:
        # A paid reply must stay the answer for its key: a later failure record (two processes racing, say)
        # must not make a rerun send it again.
        if _is_final(self.records.get(record["key"])) and not _is_final(record):
            return
        self.records[record["key"]] = record

    def done(self, key: str) -> dict[str, Any] | None:
        """The final record of a request, or None when it must be (re)sent."""
        record = self.records.get(key)
        return record if _is_final(record) else None

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        os.write(self._fd, line)
        self._keep(record)
        if self._fsync_every_s is not None and time.monotonic() - self._last_fsync >= self._fsync_every_s:
            os.fsync(self._fd)
            self._last_fsync = time.monotonic()

    def spent_usd(self) -> float:
        total = 0.0
        for record in self.records.values():
            cost = record.get("cost_usd", 0.0)
            # a hand-edited or damaged cost must not stop the run; it just counts for nothing
            if isinstance(cost, (int, float)) and not isinstance(cost, bool) and math.isfinite(cost) and cost > 0:
                total += cost
        return total

    def close(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
