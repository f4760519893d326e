"""Turn judged completions into chosen/rejected pairs in TRL's conversational preference format.

Each prompt's completions are scored (the mean of the judge's aspect ratings, or a separate 1-10
critique score), the best becomes ``chosen`` and another becomes ``rejected`` according to a strategy:

- ``random_lower`` (default): rejected is drawn among the completions scored strictly lower;
- ``random_rest``: rejected is drawn among all the other scored completions, as the original
  ultrafeedback_binarized did; an equal score is a tie;
- ``lowest``: rejected is the lowest-scored completion.

A prompt whose scored completions all share one score is always dropped: it holds no preference.

Ratings are checked against their scale and never clamped or rescaled: a critique of 1 read as 10
once made poor answers "chosen", so anything off the scale stops the run with the row named.
A rating the judge failed to give removes its completion; it is never turned into a score.
"""

from __future__ import annotations

import math
import random
from typing import Any, Iterable, Sequence

from distill_core.errors import DataError, RecipeError

from .rating_vocabulary import ALL_ASPECTS, NA_ASPECTS, OVERALL_RANGE, RATING_RANGE, SCORES, STATUSES, STRATEGIES
from .stage import derived_seed

DROP_REASONS: tuple[str, ...] = ("fewer_than_2_scored", "all_tied", "tie", "below_margin")
UNSCORED_REASONS: tuple[str, ...] = ("failed", "no_rating", "no_overall_score")
Scored = tuple[float, dict]  # (score, completion)
# Means of a few integers differ from their exact value by far less than this; it keeps a margin of exactly
# min_margin (e.g. 13/3 - 10/3) from being dropped by float rounding.
_MARGIN_TOLERANCE = 1e-9


def _where(prompt_id: Any, model: Any, aspect: str | None = None) -> str:
    place = f"prompt_id {prompt_id!r}, model {model!r}"
    return f"{place}, aspect {aspect!r}" if aspect else place


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """Return value if it is one of choices; otherwise a RecipeError listing them."""
    if value not in choices:
        raise RecipeError(f"{name}={value!r} is not supported; use one of {', '.join(choices)}")
    return value


def _check_aspects(aspects: Iterable[str]) -> tuple[str, ...]:
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


def _scored(completion: dict, score: str, aspects: tuple[str, ...], prompt_id: Any) -> tuple[float | None, str | None]:
    """(score, None) or (None, why it has no score)."""
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
    return _scored(completion, score, _check_aspects(aspects), prompt_id)[0]


def _check_row(row: Any, index: int) -> tuple[str, str, list]:
    if not isinstance(row, dict):
        raise DataError(f"judged row {index}: must be a mapping with prompt_id, prompt and completions")
    prompt_id, prompt, completions = row.get("prompt_id"), row.get("prompt"), row.get("completions")
    if not isinstance(prompt_id, str) or not prompt_id:
        raise DataError(f"judged row {index}: 'prompt_id' must be a non-empty string, got {prompt_id!r}")
    if not isinstance(prompt, str) or not prompt.strip():
        raise DataError(f"prompt_id {prompt_id!r}: 'prompt' must be a non-empty string")
    if not isinstance(completions, list):
        raise DataError(f"prompt_id {prompt_id!r}: 'completions' must be a list")
    for completion in completions:
        if (
            not isinstance(completion, dict)
            or not isinstance(completion.get("model"), str)
            or not isinstance(completion.get("text"), str)
        ):
            raise DataError(f"prompt_id {prompt_id!r}: every completion needs string 'model' and 'text' fields")
    return prompt_id, prompt, completions


def _pick(scored: list[Scored], strategy: str, rng: random.Random) -> tuple[Scored, Scored] | str:
    """(chosen, rejected), or the reason no pair can be made. scored holds at least two entries."""
    top = max(s for s, _ in scored)
    if all(s == top for s, _ in scored):
        return "all_tied"
    # Drawing among every completion sharing the top score keeps position in the list from deciding.
    chosen = rng.choice([c for c in scored if c[0] == top])
    others = [c for c in scored if c is not chosen]
    if strategy == "random_lower":
        return chosen, rng.choice([c for c in others if c[0] < top])
    if strategy == "random_rest":
        return chosen, rng.choice(others)
    bottom = min(s for s, _ in others)
    return chosen, rng.choice([c for c in others if c[0] == bottom])


