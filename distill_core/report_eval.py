"""The run report's Evaluation section: for every stage directory holding a scores.json, whatever its kind, the
benchmarks' tables, the judge's failures and position bias said in words, the evaluation's figures inlined, and a
few MT-Bench questions with each model's turn-1 answer side by side.

It reads files only (scores.json, the answers dataset, the PNGs the evaluation drew) and imports nothing heavy, so
the report stays cheap to write after every stage. A value a benchmark lacks is shown as a dash, never invented.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from .report_parts import Figure, Turn, inline_png, turn

# The figures evaluation.figures draws, in the order the page shows them.
EVAL_FIGURES = (
    ("eval_mt_bench.png", "MT-Bench per category, and each score with its interval over questions"),
    ("eval_win_rates.png", "win rates with their error bars"),
    ("eval_bradley_terry.png", "Bradley-Terry ratings with bootstrap intervals"),
    ("eval_judge_failures.png", "judge failures and position bias"),
    ("eval_tasks.png", "task scores"),
)
ANSWER_QUESTIONS = 3
DASH = "—"


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class SideBySide:
    question: Turn
    label: str
    answers: list[tuple[str, Turn]]  # (model, its turn-1 answer)


@dataclass
class EvalView:
    stage: str
    statements: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    side_by_side: list[SideBySide] = field(default_factory=list)


def fmt(value, spec: str = ".2f") -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return DASH if value is None or not isinstance(value, str) else value
    return format(value, spec)


def _interval(entry: dict, spec: str = ".2f") -> str:
    lower, upper = entry.get("lower"), entry.get("upper")
    return DASH if lower is None or upper is None else f"[{fmt(lower, spec)}, {fmt(upper, spec)}]"


def _share(part: int, whole: int, what: str) -> str:
    return f"{part} of {whole} {what}" + (f" ({100 * part / whole:.1f}%)" if whole else "")


def _mt_bench(mt: dict, statements: list[str]) -> Table:
    with_interval = any("lower" in s for s in mt.values())
    header = ["model", "score"] + (["interval"] if with_interval else []) + ["turn 1", "turn 2", "judged", "failed"]
    rows = []
    for model, s in mt.items():
        turns = s.get("per_turn") or {}
        interval = [_interval(s)] if with_interval else []
        rows.append(
            [
                model,
                fmt(s.get("score")),
                *interval,
                fmt(turns.get("1")),
                fmt(turns.get("2")),
                str(s.get("judged", 0)),
                str(s.get("failed", 0)),
            ]
        )
        total = s.get("judged", 0) + s.get("failed", 0)
        if s.get("failed"):
            statements.append(
                f"MT-Bench, {model}: the judge gave no usable rating for {_share(s['failed'], total, 'judgments')}; "
                "they are counted as failures, not scored"
                + (", so this model has no score." if s.get("score") is None else ".")
            )
    if not any(s.get("failed") for s in mt.values()):
        statements.append("MT-Bench: every single-answer judgment gave a usable rating.")
    return Table("MT-Bench (single-answer grading, 1-10)", header, rows)


def _pairwise(pairwise: dict, statements: list[str]) -> Table:
    rows, unjudged, total = [], 0, 0
    for pair, p in (pairwise.get("pairs") or {}).items():
        rows.append(
            [
                pair,
                *(str(p.get(k, 0)) for k in ("wins", "losses", "ties", "unjudged")),
                fmt(p.get("win_rate"), ".3f"),
                fmt(p.get("adjusted_win_rate"), ".3f"),
            ]
        )
        unjudged += p.get("unjudged", 0)
        total += sum(p.get(k, 0) for k in ("wins", "losses", "ties", "unjudged"))
    statements.append(f"MT-Bench pairwise: {_share(unjudged, total, 'pairs')} stayed unjudged after the re-asks.")
    rate, both = pairwise.get("position_disagreement_rate"), pairwise.get("judged_both_orders", 0)
    if rate is None:
        statements.append("No pair was judged in both orders, so the judge's position bias could not be measured.")
    else:
        statements.append(
            f"Position bias: the two orders named different winners on {100 * rate:.1f}% of the {both} pairs "
            "judged in both orders (such pairs count as ties)."
        )
    header = ["pair (first model's record)", "wins", "losses", "ties", "unjudged", "win rate", "adjusted"]
    return Table("MT-Bench pairwise (each pair judged in both orders)", header, rows)


def _bradley_terry(bt: dict, statements: list[str]) -> Table:
    rows = [
        [str(r.get("rank")), r["model"], fmt(r.get("rating"), ".1f"), _interval(r, ".1f"), str(r.get("battles", DASH))]
        for r in bt.get("ratings") or []
    ]
    note = f"{fmt(bt.get('level'), '.0%')} intervals from {bt.get('bootstrap_rounds', DASH)} bootstrap rounds."
    return Table("Bradley-Terry ratings (Elo scale)", ["rank", "model", "rating", "interval", "battles"], rows, note)


def _alpaca_eval(alpaca: dict, statements: list[str]) -> Table:
    keys = ("n_wins", "n_wins_base", "n_draws", "n_total", "n_unannotated", "n_unanswered", "avg_length")
    rows, notes = [], []
    for model, a in (alpaca.get("models") or {}).items():
        rows.append(
            [
                model,
                fmt(a.get("win_rate")),
                fmt(a.get("standard_error")),
                fmt(a.get("length_controlled_win_rate")),
                *(str(a.get(k, DASH)) for k in keys),
            ]
        )
        lc_note = (a.get("length_controlled") or {}).get("note")
        if lc_note:
            notes.append(f"{model}: length-controlled: {lc_note}")
        if a.get("n_unannotated"):
            total = a["n_unannotated"] + a.get("n_total", 0)
            statements.append(f"AlpacaEval, {model}: {_share(a['n_unannotated'], total, 'pairs')} were not annotated.")
        if a.get("n_unanswered"):
            statements.append(
                f"AlpacaEval, {model}: {a['n_unanswered']} instructions got no usable answer (not judged)."
            )
    header = [
        "model",
        "win rate",
        "SE",
        "LC win rate",
        "wins",
        "baseline wins",
        "draws",
        "total",
        "unannotated",
        "unanswered",
        "avg length",
    ]
    head = f"Baseline {alpaca.get('baseline', DASH)}, annotator {alpaca.get('annotator', DASH)}"
    return Table("AlpacaEval", header, rows, "; ".join([head, *notes]) + ".")


def _arena_hard(arena: dict, statements: list[str]) -> Table:
    keys = ("wins", "losses", "ties", "unjudged", "unanswered", "games")
    rows = []
    for model, a in (arena.get("models") or {}).items():
        rows.append([model, fmt(a.get("score")), _interval(a), *(str(a.get(k, DASH)) for k in keys)])
        if a.get("unjudged"):
            statements.append(f"Arena-Hard, {model}: {a['unjudged']} judgments gave no usable verdict (counted 0).")
        if a.get("unanswered"):
            statements.append(f"Arena-Hard, {model}: {a['unanswered']} questions got no usable answer (not judged).")
    note = (
        f"Baseline {arena.get('baseline', DASH)}; {fmt(arena.get('level'), '.0%')} intervals from "
        f"{arena.get('bootstrap_rounds', DASH)} bootstrap rounds; {arena.get('questions', DASH)} questions."
    )
    return Table("Arena-Hard", ["model", "score", "interval", *keys], rows, note)


def _tasks(tasks: dict, statements: list[str]) -> Table:
    rows = [
        [
            task,
            str(t.get("metric", DASH)),
            model,
            fmt(s.get("score"), ".4f"),
            fmt(s.get("standard_error"), ".4f"),
            str(s.get("n", DASH)),
            str(s.get("empty", DASH)),
        ]
        for task, t in tasks.items()
        for model, s in (t.get("models") or {}).items()
    ]
    header = ["task", "metric", "model", "score", "SE", "n", "empty answers (scored 0)"]
    return Table("Tasks", header, rows)


def ours(scores: dict, model: str, metric: str):
    """Our number for a published metric: mt_bench, alpaca_eval*, arena_hard* or a task name; None if unmeasured."""
    if metric == "mt_bench":
        return (scores.get("mt_bench") or {}).get(model, {}).get("score")
    for prefix, key in (("alpaca_eval", "win_rate"), ("arena_hard", "score")):
        if metric.startswith(prefix):
            return ((scores.get(prefix) or {}).get("models") or {}).get(model, {}).get(key)
    return ((scores.get("tasks") or {}).get(metric, {}).get("models") or {}).get(model, {}).get("score")


def _published(scores: dict) -> Table:
    rows = [
        [model, metric, fmt(value), fmt(ours(scores, model, metric))]
        for model, metrics in scores["published"].items()
        for metric, value in (metrics or {}).items()
    ]
    return Table("Published and ours", ["model", "metric", "published", "here"], rows)


def _side_by_side(path: str) -> list[SideBySide]:
    """The first MT-Bench questions of the answers file with each model's turn-1 answer."""
    by_question: dict[str, list[dict]] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and row.get("benchmark", "mt_bench") == "mt_bench" and "question_id" in row:
                by_question.setdefault(str(row["question_id"]), []).append(row)
    shown = []
    for qid, rows in list(by_question.items())[:ANSWER_QUESTIONS]:
        first = (rows[0].get("turns") or [""])[0]
        answers = [
            (str(r.get("model")), turn("assistant", (r.get("answers") or [None])[0] or "(no usable answer)"))
            for r in rows
        ]
        shown.append(SideBySide(turn("user", first), f"question {qid} ({rows[0].get('category', DASH)})", answers))
    return shown


