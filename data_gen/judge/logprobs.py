"""Logprob judging: a rating is the expected value of the rating digit under the judge's probabilities.

One request (or one forward pass, for the local judge) per completion and aspect, asking for a single digit.
The digits' probabilities come from an endpoint's top logprobs here, or from a local model in
``local_logprobs``. The rating is fractional by design and cannot fail to parse; it fails only when no digit
has any probability, and is then recorded as a failure with the (empty) probabilities.
"""

from __future__ import annotations

import math

from ..client import ChatRequest
from ..rating_vocabulary import RATING_RANGE, TYPED_ASPECTS
from ..session import GenerationSession
from .arguments import JudgeArguments
from .templates import digit_messages

DIGITS = tuple(str(d) for d in range(RATING_RANGE[0], RATING_RANGE[1] + 1))


def rating_slots(rows: list[dict], aspects: list[str]) -> list[tuple[dict, int, str]]:
    """(row, completion index, aspect) for every rating to give, in a fixed order."""
    return [(row, idx, aspect) for row in rows for idx in range(len(row["completions"])) for aspect in aspects]


def slot_messages(row: dict, idx: int, aspect: str) -> list[dict]:
    return digit_messages(row["prompt"], row["completions"][idx]["text"], aspect)


def expected_rating(probabilities: dict[int, float]) -> float | None:
    total = sum(probabilities.values())
    if total <= 0:
        return None
    return sum(d * p for d, p in probabilities.items()) / total


def digit_probabilities(top_logprobs: list[dict]) -> dict[int, float]:
    probs: dict[int, float] = {}
    for entry in top_logprobs or []:
        token = str(entry.get("token", "")).strip()
        if token in DIGITS:
            probs[int(token)] = probs.get(int(token), 0.0) + math.exp(entry["logprob"])
    return probs


def store_expected(row: dict, idx: int, aspect: str, probs: dict[int, float]) -> bool:
    """Write the expected rating (or a failure) into the completion; whether there was one."""
    value = expected_rating(probs)
    entry = {
        "rating": round(value, 4) if value is not None else None,
        "status": "ok" if value is not None else "failed",
        "mode": "expected",  # an expected value over the scale, so fractional by design
        "rationale": "",
        "probabilities": {str(d): round(p, 6) for d, p in sorted(probs.items())},
    }
    if aspect in TYPED_ASPECTS:
        entry["type"] = None
    row["completions"][idx].setdefault("ratings", {})[aspect] = entry
    return value is not None


def rate_by_endpoint_logprobs(gen: GenerationSession, rows: list[dict], args: JudgeArguments) -> dict:
    params = {"temperature": 0.0, "max_tokens": 1, "logprobs": True, "top_logprobs": 20}
    slots = rating_slots(rows, args.aspects)
    results = gen.ask("judge", [ChatRequest(slot_messages(*slot), params) for slot in slots], "judging")
    failures = 0
    for (row, idx, aspect), result in zip(slots, results):
        probs = digit_probabilities(result.top_logprobs) if result.usable else {}
        failures += not store_expected(row, idx, aspect, probs)
    return {"judge_calls": len(slots), "failed_ratings": failures}
