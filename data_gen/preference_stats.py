"""What a preference dataset is made of: judge ratings, parse failures, margins and which models win.

The numbers go into the dataset card (``card_lines``) and one figure (``plot_preference_statistics``),
so that a skewed judge, a broken parser or a model that is always rejected is seen before training.
"""

from __future__ import annotations

import math
import os
import statistics
from typing import Any, Iterable

from .binarize import ALL_ASPECTS, aspect_rating

RATING_BINS: tuple[str, ...] = ("1", "2", "3", "4", "5", "na", "failed")
MARGIN_BIN_WIDTH = 0.5


def _aspect_histograms(judged_rows: list[dict]) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Per-aspect counts over RATING_BINS, and per-aspect counts of completions where it was not judged."""
    hist = {aspect: dict.fromkeys(RATING_BINS, 0) for aspect in ALL_ASPECTS}
    missing = dict.fromkeys(ALL_ASPECTS, 0)
    for row in judged_rows:
        for completion in row.get("completions", []):
            ratings = completion.get("ratings") or {}
            for aspect in ALL_ASPECTS:
                if aspect not in ratings:
                    missing[aspect] += 1
                    continue
                status, rating = aspect_rating(ratings[aspect], aspect, row.get("prompt_id"), completion.get("model"))
                # expected ratings (logprob judging) fall in the bin of the nearest whole rating
                hist[aspect][str(int(round(rating))) if status == "ok" else status] += 1
    return hist, missing


def _margin_histogram(margins: list[float]) -> dict[str, list[float] | list[int]]:
    """Fixed-width bins from 0; the last bin includes its right edge so the largest margin is counted."""
    if not margins:
        return {"edges": [], "counts": []}
    n_bins = max(1, math.ceil(max(margins) / MARGIN_BIN_WIDTH))
    edges = [round(i * MARGIN_BIN_WIDTH, 6) for i in range(n_bins + 1)]
    counts = [0] * n_bins
    for m in margins:
        counts[min(n_bins - 1, max(0, int(m // MARGIN_BIN_WIDTH)))] += 1
    return {"edges": edges, "counts": counts}


def _margin_summary(margins: list[float]) -> dict[str, float | int | None]:
    if not margins:
        return {"count": 0, "mean": None, "median": None, "min": None, "max": None}
    return {"count": len(margins), "mean": statistics.fmean(margins), "median": statistics.median(margins),
            "min": min(margins), "max": max(margins)}


def _per_model(judged_rows: list[dict], pairs: list[dict]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}

    def entry(model: str) -> dict[str, int]:
        return counts.setdefault(model, {"completions": 0, "chosen": 0, "rejected": 0})

    for row in judged_rows:
        for completion in row.get("completions", []):
            entry(completion.get("model"))["completions"] += 1
    for pair in pairs:
        entry(pair["chosen_model"])["chosen"] += 1
        entry(pair["rejected_model"])["rejected"] += 1
    return dict(sorted(counts.items()))


def preference_statistics(judged_rows: Iterable[dict], pairs: Iterable[dict], *,
                          judge_cost_usd: float | None = None) -> dict[str, Any]:
    """Rating histograms, parse-failure rate, margin distribution and per-model counts.

    judged_rows follow the judge stage's contract; pairs are binarize()'s output rows. Ratings off
    their scale raise DataError here as they do in binarize.
    """
    judged_rows, pairs = list(judged_rows), list(pairs)
    hist, missing = _aspect_histograms(judged_rows)
    failed = sum(h["failed"] for h in hist.values())
    total = sum(sum(h.values()) for h in hist.values())
    margins = [float(p["score_chosen"]) - float(p["score_rejected"]) for p in pairs]
    return {
        "prompts": len(judged_rows),
        "pairs": len(pairs),
        "aspect_histograms": hist,
        "aspects_missing": missing,
        "failed_ratings": failed,
        "total_ratings": total,
        "failure_rate": failed / total if total else 0.0,
        "margins": margins,
        "margin_summary": _margin_summary(margins),
        "margin_histogram": _margin_histogram(margins),
        "per_model": _per_model(judged_rows, pairs),
        "judge_cost_usd": judge_cost_usd,
    }


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(str(c) for c in row) + " |" for row in rows]]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def card_lines(stats: dict[str, Any]) -> list[str]:
    """Markdown for the dataset card: headline numbers, then one table per breakdown."""
    cost = stats.get("judge_cost_usd")
    summary = stats["margin_summary"]
    hist = stats["margin_histogram"]
    edges = hist["edges"]
    bins = [[f"[{lo:g}, {hi:g}{']' if i == len(edges) - 2 else ')'}", n]
            for i, (lo, hi, n) in enumerate(zip(edges, edges[1:], hist["counts"]))]
    lines = [
        "", "## Preference pairs", "",
        f"- pairs: {stats['pairs']} from {stats['prompts']} judged prompts",
        f"- judge parse failures: {stats['failure_rate']:.2%} ({stats['failed_ratings']} of "
        f"{stats['total_ratings']} aspect ratings)",
        f"- judge cost: {'not recorded' if cost is None else f'${cost:.4f}'}",
        "", "### Aspect ratings", "",
        *_table(["aspect", "1", "2", "3", "4", "5", "N/A", "failed", "not judged"],
                [[aspect, *(h[k] for k in RATING_BINS), stats["aspects_missing"].get(aspect, 0)]
                 for aspect, h in stats["aspect_histograms"].items()]),
        "", "### Chosen and rejected by model", "",
        *_table(["model", "completions", "chosen", "rejected"],
                [[model, c["completions"], c["chosen"], c["rejected"]] for model, c in stats["per_model"].items()]),
        "", "### Margin (score_chosen - score_rejected)", "",
        *_table(["pairs", "mean", "median", "min", "max"],
                [[summary["count"], *(_fmt(summary[k]) for k in ("mean", "median", "min", "max"))]]),
    ]
    if bins:
        lines += ["", *_table(["margin", "pairs"], bins)]
    return lines


def _draw_aspect(ax, aspect: str, counts: dict[str, int]) -> None:
    labels = ["1", "2", "3", "4", "5", "N/A", "failed"]
    # A gap sets N/A and failed apart from the 1-5 scale, and leaves room for their longer labels.
    positions = [0, 1, 2, 3, 4, 5.6, 6.9]
    values = [counts[k] for k in RATING_BINS]
    colors = ["#4C72B0"] * 5 + ["#999999", "#C44E52"]
    bars = ax.bar(positions, values, color=colors)
    ax.set_xticks(positions, labels)
    ax.bar_label(bars, fontsize=8, padding=1)
    ax.set_title(aspect.replace("_", " "))
    ax.set_xlabel("rating")
    ax.set_ylabel("completions")
    ax.set_ylim(0, max(values + [1]) * 1.18)
    ax.grid(axis="y", alpha=0.3)


def _draw_margins(ax, stats: dict[str, Any]) -> None:
    hist, summary = stats["margin_histogram"], stats["margin_summary"]
    if hist["counts"]:
        edges = hist["edges"]
        ax.bar(edges[:-1], hist["counts"], width=MARGIN_BIN_WIDTH, align="edge", color="#55A868", edgecolor="white")
        ax.axvline(summary["mean"], color="black", linestyle="--", linewidth=1, label=f"mean {summary['mean']:.2f}")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no pairs", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("margin: score chosen - score rejected")
    ax.set_xlabel("margin (score points)")
    ax.set_ylabel("pairs")
    ax.grid(axis="y", alpha=0.3)


def _draw_models(ax, per_model: dict[str, dict[str, int]]) -> None:
    models = list(per_model)
    ys = range(len(models))
    height = 0.38
    chosen = ax.barh([y - height / 2 for y in ys], [per_model[m]["chosen"] for m in models], height,
                     label="chosen", color="#55A868")
    rejected = ax.barh([y + height / 2 for y in ys], [per_model[m]["rejected"] for m in models], height,
                       label="rejected", color="#C44E52")
    for bars in (chosen, rejected):
        ax.bar_label(bars, fontsize=8, padding=2)
    ax.set_yticks(list(ys), models)
    ax.invert_yaxis()
    ax.set_title("pairs per model")
    ax.set_xlabel("pairs")
    ax.margins(x=0.12)
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)


def plot_preference_statistics(stats: dict[str, Any], path: str) -> str:
    """Write one PNG: the four aspect histograms on top, margins and per-model counts below. Returns path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(16, 8.5))
    grid = fig.add_gridspec(2, 4, height_ratios=[1, 1.1])
    for i, (aspect, counts) in enumerate(stats["aspect_histograms"].items()):
        _draw_aspect(fig.add_subplot(grid[0, i]), aspect, counts)
    _draw_margins(fig.add_subplot(grid[1, :2]), stats)
    _draw_models(fig.add_subplot(grid[1, 2:]), stats["per_model"])
    cost = stats.get("judge_cost_usd")
    title = (f"Preference data: {stats['pairs']} pairs from {stats['prompts']} prompts; "
             f"judge parse failures {stats['failure_rate']:.1%}")
    fig.suptitle(title + ("" if cost is None else f"; judge cost ${cost:.2f}"), fontsize=14)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
