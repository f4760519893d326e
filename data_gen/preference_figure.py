"""The preference statistics drawn as one PNG for the dataset card: aspect histograms, margins and per-model counts.

It draws what ``preference_statistics`` gathered, the card's numbers as pictures; only the margins of expected
ratings are binned finer than the card's table, which would hide them. matplotlib is imported only when a figure
is drawn, so computing the statistics does not need it.
"""

from __future__ import annotations

import os
from typing import Any

from .preference_stats import WHOLE_RATINGS

WHOLE_COLOR, EXPECTED_COLOR, NA_COLOR, FAILED_COLOR = "#4C72B0", "#8172B3", "#999999", "#C44E52"


def _draw_aspect(figure, aspect: str, counts: dict[str, int], expected: dict[str, Any] | None) -> None:
    """The 1-5 scale on a numeric axis (whole ratings as bars, expected ratings in their fine bins), and N/A and
    failed on an axis of their own beside it: categories kept off the scale, each label with room of its own."""
    from matplotlib.ticker import MaxNLocator

    scale, other = figure.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [4, 1.8], "wspace": 0.05})
    figure.suptitle(aspect.replace("_", " "), fontsize=12)
    nearest = (expected or {}).get("nearest_whole", {})
    whole = [counts[k] - nearest.get(k, 0) for k in WHOLE_RATINGS]
    drawn = [counts["na"], counts["failed"], 1]
    if any(whole) or not expected:
        drawn += whole
        bars = scale.bar(range(1, 6), whole, width=0.6, color=WHOLE_COLOR, label="whole ratings" if expected else None)
        scale.bar_label(bars, fontsize=8, padding=1)
    if expected:
        drawn += expected["counts"]
        edges = expected["edges"]
        # above the mean line: a judge that gives every completion about the same rating puts all in one bin there
        scale.bar(
            edges[:-1],
            expected["counts"],
            width=edges[1] - edges[0],
            align="edge",
            color=EXPECTED_COLOR,
            label=f"expected ratings, bins of {edges[1] - edges[0]:g}",
            zorder=3,
        )
        scale.axvline(
            expected["mean"], color="black", linestyle=":", linewidth=1, label=f"mean {expected['mean']:.2f}"
        )
        scale.legend(fontsize=7, loc="upper left")
    scale.yaxis.set_major_locator(MaxNLocator(integer=True))
    scale.set_xlim(0.5, 5.5)
    scale.set_xticks(range(1, 6))
    scale.set_xlabel("rating")
    scale.set_ylabel("completions")
    scale.grid(axis="y", alpha=0.3)
    bars = other.bar([0, 1], [counts["na"], counts["failed"]], width=0.6, color=[NA_COLOR, FAILED_COLOR])
    other.bar_label(bars, fontsize=8, padding=1)
    other.set_xticks([0, 1], ["N/A", "failed"])
    other.set_xlim(-0.6, 1.6)
    other.tick_params(axis="y", left=False)
    other.grid(axis="y", alpha=0.3)
    scale.set_ylim(0, max(drawn) * 1.25)  # room for the bar labels and the legend


def _margin_bins(stats: dict[str, Any], n_fine: int = 20) -> tuple[list[float], list[int]]:
    """The card's bins for whole ratings (their means step by a quarter point); for expected ratings, whose
    margins can be hundredths that one bin of 0.5 would hide, n_fine bins from 0 to the largest margin."""
    hist, margins = stats["margin_histogram"], stats["margins"]
    if not stats.get("expected_ratings") or not margins or max(margins) <= 0:
        return hist["edges"], hist["counts"]
    width = max(margins) / n_fine
    counts = [0] * n_fine
    for m in margins:
        counts[min(n_fine - 1, max(0, int(m / width)))] += 1
    return [i * width for i in range(n_fine + 1)], counts


def _draw_margins(ax, stats: dict[str, Any]) -> None:
    from matplotlib.ticker import MaxNLocator

    summary = stats["margin_summary"]
    edges, counts = _margin_bins(stats)
    if counts:
        ax.bar(edges[:-1], counts, width=edges[1] - edges[0], align="edge", color="#55A868", edgecolor="white")
        ax.axvline(summary["mean"], color="black", linestyle="--", linewidth=1, label=f"mean {summary['mean']:.3g}")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no pairs", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("margin: score chosen - score rejected")
    ax.set_xlabel("margin (score points)")
    ax.set_ylabel("pairs")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="y", alpha=0.3)


def _short(model: str, width: int = 32) -> str:
    # A model given as a local path is named by its tail; the full names are in the card's table.
    return model if len(model) <= width else "…" + model[-(width - 1) :]


def _draw_models(ax, per_model: dict[str, dict[str, int]]) -> None:
    models = list(per_model)
    ys = range(len(models))
    height = 0.38
    chosen = ax.barh(
        [y - height / 2 for y in ys], [per_model[m]["chosen"] for m in models], height, label="chosen", color="#55A868"
    )
    rejected = ax.barh(
        [y + height / 2 for y in ys],
        [per_model[m]["rejected"] for m in models],
        height,
        label="rejected",
        color="#C44E52",
    )
    for bars in (chosen, rejected):
        ax.bar_label(bars, fontsize=8, padding=2)
    ax.set_yticks(list(ys), [_short(str(m)) for m in models])
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

    fig = plt.figure(figsize=(16, 9), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1.1])
    expected = stats.get("expected_ratings") or {}
    histograms = stats["aspect_histograms"]
    for panel, (aspect, counts) in zip(top.subfigures(1, len(histograms)), histograms.items()):
        _draw_aspect(panel, aspect, counts, expected.get(aspect))
    margins_ax, models_ax = bottom.subplots(1, 2)
    _draw_margins(margins_ax, stats)
    _draw_models(models_ax, stats["per_model"])
    cost = stats.get("judge_cost_usd")
    title = (
        f"Preference data: {stats['pairs']} pairs from {stats['prompts']} prompts; "
        f"judge parse failures {stats['failure_rate']:.1%}"
    )
    fig.suptitle(title + ("" if cost is None else f"; judge cost ${cost:.2f}"), fontsize=14)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
