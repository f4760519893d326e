"""The evaluation's numbers drawn as PNGs beside scores.json, for the run report and for a reader of the directory.

- ``eval_mt_bench.png``: MT-Bench per category (grouped bars) and per model the score with its bootstrap interval
  over questions (from judgments_single) beside the turn 1 and turn 2 means;
- ``eval_win_rates.png``: pairwise adjusted win rates, AlpacaEval win rates and Arena-Hard scores, each with its
  error bar (standard error, or the stated interval);
- ``eval_bradley_terry.png``: the Bradley-Terry ratings as a forest plot, best first, with their intervals;
- ``eval_judge_failures.png``: judged and failed counts per benchmark and model, and the position-swap
  disagreement rate: drawn whenever anything was judged, so a judge that failed everything still shows it;
- ``eval_tasks.png``: task scores with standard errors.

A figure whose numbers are absent (or all null) is skipped. matplotlib is imported only when drawing.
"""

from __future__ import annotations

import json
import os

from distill_core.errors import DataError
from distill_core.jsonl import read_jsonl

from .intervals import mean_standard_error, mt_bench_intervals

BLUE, GREEN, RED, PURPLE, GREY, ORANGE = "#4C72B0", "#55A868", "#C44E52", "#8172B3", "#999999", "#DD8452"
PALETTE = (BLUE, GREEN, RED, PURPLE, ORANGE, "#937860", "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD")
DPI = 110


def load_scores(out_dir: str) -> dict:
    path = os.path.join(out_dir, "scores.json")
    if not os.path.isfile(path):
        raise DataError(f"{out_dir}: no scores.json; give an evaluation output directory (run_eval.py writes one)")
    try:
        with open(path, encoding="utf-8") as f:
            scores = json.load(f)
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); rerun the evaluation to rewrite it") from None
    if not isinstance(scores, dict):
        raise DataError(f"{path}: expected a JSON object of benchmarks")
    return scores


def single_judgments(out_dir: str) -> list[dict]:
    """The single-answer judgment rows of an evaluation directory ([] when it has none)."""
    path = os.path.join(out_dir, "judgments_single", "train.jsonl")
    if not os.path.isfile(path):
        return []
    rows = []
    for n, row in read_jsonl(path):
        if not {"model", "question_id", "rating"} <= set(row):
            raise DataError(f"{path} line {n}: a judgment needs model, question_id and rating (null when failed)")
        rows.append(row)
    return rows


def short(name: str, width: int = 28) -> str:
    # a model given as a local path is named by its tail; the tables carry the full names
    return name if len(name) <= width else "…" + name[-(width - 1) :]


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str) -> str:
    fig.savefig(path, dpi=DPI)
    pyplot().close(fig)
    return path


def _known(value) -> bool:
    return isinstance(value, (int, float)) and value == value  # not None, not NaN


def forest(ax, labels: list[str], values: list, lowers: list, uppers: list, *, xlabel: str, color=BLUE) -> None:
    """One row per label, top to bottom: the value as a dot with its interval as a bar; a row without a value
    says so in place of the dot."""
    ys = list(range(len(labels)))
    for y, value, lower, upper in zip(ys, values, lowers, uppers):
        if not _known(value):
            ax.text(0.02, y, "no value", va="center", color=GREY, fontsize=8, transform=ax.get_yaxis_transform())
            continue
        lo = lower if _known(lower) else value
        hi = upper if _known(upper) else value
        ax.errorbar([value], [y], xerr=[[value - lo], [hi - value]], fmt="o", color=color, capsize=4, markersize=5)
        ax.annotate(f"{value:.4g}", (value, y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
    ax.set_yticks(ys, [short(label) for label in labels])
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)


def _draw_categories(ax, mt: dict) -> None:
    models = list(mt)
    categories = sorted({c for m in models for c in mt[m].get("per_category", {})})
    width = 0.8 / max(1, len(models))
    for i, model in enumerate(models):
        values = [mt[model]["per_category"].get(c) for c in categories]
        xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(categories))]
        heights = [v if _known(v) else 0 for v in values]
        ax.bar(xs, heights, width, label=short(model), color=PALETTE[i % len(PALETTE)])
    ax.set_xticks(range(len(categories)), categories, rotation=30, ha="right")
    ax.set_ylim(0, 10.5)
    ax.set_ylabel("mean rating (1-10)")
    ax.set_title("per category (a missing bar: nothing judged)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")


