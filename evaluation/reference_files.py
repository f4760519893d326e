"""Reading the files the reference tools write, so their published numbers can be recomputed here.

- AlpacaEval annotations: a JSON list of records with ``instruction``, ``output_1`` (baseline), ``output_2``
  (model), ``generator_1``, ``generator_2`` and ``preference``.
- Chatbot Arena battles: JSON lines with ``model_a``, ``model_b`` and ``winner`` (``model_a``, ``model_b``,
  ``tie`` or ``tie (bothbad)``).

Every record is checked: a value outside the format is one error naming the file, the record and the field,
never a silently skipped row.
"""

from __future__ import annotations

import json
import math
import os

from distill_core.errors import DataError

from .win_rate import WinRate, win_rate

ARENA_WINNERS = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}


def read_json_records(path: str, *, lines: bool) -> list[dict]:
    """A JSON list (``lines=False``) or JSON lines file as a list of objects, with one-line errors."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        if lines:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            records = json.loads(text)
    except json.JSONDecodeError as exc:
        line = f" line {exc.lineno}" if not lines else ""
        raise DataError(
            f"{path}:{line} not valid JSON ({exc.msg}); it must be a JSON {'lines' if lines else 'list'} file"
        )
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DataError(f"{path}: expected a list of JSON objects, one per record")
    return records


def alpaca_preference(value, path: str, index: int) -> float | None:
    """One AlpacaEval preference on the 1-2 scale; 0 is the legacy draw; null or NaN is 'not annotated'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(
            f"{path}: record {index} has preference {value!r}; AlpacaEval preferences are 1 (output_1 better), "
            "2 (output_2 better), 1.5 or 0 (draw), a number in [1, 2], or null (not annotated)"
        )
    if value == 0:
        return 1.5
    if not 1 <= value <= 2:
        raise DataError(
            f"{path}: record {index} has preference {value}, outside [1, 2]; AlpacaEval preferences are 1 "
            "(output_1 better), 2 (output_2 better), 1.5 or 0 (draw), or null (not annotated)"
        )
    return float(value)


def score_alpaca_annotations(path: str) -> dict:
    """AlpacaEval's leaderboard numbers for one annotations file, plus the count of unannotated pairs."""
    records = read_json_records(path, lines=False)
    if not records:
        raise DataError(f"{path}: no annotations")
    for index, record in enumerate(records):
        missing = [k for k in ("preference", "output_2") if k not in record]
        if missing:
            raise DataError(f"{path}: record {index} lacks {', '.join(missing)}; an annotation needs output_2 and "
                            "preference (null where not annotated)")  # fmt: skip
    generators = sorted({str(r.get("generator_2")) for r in records if r.get("generator_2") is not None})
    if len(generators) > 1:
        raise DataError(f"{path}: annotations of several models ({', '.join(generators)}); score one model a file")
    result: WinRate = win_rate([alpaca_preference(r["preference"], path, i) for i, r in enumerate(records)])
    lengths = [len(r["output_2"]) for r in records if isinstance(r["output_2"], str)]
    # AlpacaEval reports the model outputs' mean length in characters, cut to an integer
    return result.as_dict() | {"avg_length": int(sum(lengths) / len(lengths)) if lengths else 0}


def read_arena_battles(path: str) -> list[tuple[str, str, float]]:
    """(model_a, model_b, outcome for model_a) from a Chatbot Arena battles file."""
    battles = []
    for index, record in enumerate(read_json_records(path, lines=True), start=1):
        a, b, winner = record.get("model_a"), record.get("model_b"), record.get("winner")
        if not isinstance(a, str) or not isinstance(b, str) or not a or not b:
            raise DataError(f"{path}: line {index} lacks model_a or model_b (two model names)")
        if winner not in ARENA_WINNERS:
            raise DataError(
                f"{path}: line {index} has winner {winner!r}; use one of {', '.join(map(repr, ARENA_WINNERS))}"
            )
        if a == b:
            raise DataError(f"{path}: line {index} pits {a} against itself; drop it")
        battles.append((a, b, ARENA_WINNERS[winner]))
    if not battles:
        raise DataError(f"{path}: no battles")
    return battles
