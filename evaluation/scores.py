"""Summaries of judgments: MT-Bench scores per model, turn and category; pairwise records, win rates and the
position-swap disagreement rate; and the battles a Bradley-Terry ranking is fitted on.

A judgment the judge never made usable stays in the rows with ``rating``/``outcome`` None; here it is counted as a
failure beside the scores, never averaged in and never dropped without a count.
"""

from __future__ import annotations

from collections import defaultdict
from statistics import mean

from .win_rate import pairwise_outcome


def mt_bench_scores(rows: list[dict]) -> dict[str, dict]:
    """Per model: the mean rating over every judged turn, per turn and per category, with the judged and failed
    counts. Rows: model, category, turn, rating (None when the judgment failed)."""
    by_model: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_model[row["model"]].append(row)
    summary = {}
    for model, model_rows in sorted(by_model.items()):
        judged = [r for r in model_rows if r["rating"] is not None]
        summary[model] = {
            "score": _mean(r["rating"] for r in judged),
            "judged": len(judged),
            "failed": len(model_rows) - len(judged),
            "per_turn": {
                str(turn): _mean(r["rating"] for r in judged if r["turn"] == turn)
                for turn in sorted({r["turn"] for r in model_rows})
            },
            "per_category": {
                category: _mean(r["rating"] for r in judged if r["category"] == category)
                for category in sorted({r["category"] for r in model_rows})
            },
        }
    return summary


def _mean(values) -> float | None:
    values = list(values)
    return round(mean(values), 4) if values else None


def pairwise_summary(rows: list[dict]) -> dict:
    """Per ordered pair (model_1 vs model_2): wins, losses, ties and unjudged for model_1, its win rate (wins /
    judged) and adjusted win rate ((wins + ties / 2) / judged); overall, how often the two orders disagreed.

    Rows: model_1, model_2, verdict_first (model_1 shown as A), verdict_second (model_1 shown as B)."""
    pairs: dict[str, dict] = {}
    disagreements = judged_twice = 0
    for row in rows:
        key = f"{row['model_1']} vs {row['model_2']}"
        entry = pairs.setdefault(key, {"wins": 0, "losses": 0, "ties": 0, "unjudged": 0})
        outcome = pairwise_outcome(row["verdict_first"], row["verdict_second"])
        if outcome is None:
            entry["unjudged"] += 1
            continue
        entry[{1.0: "wins", 0.0: "losses", 0.5: "ties"}[outcome]] += 1
        judged_twice += 1
        if _disagree(row["verdict_first"], row["verdict_second"]):
            disagreements += 1
    for entry in pairs.values():
        n = entry["wins"] + entry["losses"] + entry["ties"]
        entry["win_rate"] = round(entry["wins"] / n, 4) if n else None
        entry["adjusted_win_rate"] = round((entry["wins"] + entry["ties"] / 2) / n, 4) if n else None
    return {
        "pairs": pairs,
        "position_disagreement_rate": round(disagreements / judged_twice, 4) if judged_twice else None,
        "judged_both_orders": judged_twice,
    }


def _disagree(first: str, second: str) -> bool:
    """Whether the swapped judgments name different winners (a tie against a win counts as disagreeing)."""
    as_model_1 = {"A": "1", "B": "2", "tie": "tie"}[first]
    swapped = {"A": "2", "B": "1", "tie": "tie"}[second]
    return as_model_1 != swapped


def pairwise_battles(rows: list[dict]) -> list[tuple[str, str, float]]:
    """(model_1, model_2, outcome) for every pair judged in both orders: the input of a Bradley-Terry ranking."""
    battles = []
    for row in rows:
        outcome = pairwise_outcome(row["verdict_first"], row["verdict_second"])
        if outcome is not None:
            battles.append((row["model_1"], row["model_2"], outcome))
    return battles