def _draw_mt_bench_scores(ax, mt: dict, intervals: dict) -> None:
    models = list(mt)
    for offset, (key, color, label) in enumerate(
        (("score", BLUE, "score"), ("1", GREEN, "turn 1"), ("2", ORANGE, "turn 2"))
    ):
        for y, model in enumerate(models):
            value = mt[model].get("score") if key == "score" else mt[model].get("per_turn", {}).get(key)
            if not _known(value):
                continue
            interval = intervals.get(model, {}) if key == "score" else {}
            lo, hi = interval.get("lower"), interval.get("upper")
            xerr = [[value - lo], [hi - value]] if _known(lo) and _known(hi) else None
            ax.errorbar([value], [y + (offset - 1) * 0.25], xerr=xerr, fmt="o", color=color, capsize=3, markersize=5,
                        label=label)  # fmt: skip
    level = next((i["level"] for i in intervals.values()), None)
    ax.set_yticks(range(len(models)), [short(m) for m in models])
    ax.set_ylim(len(models) - 0.5, -0.5)
    ax.set_xlim(0.5, 10.5)
    ax.set_xlabel("rating (1-10)")
    ax.set_title(f"score with {level:.0%} interval over questions, and per turn" if level else "score and per turn")
    ax.grid(axis="x", alpha=0.3)
    by_label = dict(zip(*reversed(ax.get_legend_handles_labels())))  # one legend entry per series
    ax.legend(by_label.values(), by_label.keys(), fontsize=8)


def plot_mt_bench(scores: dict, rows: list[dict], path: str, *, rounds: int, seed: int) -> str | None:
    mt = scores.get("mt_bench") or {}
    if not any(_known(s.get("score")) for s in mt.values()):
        return None
    intervals = mt_bench_intervals(rows, rounds=rounds, seed=seed) if rows else {}
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(14, 4.5), layout="constrained",
                                            gridspec_kw={"width_ratios": [3, 2]})  # fmt: skip
    _draw_categories(left, mt)
    _draw_mt_bench_scores(right, mt, intervals)
    fig.suptitle("MT-Bench (single-answer grading)")
    return save(fig, path)


def _win_rate_panels(scores: dict) -> dict[str, tuple]:
    """benchmark -> (title, labels, values, lowers, uppers, x label) for each win-rate benchmark with a value."""
    panels = {}
    rows = []
    for name, p in ((scores.get("pairwise") or {}).get("pairs") or {}).items():
        rate, error = p.get("adjusted_win_rate"), mean_standard_error(p["wins"], p["losses"], p["ties"])
        rows.append((name, None if rate is None else 100 * rate, None if error is None else 100 * error))
    if any(_known(v) for _, v, _ in rows):
        panels["pairwise"] = ("MT-Bench pairwise: adjusted win rate ± SE", *_spread(rows), "% (ties count half)")
    alpaca = scores.get("alpaca_eval") or {}
    rows = [(m, a.get("win_rate"), a.get("standard_error")) for m, a in (alpaca.get("models") or {}).items()]
    if any(_known(v) for _, v, _ in rows):
        panels["alpaca_eval"] = (
            f"AlpacaEval win rate ± SE vs {alpaca.get('baseline')}",
            *_spread(rows),
            "win rate (%)",
        )
    arena = scores.get("arena_hard") or {}
    rows = [(m, a.get("score"), a.get("lower"), a.get("upper")) for m, a in (arena.get("models") or {}).items()]
    if any(_known(r[1]) for r in rows):
        level = arena.get("level")
        title = f"Arena-Hard vs {arena.get('baseline')}" + (f", {level:.0%} interval" if _known(level) else "")
        panels["arena_hard"] = (title, *map(list, zip(*rows)), "score")
    return panels


def _spread(rows: list[tuple]) -> tuple[list, list, list, list]:
    """(labels, values, value - SE, value + SE) from (label, value, standard error) rows."""
    labels = [r[0] for r in rows]
    values = [r[1] for r in rows]
    lowers = [v - e if _known(v) and _known(e) else None for _, v, e in rows]
    uppers = [v + e if _known(v) and _known(e) else None for _, v, e in rows]
    return labels, values, lowers, uppers


def plot_win_rates(scores: dict, path: str) -> str | None:
    panels = _win_rate_panels(scores)
    if not panels:
        return None
    height = max(2.5, 0.45 * max(len(p[1]) for p in panels.values()) + 1.5)
    fig, axes = pyplot().subplots(1, len(panels), figsize=(5.5 * len(panels), height), layout="constrained",
                                   squeeze=False)  # fmt: skip
    for ax, (benchmark, (title, labels, values, lowers, uppers, xlabel)) in zip(axes[0], panels.items()):
        forest(ax, labels, values, lowers, uppers, xlabel=xlabel)
        ax.set_title(title, fontsize=10)
        if benchmark == "alpaca_eval":
            lc = [a.get("length_controlled_win_rate") for a in scores["alpaca_eval"]["models"].values()]
            if any(_known(v) for v in lc):
                ax.plot([v if _known(v) else float("nan") for v in lc], range(len(lc)), "D", color=PURPLE,
                        label="length-controlled")  # fmt: skip
                ax.legend(fontsize=8)
    fig.suptitle("Win rates")
    return save(fig, path)