def _pair_row(prompt_id: str, prompt: str, chosen: Scored, rejected: Scored) -> dict:
    return {
        "prompt": [{"role": "user", "content": prompt}],
        "chosen": [{"role": "assistant", "content": chosen[1]["text"]}],
        "rejected": [{"role": "assistant", "content": rejected[1]["text"]}],
        "score_chosen": float(chosen[0]),
        "score_rejected": float(rejected[0]),
        "prompt_id": prompt_id,
        "chosen_model": chosen[1]["model"],
        "rejected_model": rejected[1]["model"],
    }


def _check_options(score: str, strategy: str, min_margin: float) -> None:
    check_choice("score", score, SCORES)
    check_choice("strategy", strategy, STRATEGIES)
    if (
        isinstance(min_margin, bool)
        or not isinstance(min_margin, (int, float))
        or not math.isfinite(min_margin)
        or min_margin < 0
    ):
        raise RecipeError(f"min_margin={min_margin!r} must be a number >= 0 (0 keeps every strictly better pair)")


def binarize(
    rows: Iterable[dict],
    *,
    score: str = "mean",
    strategy: str = "random_lower",
    min_margin: float = 0.0,
    seed: int = 42,
    drop_ties: bool = True,
    aspects: Iterable[str] = ALL_ASPECTS,
) -> tuple[list[dict], dict]:
    """Pairs in TRL's conversational preference format, and counts of what was kept and dropped.

    Each prompt draws from its own RNG seeded by (seed, prompt_id), so a pair depends neither on the
    order of the rows nor on the order of a prompt's completions.
    """
    _check_options(score, strategy, min_margin)
    aspects = _check_aspects(aspects)
    dropped = dict.fromkeys(DROP_REASONS, 0)
    unscored = dict.fromkeys(UNSCORED_REASONS, 0)
    pairs: list[dict] = []
    seen: set[str] = set()
    n_prompts = n_completions = 0
    for index, row in enumerate(rows):
        prompt_id, prompt, completions = _check_row(row, index)
        if prompt_id in seen:
            raise DataError(
                f"prompt_id {prompt_id!r} appears in more than one row; merge or deduplicate the judged rows"
            )
        seen.add(prompt_id)
        n_prompts += 1
        n_completions += len(completions)
        scored = []
        for completion in completions:
            value, why = _scored(completion, score, aspects, prompt_id)
            if value is None:
                unscored[why] += 1
            else:
                scored.append((value, completion))
        if len(scored) < 2:
            dropped["fewer_than_2_scored"] += 1
            continue
        # A canonical order makes the seeded draws independent of how the judge stage listed completions.
        scored.sort(key=lambda c: (c[1]["model"], c[1]["text"]))
        picked = _pick(scored, strategy, random.Random(derived_seed(seed, prompt_id)))
        if isinstance(picked, str):
            dropped[picked] += 1
            continue
        chosen, rejected = picked
        if chosen[0] == rejected[0] and drop_ties:
            dropped["tie"] += 1
            continue
        if chosen[0] - rejected[0] < min_margin - _MARGIN_TOLERANCE:
            dropped["below_margin"] += 1
            continue
        pairs.append(_pair_row(prompt_id, prompt, chosen, rejected))
    stats = {
        "prompts": n_prompts,
        "kept": len(pairs),
        "dropped": dropped,
        "completions": n_completions,
        "completions_unscored": sum(unscored.values()),
        "unscored_by_reason": unscored,
        "score": score,
        "strategy": strategy,
        "min_margin": min_margin,
        "seed": seed,
        "drop_ties": drop_ties,
        "aspects": list(aspects),
    }
    return pairs, stats
