"""What an eval run reports beyond its datasets: the request statistics of its two sessions merged, the card's
score lines and the log's."""

from __future__ import annotations

import logging

logger = logging.getLogger("evaluation.stage")


def merge_stats(stats: dict) -> dict:
    merged = {"requests": {}, "cost_usd": 0.0, "wall_time_s": 0.0, "stopped_by_budget": False}
    for part in stats.values():
        merged["requests"].update(part["requests"])
        merged["cost_usd"] = round(merged["cost_usd"] + part["cost_usd"], 6)
        merged["wall_time_s"] = round(merged["wall_time_s"] + part["wall_time_s"], 2)
        merged["stopped_by_budget"] |= part["stopped_by_budget"]
        merged["max_cost_usd"] = part["max_cost_usd"]
    return merged


def merge_failures(failures: dict) -> dict | None:
    if not failures:
        return None
    parts = list(failures.values())
    top = [p["most_common_error"] for p in parts if p["most_common_error"]]
    return {
        "requests": sum(p["requests"] for p in parts),
        "failed": sum(p["failed"] for p in parts),
        "journal": parts[0]["journal"],
        "most_common_error": max(top, key=lambda t: t["count"]) if top else None,
    }


def card_lines(scores: dict) -> list[str]:
    """One line per model and benchmark for the dataset card."""
    lines = [f"- {model}: MT-Bench {s['score']} ({s['failed']} judgments failed)"
             for model, s in scores.get("mt_bench", {}).items()]  # fmt: skip
    alpaca = scores.get("alpaca_eval", {})
    for model, s in alpaca.get("models", {}).items():
        lc = s["length_controlled_win_rate"]
        lines.append(f"- {model}: AlpacaEval win rate {s['win_rate']} vs {alpaca['baseline']} "
                     f"(SE {s['standard_error']}, LC {lc}, {s['n_unannotated']} unannotated)")  # fmt: skip
    arena = scores.get("arena_hard", {})
    for model, s in arena.get("models", {}).items():
        lines.append(f"- {model}: Arena-Hard {s['score']} vs {arena['baseline']} ({s['lower']}-{s['upper']}, "
                     f"{int(100 * arena['level'])}% interval; {s['unjudged']} unjudged)")  # fmt: skip
    return lines


def log_scores(scores: dict) -> None:
    for model, s in scores.get("mt_bench", {}).items():
        logger.info("MT-Bench %s: %s (turn 1 %s, turn 2 %s; %d judged, %d failed)", model, s["score"],
                    s["per_turn"].get("1"), s["per_turn"].get("2"), s["judged"], s["failed"])  # fmt: skip
    for model, published in scores.get("published", {}).items():
        ours = scores.get("mt_bench", {}).get(model, {}).get("score")
        if "mt_bench" in published and ours is not None:
            logger.info("MT-Bench %s: %s here, %s published", model, ours, published["mt_bench"])
    rate = scores.get("pairwise", {}).get("position_disagreement_rate")
    if rate is not None:
        logger.info("pairwise: the two orders disagreed on %.1f%% of pairs", 100 * rate)
    for model, s in scores.get("alpaca_eval", {}).get("models", {}).items():
        logger.info("AlpacaEval %s vs %s: win rate %s (SE %s, LC %s; %d judged, %d unannotated)", model,
                    scores["alpaca_eval"]["baseline"], s["win_rate"], s["standard_error"],
                    s["length_controlled_win_rate"], s["n_total"], s["n_unannotated"])  # fmt: skip
    for model, s in scores.get("arena_hard", {}).get("models", {}).items():
        logger.info("Arena-Hard %s vs %s: %s (%s-%s; %d games, %d unjudged)", model, scores["arena_hard"]["baseline"],
                    s["score"], s["lower"], s["upper"], s["games"], s["unjudged"])  # fmt: skip
