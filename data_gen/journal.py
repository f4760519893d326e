"""The request journal: every endpoint call's outcome, appended as it arrives, keyed by content hash.

A request's key is the hash of (model, messages, sampling params, sample index): the same logical request
always has the same key, so a rerun finds what was already paid for and never sends it again. Each record
is one JSON line written with a single ``write`` on an ``O_APPEND`` descriptor: a ``kill -9`` loses only the
requests still in flight, and a line torn by a power cut is dropped (and cut off) on the next open.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from typing import Any

logger = logging.getLogger(__name__)

FINAL_STATUSES = ("ok", "truncated")  # a truncated reply was paid for; whether it is kept is the stage's choice


def request_key(model: str, messages: list[dict], params: dict, sample: int) -> str:
    blob = json.dumps({"model": model, "messages": messages, "params": params, "sample": sample},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class Journal:
    def __init__(self, path: str, fsync_every_s: float | None = 5.0):
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        self._fsync_every_s = fsync_every_s
        self._last_fsync = time.monotonic()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._load()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _load(self) -> None:
        if not os.path.exists(self.path):
            return
        good_bytes = 0
        with open(self.path, "rb") as f:
            for raw in f:
                try:
                    record = json.loads(raw)
                except ValueError:
                    logger.warning("journal %s: dropping a torn last record", self.path)
                    break
                if not raw.endswith(b"\n"):
                    break
                good_bytes += len(raw)
                self.records[record["key"]] = record
        if good_bytes < os.path.getsize(self.path):
            with open(self.path, "r+b") as f:
                f.truncate(good_bytes)

    def done(self, key: str) -> dict[str, Any] | None:
        """The final record of a request, or None when it must be (re)sent."""
        record = self.records.get(key)
        return record if record is not None and record["status"] in FINAL_STATUSES else None

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        os.write(self._fd, line)
        self.records[record["key"]] = record
        if self._fsync_every_s is not None and time.monotonic() - self._last_fsync >= self._fsync_every_s:
            os.fsync(self._fd)
            self._last_fsync = time.monotonic()

    def spent_usd(self) -> float:
        return sum(r.get("cost_usd", 0.0) for r in self.records.values())

    def close(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
