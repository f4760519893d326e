"""What a preference dataset is made of: judge ratings, parse failures, margins and which models win.

The numbers go into the dataset card (``card_lines``) and one figure (``data_gen.preference_figure``),
so that a skewed judge, a broken parser or a model that is always rejected is seen before training.

Logprob judging gives expected ratings (fractional by design). The card's table counts each at its nearest whole
rating, so that one table covers both judging modes; ``expected_ratings`` keeps their distribution in bins of
1/EXPECTED_BINS_PER_POINT, small enough to show a judge that always answers about 3, and the figure draws those.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Iterable

from .completion_scores import aspect_rating
from .rating_vocabulary import ALL_ASPECTS, RATING_RANGE

RATING_BINS: tuple[str, ...] = ("1", "2", "3", "4", "5", "na", "failed")
WHOLE_RATINGS: tuple[str, ...] = RATING_BINS[:5]
MARGIN_BIN_WIDTH = 0.5
EXPECTED_BINS_PER_POINT = 20


def _nearest_whole(rating: float) -> str:
    # half up, so that every bin of expected_ratings lies within one whole rating (round() sends 2.5 down, 3.5 up)
    return str(math.floor(rating + 0.5))


def _aspect_histograms(
    judged_rows: list[dict],
) -> tuple[dict[str, dict[str, int]], dict[str, int], dict[str, list[float]]]:
    """Per-aspect counts over RATING_BINS, per-aspect counts of completions where it was not judged, and the
    expected ratings of each aspect as given."""
    hist = {aspect: dict.fromkeys(RATING_BINS, 0) for aspect in ALL_ASPECTS}
    missing = dict.fromkeys(ALL_ASPECTS, 0)
    expected: dict[str, list[float]] = {aspect: [] for aspect in ALL_ASPECTS}
    for row in judged_rows:
        for completion in row.get("completions", []):
            ratings = completion.get("ratings") or {}
            for aspect in ALL_ASPECTS:
                if aspect not in ratings:
                    missing[aspect] += 1
                    continue
                status, rating = aspect_rating(ratings[aspect], aspect, row.get("prompt_id"), completion.get("model"))
                if status != "ok":
                    hist[aspect][status] += 1
                    continue
                hist[aspect][_nearest_whole(rating)] += 1
                if ratings[aspect].get("mode") == "expected":
                    expected[aspect].append(float(rating))
    return hist, missing, expected


def _expected_summary(values: list[float]) -> dict[str, Any]:
    """Bins of 1/EXPECTED_BINS_PER_POINT over the scale (the last includes 5), with how many of the values the
    card's table counts at each whole rating."""
    low, high = RATING_RANGE
    n_bins = (high - low) * EXPECTED_BINS_PER_POINT
    counts = [0] * n_bins
    for value in values:
        # rounded before the floor: ratings come with 4 decimals and (value - 1) * 20 is not exact in binary
        counts[min(n_bins - 1, math.floor(round((value - low) * EXPECTED_BINS_PER_POINT, 6)))] += 1
    nearest = dict.fromkeys(WHOLE_RATINGS, 0)
    for value in values:
        nearest[_nearest_whole(value)] += 1
    return {
        "count": len(values),
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
        "edges": [round(low + i / EXPECTED_BINS_PER_POINT, 6) for i in range(n_bins + 1)],
        "counts": counts,
        "nearest_whole": nearest,
    }


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
    return {
        "count": len(margins),
        "mean": statistics.fmean(margins),
        "median": statistics.median(margins),
        "min": min(margins),
        "max": max(margins),
    }


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


def preference_statistics(
    judged_rows: Iterable[dict], pairs: Iterable[dict], *, judge_cost_usd: float | None = None
) -> dict[str, Any]:
    """Rating histograms, parse-failure rate, margin distribution and per-model counts.

    ``expected_ratings`` has an entry only for aspects that logprob judging rated, so a text-mode record is
    unchanged.

    judged_rows follow the judge stage's contract; pairs are binarize()'s output rows. Ratings off
    their scale raise DataError here as they do in binarize.
    """
    judged_rows, pairs = list(judged_rows), list(pairs)
    hist, missing, expected = _aspect_histograms(judged_rows)
    failed = sum(h["failed"] for h in hist.values())
    total = sum(sum(h.values()) for h in hist.values())
    margins = [float(p["score_chosen"]) - float(p["score_rejected"]) for p in pairs]
    return {
        "prompts": len(judged_rows),
        "pairs": len(pairs),
        "aspect_histograms": hist,
        "aspects_missing": missing,
        "expected_ratings": {aspect: _expected_summary(values) for aspect, values in expected.items() if values},
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
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *["| " + " | ".join(str(c) for c in row) + " |" for row in rows],
    ]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _expected_lines(expected: dict[str, dict[str, Any]]) -> list[str]:
    if not expected:
        return []
    return [
        "",
        "Expected ratings (logprob judging) are counted above at their nearest whole rating; as given:",
        "",
        *_table(
            ["aspect", "expected ratings", "mean", "min", "max"],
            [[aspect, e["count"], *(_fmt(e[k]) for k in ("mean", "min", "max"))] for aspect, e in expected.items()],
        ),
    ]


def card_lines(stats: dict[str, Any]) -> list[str]:
    """Markdown for the dataset card: headline numbers, then one table per breakdown."""
    cost = stats.get("judge_cost_usd")
    summary = stats["margin_summary"]
    hist = stats["margin_histogram"]
    edges = hist["edges"]
    bins = [
        [f"[{lo:g}, {hi:g}{']' if i == len(edges) - 2 else ')'}", n]
        for i, (lo, hi, n) in enumerate(zip(edges, edges[1:], hist["counts"]))
    ]
    lines = [
        "",
        "## Preference pairs",
        "",
        f"- pairs: {stats['pairs']} from {stats['prompts']} judged prompts",
        f"- judge parse failures: {stats['failure_rate']:.2%} ({stats['failed_ratings']} of "
        f"{stats['total_ratings']} aspect ratings)",
        f"- judge cost: {'not recorded' if cost is None else f'${cost:.4f}'}",
        "",
        "### Aspect ratings",
        "",
        *_table(
            ["aspect", "1", "2", "3", "4", "5", "N/A", "failed", "not judged"],
            [
                [aspect, *(h[k] for k in RATING_BINS), stats["aspects_missing"].get(aspect, 0)]
                for aspect, h in stats["aspect_histograms"].items()
            ],
        ),
        *_expected_lines(stats.get("expected_ratings") or {}),
        "",
        "### Chosen and rejected by model",
        "",
        *_table(
            ["model", "completions", "chosen", "rejected"],
            [[model, c["completions"], c["chosen"], c["rejected"]] for model, c in stats["per_model"].items()],
        ),
        "",
        "### Margin (score_chosen - score_rejected)",
        "",
        *_table(
            ["pairs", "mean", "median", "min", "max"],
            [[summary["count"], *(_fmt(summary[k]) for k in ("mean", "median", "min", "max"))]],
        ),
    ]
    if bins:
        lines += ["", *_table(["margin", "pairs"], bins)]
    return lines
