"""Reading the files the reference tools write, so their published numbers can be recomputed here.

- AlpacaEval annotations: a JSON list of records with ``instruction``, ``output_1`` (baseline), ``output_2``
  (model), ``generator_1``, ``generator_2`` and ``preference``.
- Chatbot Arena battles: JSON lines with ``model_a``, ``model_b`` and ``winner`` (``model_a``, ``model_b``,
  ``tie`` or ``tie (bothbad)``).
- FastChat MT-Bench single judgments (``model_judgment/*_single.jsonl``): JSON lines with ``question_id``,
  ``model``, ``judge`` ([judge model, prompt name]), ``user_prompt``, ``judgment``, ``score`` and ``turn``. FastChat
  writes ``score`` -1 when it could not read a rating and then drops the row from the mean without a count; here
  such a row is a failed judgment, counted beside the score like our own judge's failures.

Every record is checked: a value outside the format is one error naming the file, the record and the field,
never a silently skipped row.
"""

from __future__ import annotations

import json
import math
import os

from distill_core.errors import DataError
from distill_core.jsonl import read_jsonl

from .scores import mt_bench_scores
from .win_rate import WinRate, win_rate

ARENA_WINNERS = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}


def read_json_records(path: str, *, lines: bool) -> list[dict]:
    """A JSON list (``lines=False``) or JSON lines file as a list of objects, with one-line errors."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    if lines:  # the project's JSON lines reader: line-numbered errors, one object per line
        return [row for _, row in read_jsonl(path)]
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: line {exc.lineno} not valid JSON ({exc.msg}); it must be a JSON list file") from None
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


FASTCHAT_UNPARSED = -1  # FastChat's score for a judgment whose rating it could not read


def read_fastchat_judgments(path: str, categories: dict[str, str] | None = None) -> list[dict]:
    """Single-judgment rows (model, question_id, category, turn, rating, error, judge_replies) from FastChat's
    model_judgment file; ``categories`` (question_id -> category) fills in each row's category."""
    rows, seen = [], set()
    for index, record in enumerate(read_json_records(path, lines=True), start=1):
        missing = [k for k in ("question_id", "model", "turn", "score") if record.get(k) is None]
        if missing:
            raise DataError(f"{path}: line {index} lacks {', '.join(missing)}; a FastChat single judgment has "
                            "question_id, model, judge, judgment, score and turn")  # fmt: skip
        qid, model, turn, score = str(record["question_id"]), str(record["model"]), record["turn"], record["score"]
        if turn not in (1, 2) or isinstance(turn, bool):
            raise DataError(f"{path}: line {index} has turn {turn!r}; MT-Bench turns are 1 and 2")
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise DataError(f"{path}: line {index} has score {score!r}; a score is a number 1-10, or -1 when unread")
        if score != FASTCHAT_UNPARSED and not 1 <= score <= 10:
            raise DataError(f"{path}: line {index} has score {score}, off MT-Bench's 1-10 scale (and not -1, "
                            "FastChat's unread rating); fix or drop the line")  # fmt: skip
        if categories is not None and qid not in categories:
            raise DataError(f"{path}: line {index} judges question {qid}, which the questions file lacks")
        if (model, qid, turn) in seen:
            raise DataError(f"{path}: line {index} judges {model} on question {qid} turn {turn} a second time")
        seen.add((model, qid, turn))
        unread = score == FASTCHAT_UNPARSED
        rows.append({
            "model": model,
            "question_id": qid,
            "category": categories[qid] if categories is not None else "unknown",
            "turn": turn,
            "rating": None if unread else float(score),
            "error": "FastChat recorded -1: no rating could be read from the judgment" if unread else None,
            "judge_replies": [record.get("judgment", "")],
        })  # fmt: skip
    if not rows:
        raise DataError(f"{path}: no judgments")
    return rows


def question_categories(path: str) -> dict[str, str]:
    """question_id -> category from an MT-Bench questions file."""
    found = {}
    for index, record in enumerate(read_json_records(path, lines=True), start=1):
        if record.get("question_id") is None or not isinstance(record.get("category"), str):
            raise DataError(f"{path}: line {index} needs question_id and category")
        found[str(record["question_id"])] = record["category"]
    return found


def score_fastchat_judgments(path: str, questions: str | None = None) -> dict[str, dict]:
    """MT-Bench scores per model from a FastChat judgment file, as ``mt_bench_scores`` computes ours: -1 rows are
    failures, counted and not averaged; per_category needs the questions file (empty without it)."""
    rows = read_fastchat_judgments(path, question_categories(questions) if questions else None)
    scores = mt_bench_scores(rows)
    if questions is None:
        for entry in scores.values():
            entry["per_category"] = {}
    return scores