def plot_bradley_terry(scores: dict, path: str) -> str | None:
    bt = scores.get("bradley_terry") or {}
    ratings = sorted(bt.get("ratings") or [], key=lambda r: -r["rating"])
    if not ratings:
        return None
    fig, ax = pyplot().subplots(figsize=(7, max(2.5, 0.45 * len(ratings) + 1.5)), layout="constrained")
    forest(ax, [f"#{r['rank']} {r['model']}" for r in ratings], [r["rating"] for r in ratings],
           [r["lower"] for r in ratings], [r["upper"] for r in ratings], xlabel="rating (Elo scale)")  # fmt: skip
    level, rounds = bt.get("level"), bt.get("bootstrap_rounds")
    ax.set_title(
        f"Bradley-Terry ratings, {level:.0%} bootstrap intervals ({rounds} rounds)" if level else "Bradley-Terry"
    )
    return save(fig, path)


def judge_outcomes(scores: dict) -> list[tuple[str, int, int]]:
    """(benchmark: model or pair, judged, failed) for every judged benchmark in scores.json."""
    rows = [
        (f"MT-Bench: {m}", s.get("judged", 0), s.get("failed", 0)) for m, s in (scores.get("mt_bench") or {}).items()
    ]
    for pair, p in ((scores.get("pairwise") or {}).get("pairs") or {}).items():
        rows.append((f"pairwise: {pair}", p["wins"] + p["losses"] + p["ties"], p.get("unjudged", 0)))
    for m, a in ((scores.get("alpaca_eval") or {}).get("models") or {}).items():
        rows.append((f"AlpacaEval: {m}", a.get("n_total", 0), a.get("n_unannotated", 0)))
    for m, a in ((scores.get("arena_hard") or {}).get("models") or {}).items():
        rows.append(
            (f"Arena-Hard: {m}", a.get("wins", 0) + a.get("losses", 0) + a.get("ties", 0), a.get("unjudged", 0))
        )
    return rows


def plot_judge_failures(scores: dict, path: str) -> str | None:
    rows = judge_outcomes(scores)
    if not rows:
        return None
    pairwise = scores.get("pairwise") or {}
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(12, max(2.5, 0.4 * len(rows) + 1.5)), layout="constrained",
                                            gridspec_kw={"width_ratios": [3, 1]})  # fmt: skip
    ys = range(len(rows))
    shares = [100 * failed / (judged + failed) if judged + failed else 0 for _, judged, failed in rows]
    bars = left.barh(ys, shares, color=RED)
    left.bar_label(bars, labels=[f"{f} of {j + f} failed" for _, j, f in rows], fontsize=8, padding=3)
    left.set_yticks(list(ys), [short(r[0], 40) for r in rows])
    left.invert_yaxis()
    left.set_xlim(0, 125)  # room for the labels of a judge that failed everything
    left.set_xticks(range(0, 101, 20))
    left.set_xlabel("% failed or unjudged (pairwise: pairs; AlpacaEval: pairs; Arena-Hard: games)")
    left.grid(axis="x", alpha=0.3)
    rate = pairwise.get("position_disagreement_rate")
    if _known(rate):
        bar = right.bar([0], [100 * rate], color=PURPLE, width=0.5)
        right.bar_label(bar, labels=[f"{100 * rate:.1f}% of {pairwise.get('judged_both_orders')}"], fontsize=8)
        right.set_ylim(0, 110)
    else:
        right.text(0.5, 0.5, "no pair judged\nin both orders", ha="center", va="center", transform=right.transAxes)
    right.set_xticks([0], ["pairwise"])
    right.set_ylabel("% of pairs, swapped orders disagreeing")
    right.set_title("position bias")
    fig.suptitle("Judge failures (counted, never scored)")
    return save(fig, path)


def plot_tasks(scores: dict, path: str) -> str | None:
    tasks = scores.get("tasks") or {}
    rows = [(f"{t}: {m}", s.get("score"), s.get("standard_error")) for t, task in tasks.items()
            for m, s in (task.get("models") or {}).items()]  # fmt: skip
    if not any(_known(r[1]) for r in rows):
        return None
    fig, ax = pyplot().subplots(figsize=(7, max(2.5, 0.4 * len(rows) + 1.5)), layout="constrained")
    forest(ax, *_spread(rows), xlabel="score ± SE (each task's metric)", color=GREEN)
    ax.set_title("Tasks (an empty answer scores 0)")
    return save(fig, path)


def write_eval_figures(out_dir: str, *, rounds: int = 1000, seed: int = 0) -> list[str]:
    """Draw every figure the evaluation directory's scores.json has numbers for; returns the PNG paths."""
    scores = load_scores(out_dir)
    rows = single_judgments(out_dir) if scores.get("mt_bench") else []
    drawn = [
        plot_mt_bench(scores, rows, os.path.join(out_dir, "eval_mt_bench.png"), rounds=rounds, seed=seed),
        plot_win_rates(scores, os.path.join(out_dir, "eval_win_rates.png")),
        plot_bradley_terry(scores, os.path.join(out_dir, "eval_bradley_terry.png")),
        plot_judge_failures(scores, os.path.join(out_dir, "eval_judge_failures.png")),
        plot_tasks(scores, os.path.join(out_dir, "eval_tasks.png")),
    ]
    return [path for path in drawn if path]
