"""Turn judged completions into chosen/rejected pairs in TRL's conversational preference format.

Each prompt's completions are scored (the mean of the judge's aspect ratings, or a separate 1-10
critique score), the best becomes ``chosen`` and another becomes ``rejected`` according to a strategy:

- ``random_lower`` (default): rejected is drawn among the completions scored strictly lower;
- ``random_rest``: rejected is drawn among all the other scored completions, as the original
  ultrafeedback_binarized did; an equal score is a tie;
- ``lowest``: rejected is the lowest-scored completion.

A prompt whose scored completions all share one score is always dropped: it holds no preference.
A completion without a score (see ``completion_scores``: a failed rating, none given) takes no part in its pair.
"""

from __future__ import annotations

import math
import random
from typing import Any, Iterable, Iterator

from distill_core.errors import DataError, RecipeError

from .completion_scores import UNSCORED_REASONS, check_aspects, check_choice, score_or_reason
from .rating_vocabulary import ALL_ASPECTS, SCORES, STRATEGIES
from .stage import derived_seed

DROP_REASONS: tuple[str, ...] = ("fewer_than_2_scored", "all_tied", "tie", "below_margin")
Scored = tuple[float, dict]  # (score, completion)
# Means of a few integers differ from their exact value by far less than this; it keeps a margin of exactly
# min_margin (e.g. 13/3 - 10/3) from being dropped by float rounding.
_MARGIN_TOLERANCE = 1e-9


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


def _unique_rows(rows: Iterable[dict]) -> Iterator[tuple[str, str, list]]:
    """(prompt_id, prompt, completions) of each row, checked as it comes; a prompt_id seen before stops the run."""
    seen: set[str] = set()
    for index, row in enumerate(rows):
        prompt_id, prompt, completions = _check_row(row, index)
        if prompt_id in seen:
            raise DataError(
                f"prompt_id {prompt_id!r} appears in more than one row; merge or deduplicate the judged rows"
            )
        seen.add(prompt_id)
        yield prompt_id, prompt, completions


def _score_all(
    completions: list, score: str, aspects: tuple[str, ...], prompt_id: str, unscored: dict[str, int]
) -> list[Scored]:
    """The completions that have a score, in a canonical order; each one without is counted in unscored by why."""
    scored = []
    for completion in completions:
        value, why = score_or_reason(completion, score, aspects, prompt_id)
        if value is None:
            unscored[why] += 1
        else:
            scored.append((value, completion))
    # A canonical order makes the seeded draws independent of how the judge stage listed completions.
    scored.sort(key=lambda c: (c[1]["model"], c[1]["text"]))
    return scored


def _prompt_pair(
    prompt_id: str, prompt: str, scored: list[Scored], *, strategy: str, min_margin: float, drop_ties: bool, seed: int
) -> dict | str:
    """The prompt's pair row, or the entry of DROP_REASONS saying why it has none."""
    if len(scored) < 2:
        return "fewer_than_2_scored"
    picked = _pick(scored, strategy, random.Random(derived_seed(seed, prompt_id)))
    if isinstance(picked, str):
        return picked
    chosen, rejected = picked
    if chosen[0] == rejected[0] and drop_ties:
        return "tie"
    if chosen[0] - rejected[0] < min_margin - _MARGIN_TOLERANCE:
        return "below_margin"
    return _pair_row(prompt_id, prompt, chosen, rejected)


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
    aspects = check_aspects(aspects)
    dropped = dict.fromkeys(DROP_REASONS, 0)
    unscored = dict.fromkeys(UNSCORED_REASONS, 0)
    pairs: list[dict] = []
    n_prompts = n_completions = 0
    for prompt_id, prompt, completions in _unique_rows(rows):
        n_prompts += 1
        n_completions += len(completions)
        scored = _score_all(completions, score, aspects, prompt_id, unscored)
        pair = _prompt_pair(
            prompt_id, prompt, scored, strategy=strategy, min_margin=min_margin, drop_ties=drop_ties, seed=seed
        )
        if isinstance(pair, str):
            dropped[pair] += 1
        else:
            pairs.append(pair)
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
