"""A judged completion's score, read from its ratings after checking them against the data contract.

A completion is scored by the mean of the judge's aspect ratings, or by a separate 1-10 critique score.
Ratings are checked against their scale and never clamped or rescaled: a critique of 1 read as 10
once made poor answers "chosen", so anything off the scale stops the run with the row named.
A rating the judge failed to give leaves its completion without a score; it is never turned into one.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

from distill_core.errors import DataError, RecipeError

from .rating_vocabulary import ALL_ASPECTS, NA_ASPECTS, OVERALL_RANGE, RATING_RANGE, SCORES, STATUSES

UNSCORED_REASONS: tuple[str, ...] = ("failed", "no_rating", "no_overall_score")


def _where(prompt_id: Any, model: Any, aspect: str | None = None) -> str:
    place = f"prompt_id {prompt_id!r}, model {model!r}"
    return f"{place}, aspect {aspect!r}" if aspect else place


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """Return value if it is one of choices; otherwise a RecipeError listing them."""
    if value not in choices:
        raise RecipeError(f"{name}={value!r} is not supported; use one of {', '.join(choices)}")
    return value


def check_aspects(aspects: Iterable[str]) -> tuple[str, ...]:
    aspects = tuple(aspects)
    if not aspects:
        raise RecipeError(f"aspects is empty; use one or more of {', '.join(ALL_ASPECTS)}")
    for aspect in aspects:
        check_choice("aspects", aspect, ALL_ASPECTS)
    return aspects


def aspect_rating(entry: Any, aspect: str, prompt_id: Any, model: Any) -> tuple[str, int | float | None]:
    """(status, rating) of one judged aspect, checked against the data contract.

    The rating of an "ok" aspect must be an int in 1..5; bools and floats are refused rather than
    coerced, since a value off the scale means the judge's reply was misread.
    """
    where = _where(prompt_id, model, aspect)
    if not isinstance(entry, dict):
        raise DataError(f"{where}: the rating entry must be a mapping with 'rating' and 'status', got {entry!r}")
    status = entry.get("status")
    rating = entry.get("rating")
    if status not in STATUSES:
        raise DataError(f"{where}: status {status!r} is not one of {', '.join(STATUSES)}; fix the judge output")
    if status == "failed":
        # Whatever rating field is present, an unparsed reply carries no judgment.
        return status, None
    if status == "na":
        if aspect not in NA_ASPECTS:
            raise DataError(
                f"{where}: status 'na' is only allowed for {', '.join(sorted(NA_ASPECTS))}; "
                f"re-judge this aspect or mark it 'failed'"
            )
        if rating is not None:
            raise DataError(f"{where}: status 'na' with rating {rating!r}; an N/A aspect must have rating null")
        return status, None
    low, high = RATING_RANGE
    if entry.get("mode") == "expected":
        # logprob judging: the expected rating under the judge's probabilities, fractional by design but on the scale
        if (
            isinstance(rating, bool)
            or not isinstance(rating, (int, float))
            or not math.isfinite(rating)
            or not low <= rating <= high
        ):
            raise DataError(f"{where}: expected rating {rating!r} is not a number in {low}..{high}; fix the judge")
        return status, rating
    if isinstance(rating, bool) or not isinstance(rating, int) or not low <= rating <= high:
        raise DataError(
            f"{where}: rating {rating!r} is not an integer in {low}..{high}; "
            f"fix the judge's parser (never rescale), or mark the aspect 'failed'"
        )
    return status, rating


def _overall(completion: dict, prompt_id: Any) -> float | None:
    value = completion.get("overall_score")
    if value is None:
        return None
    low, high = OVERALL_RANGE
    number_ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not number_ok or not low <= value <= high:
        raise DataError(
            f"{_where(prompt_id, completion.get('model'), 'overall_score')}: overall_score {value!r} "
            f"is not a number in {low:g}..{high:g}; fix the critique parser (never rescale) or set it null"
        )
    return float(value)


def score_or_reason(
    completion: dict, score: str, aspects: tuple[str, ...], prompt_id: Any
) -> tuple[float | None, str | None]:
    """(score, None), or (None, the entry of UNSCORED_REASONS saying why it has none)."""
    if not isinstance(completion, dict):
        raise DataError(f"prompt_id {prompt_id!r}: a completion must be a mapping, got {type(completion).__name__}")
    model = completion.get("model")
    if score == "overall":
        value = _overall(completion, prompt_id)
        return (value, None) if value is not None else (None, "no_overall_score")
    ratings = completion.get("ratings") or {}
    if not isinstance(ratings, dict):
        raise DataError(f"{_where(prompt_id, model)}: 'ratings' must be a mapping of aspect to rating entry")
    values, failed = [], False
    for aspect in aspects:
        if aspect not in ratings:
            continue
        status, rating = aspect_rating(ratings[aspect], aspect, prompt_id, model)
        failed = failed or status == "failed"
        if rating is not None:
            values.append(rating)
    if failed:
        return None, "failed"
    if not values:
        return None, "no_rating"
    return sum(values) / len(values), None


def completion_score(
    completion: dict, score: str = "mean", aspects: Iterable[str] = ALL_ASPECTS, *, prompt_id: Any = None
) -> float | None:
    """The completion's score, or None when it cannot be scored.

    score="mean": the mean of its "ok" aspect ratings (N/A and unjudged aspects ignored); None if any
    judged aspect failed or none is rated. score="overall": its overall_score (1..10), None if missing.
    prompt_id only serves to name the row in error messages.
    """
    check_choice("score", score, SCORES)
    return score_or_reason(completion, score, check_aspects(aspects), prompt_id)[0]