# Each benchmark's table, in the page's order; a builder also states in words what its judge failed to judge.
BUILDERS = (
    ("mt_bench", _mt_bench),
    ("pairwise", _pairwise),
    ("bradley_terry", _bradley_terry),
    ("alpaca_eval", _alpaca_eval),
    ("arena_hard", _arena_hard),
    ("tasks", _tasks),
)


def read_evaluation(stage_dir: str, stage: str) -> EvalView | None:
    """The evaluation part of one stage directory, or None when it holds no scores.json."""
    path = os.path.join(stage_dir, "scores.json")
    if not os.path.isfile(path):
        return None
    view = EvalView(stage)
    try:
        with open(path, encoding="utf-8") as f:
            scores = json.load(f)
    except ValueError as exc:
        view.statements.append(f"scores.json is not valid JSON ({exc}); rerun the stage to rewrite it.")
        return view
    for key, build in BUILDERS:
        if scores.get(key):
            view.tables.append(build(scores[key], view.statements))
    if scores.get("published"):
        view.tables.append(_published(scores))
    view.figures = [
        inline_png(os.path.join(stage_dir, name), f"{stage}: {caption}")
        for name, caption in EVAL_FIGURES
        if os.path.isfile(os.path.join(stage_dir, name))
    ]
    answers = os.path.join(stage_dir, "answers", "train.jsonl")
    if os.path.isfile(answers):
        view.side_by_side = _side_by_side(answers)
    return view
