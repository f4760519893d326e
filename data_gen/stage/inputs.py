"""A stage's inputs: prompt datasets read, and repeats found before the first request is paid for."""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Callable

from distill_core.errors import DataError, RecipeError
from distill_core.jsonl import read_jsonl

logger = logging.getLogger(__name__)


def load_prompts(path: str) -> list[str]:
    """Prompt texts from a prompt dataset (a JSONL file or a directory with train.jsonl): 'prompt' or the first
    user turn."""
    if os.path.isdir(path):
        path = os.path.join(path, "train.jsonl")
    prompts = []
    for n, row in read_jsonl(path):
        if isinstance(row.get("prompt"), str) and row["prompt"].strip():
            prompts.append(row["prompt"].strip())
        elif isinstance(row.get("messages"), list):
            user = next(
                (m.get("content") for m in row["messages"] if isinstance(m, dict) and m.get("role") == "user"), None
            )
            if not user:
                raise DataError(f"{path} line {n}: 'messages' has no user turn")
            prompts.append(user)
        else:
            raise DataError(
                f"{path} line {n}: a prompt row needs 'prompt' (string) or 'messages'; got keys {sorted(row)}"
            )
    if not prompts:
        raise DataError(f"{path}: no prompts found")
    return prompts


def refuse_duplicates(items: list, where: str, name: str) -> None:
    """RecipeError naming the first entry of a recipe list that repeats an earlier one."""
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        key = json.dumps(item, sort_keys=True, default=str)
        if key in seen:
            raise RecipeError(f"{where}: {name}[{i}] repeats {name}[{seen[key]}] ({item!r}); list each one once")
        seen[key] = i


def first_of_each(items: list, key: Callable[[Any], Any], source: str, noun: str, plural: str) -> list:
    """The items in first-seen order, one per ``key``; one warning says how many repeats of ``source`` were
    dropped ("3 duplicate {noun}(s) dropped; 7 distinct {plural} are used")."""
    unique: dict[Any, Any] = {}
    for item in items:
        unique.setdefault(key(item), item)
    if len(unique) < len(items):
        logger.warning(
            "%s: %d duplicate %s(s) dropped; %d distinct %s are used",
            source,
            len(items) - len(unique),
            noun,
            len(unique),
            plural,
        )
    return list(unique.values())


def dedupe_prompts(prompts: list[str], source: str) -> list[str]:
    """The prompts in first-seen order, each once: a repeated prompt would be paid for twice and, downstream, give
    two rows with one prompt_id, which binarization refuses."""
    return first_of_each(prompts, lambda prompt: prompt, source, "prompt", "prompts")


def refuse_duplicate_rows(path: str, key_of, what: str, fix: str, limit: int | None = None) -> None:
    """DataError naming both line numbers of the first two rows of a JSONL file (or directory's train.jsonl) that share
    ``key_of(row)``; only the first ``limit`` rows are read."""
    if os.path.isdir(path):
        path = os.path.join(path, "train.jsonl")
    seen: dict[Any, int] = {}
    for count, (n, row) in enumerate(read_jsonl(path)):
        if limit is not None and count >= limit:
            return
        key = key_of(row)
        if key in seen:
            raise DataError(f"{path} lines {seen[key]} and {n}: both hold {what} {key!r}; {fix}")
        seen[key] = n
