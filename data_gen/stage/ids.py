"""Stable seeds and ids: the same inputs give the same values in every process and on every rerun."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from distill_core.records import text_sha256


def derived_seed(*parts: Any) -> int:
    """A stable 31-bit seed from any parts (Python's hash() is salted per process, so it cannot be used)."""
    return int(hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


def prompt_id(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def templates_hash(*templates: str) -> str:
    return text_sha256("\x00".join(templates))[:16]
