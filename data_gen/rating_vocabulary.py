"""The words judging and binarization share, each defined once: aspects, scales, scores, strategies and modes.

The choices are ``Literal`` types so a recipe field annotated with one is checked by the recipe loader (with a
did-you-mean) and listed by ``--help``; the tuples beside them are the same choices for code that iterates.
"""

from __future__ import annotations

from typing import Literal, get_args

# UltraFeedback's four aspects, in the order they are asked and reported.
Aspect = Literal["instruction_following", "honesty", "truthfulness", "helpfulness"]
ALL_ASPECTS: tuple[str, ...] = get_args(Aspect)
# Only honesty may be judged not applicable (e.g. a creative-writing prompt has no uncertainty to express).
NA_ASPECTS: frozenset[str] = frozenset({"honesty"})
# Aspects whose rating carries a type 1-3 (the kind of hallucination; the kind of informativeness).
TYPED_ASPECTS: frozenset[str] = frozenset({"truthfulness", "helpfulness"})

# What a completion is scored by: the mean of its aspect ratings, or the critique's overall score.
Score = Literal["mean", "overall"]
SCORES: tuple[str, ...] = get_args(Score)

# How the rejected completion is picked (see data_gen.binarize).
Strategy = Literal["random_lower", "random_rest", "lowest"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)

# How the judge gives a rating: a parsed text reply, or an expected value from an endpoint's or a local model's
# next-token probabilities.
JudgeMode = Literal["text", "logprobs", "logprobs_local"]
JUDGE_MODES: tuple[str, ...] = get_args(JudgeMode)

# The status of one rated aspect: rated, not applicable, or no usable rating after every re-ask.
STATUSES: tuple[str, ...] = ("ok", "na", "failed")

RATING_RANGE = (1, 5)  # an aspect rating: whole numbers, or an expected value in logprob modes
OVERALL_RANGE = (1, 10)  # the critique's overall score: whole numbers
