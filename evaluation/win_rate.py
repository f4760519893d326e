"""Win rates from pairwise preferences, as AlpacaEval, MT-Bench pairwise and Arena-Hard-Auto define them.

A preference is on AlpacaEval's scale: 1 = the baseline (output_1) is better, 2 = the model (output_2) is better,
1.5 = a draw, anything between for a logprob judge, None for a pair nobody annotated. AlpacaEval drops the
unannotated pairs without a trace; here they are counted (``n_unannotated``) and the rate is over the rest.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class WinRate:
    win_rate: float  # 100 x mean preference for the model, draws counting half
    standard_error: float  # 100 x the sample standard error of that mean (ddof 1)
    n_wins: int
    n_wins_base: int
    n_draws: int
    n_total: int  # annotated pairs, the denominator
    n_unannotated: int

    def as_dict(self) -> dict:
        return asdict(self)


def win_rate(preferences: list[float | None]) -> WinRate:
    """AlpacaEval's win rate and its standard error over the annotated preferences (1 = baseline, 2 = model)."""
    kept = np.array([p for p in preferences if p is not None and not math.isnan(p)], dtype=np.float64)
    unannotated = len(preferences) - len(kept)
    x = kept - 1.0
    n = len(x)
    rate = 100.0 * float(x.mean()) if n else float("nan")
    error = 100.0 * float(x.std(ddof=1)) / math.sqrt(n) if n > 1 else float("nan")
    return WinRate(
        win_rate=rate,
        standard_error=error,
        n_wins=int(np.sum(x > 0.5)),
        n_wins_base=int(np.sum(x < 0.5)),
        n_draws=int(np.sum(x == 0.5)),
        n_total=n,
        n_unannotated=unannotated,
    )


# Arena-Hard-Auto's five verdicts, read for the model shown as A: (score for A, how many games it counts as)
ARENA_VERDICTS = {
    "A>>B": (1.0, 3),
    "A>B": (1.0, 1),
    "A=B": (0.5, 1),
    "B>A": (0.0, 1),
    "B>>A": (0.0, 3),
}


def arena_games(verdict: str | None, model_is_a: bool) -> list[float]:
    """The games one Arena-Hard judgment adds for the model: a "much better" verdict weighs three games, an
    unparsed one none (the caller counts it as a failure)."""
    if verdict is None:
        return []
    score, weight = ARENA_VERDICTS[verdict]
    return [score if model_is_a else 1.0 - score] * weight


def pairwise_outcome(first: str | None, second: str | None) -> float | None:
    """MT-Bench's rule for one pair judged twice with positions swapped, as the outcome for model 1 (shown as A in
    the first game, as B in the second): two verdicts that disagree are a tie. ``first``/``second`` are "A", "B" or
    "tie" as read; a missing verdict (unparsed after the re-asks) leaves the pair unjudged (None)."""
    if first is None or second is None:
        return None
    score_first = {"A": 1.0, "B": 0.0, "tie": 0.5}[first]
    score_second = {"A": 0.0, "B": 1.0, "tie": 0.5}[second]  # positions swapped: A now shows model 2
    return score_first if score_first == score_second else 0.5
