"""How sure a score is: seeded bootstrap intervals for MT-Bench scores and for differences between two models.

MT-Bench's ratings are not independent: both turns of a question share its difficulty. So the bootstrap resamples
questions, not ratings (a cluster bootstrap): each round draws the judged questions with replacement and recomputes
the score as published, the mean over every judged turn of the drawn questions. A difference between two models is
paired over the questions both had judged, so the questions' shared difficulty cancels. Each model's draws come
from its own generator seeded with ``seed``, so an interval does not depend on which other models were scored.

AlpacaEval publishes a win rate with its standard error and no per-instruction data beside it; two of them are
compared with the combined standard error sqrt(se_a^2 + se_b^2), which treats the two runs as independent.
"""

from __future__ import annotations

from collections import defaultdict
from statistics import NormalDist

import numpy as np

ROUNDS = 1000
LEVEL = 0.95


def add_bootstrap_arguments(parser, min_rounds: int) -> None:
    """--bootstrap, --level and --seed, as every script that draws intervals takes them."""
    none = "; 0 for none" if min_rounds == 0 else ""
    parser.add_argument("--bootstrap", type=int, default=ROUNDS, help=f"bootstrap rounds (default {ROUNDS}{none})")
    parser.add_argument("--level", type=float, default=LEVEL, help=f"interval level (default {LEVEL})")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")


def check_bootstrap_arguments(args, min_rounds: int) -> None:
    from distill_core.errors import UserError

    if args.bootstrap < min_rounds:
        raise UserError(f"--bootstrap {args.bootstrap}: give a number of rounds, {min_rounds} or more")
    if not 0 < args.level < 1:
        raise UserError(f"--level {args.level}: give a level between 0 and 1, e.g. 0.95")


def question_totals(rows: list[dict], model: str) -> dict[str, tuple[float, int]]:
    """Per question the model had judged: (sum of its ratings, judged turns). Failed judgments add nothing."""
    totals: dict[str, list] = defaultdict(lambda: [0.0, 0])
    for row in rows:
        if row["model"] == model and row["rating"] is not None:
            entry = totals[str(row["question_id"])]
            entry[0] += float(row["rating"])
            entry[1] += 1
    return {qid: (s, n) for qid, (s, n) in totals.items()}


def _draws(n: int, rounds: int, seed: int) -> np.ndarray:
    """How often each of n questions is drawn in each round: rounds x n counts, each row summing to n."""
    return np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=rounds).astype(np.float64)


def _quantiles(samples: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0
    lower, upper = np.nanquantile(samples, [tail, 1.0 - tail])
    return round(float(lower), 4), round(float(upper), 4)


def mt_bench_interval(
    rows: list[dict], model: str, *, rounds: int = ROUNDS, level: float = LEVEL, seed: int = 0
) -> dict:
    """One model's MT-Bench score with its bootstrap interval over questions: score, lower, upper, questions
    (judged ones), level, rounds, seed. Score and bounds are None when nothing was judged."""
    totals = question_totals(rows, model)
    out = {"score": None, "lower": None, "upper": None, "questions": len(totals), "level": level, "rounds": rounds,
           "seed": seed}  # fmt: skip
    if not totals:
        return out
    sums = np.array([s for s, _ in totals.values()])
    counts = np.array([n for _, n in totals.values()], dtype=np.float64)
    out["score"] = round(float(sums.sum() / counts.sum()), 4)
    out["lower"], out["upper"] = out["score"], out["score"]
    if rounds:
        weights = _draws(len(totals), rounds, seed)
        out["lower"], out["upper"] = _quantiles(weights @ sums / (weights @ counts), level)
    return out


def mt_bench_intervals(rows: list[dict], **kw) -> dict[str, dict]:
    """``mt_bench_interval`` for every model of the judgment rows, by name."""
    return {model: mt_bench_interval(rows, model, **kw) for model in sorted({r["model"] for r in rows})}


def paired_mt_bench_difference(
    rows_a: list[dict],
    model_a: str,
    rows_b: list[dict],
    model_b: str,
    *,
    rounds: int = ROUNDS,
    level: float = LEVEL,
    seed: int = 0,
) -> dict:
    """Score of A minus score of B on the questions both had judged, with a paired bootstrap interval over those
    questions; ``supported`` when the interval excludes 0. ``rows_a`` and ``rows_b`` may be the same rows (two
    models of one run) or two runs' rows (one model before and after a change)."""
    a, b = question_totals(rows_a, model_a), question_totals(rows_b, model_b)
    common = [qid for qid in a if qid in b]
    out = {"difference": None, "lower": None, "upper": None, "questions": len(common), "level": level,
           "rounds": rounds, "seed": seed, "supported": False}  # fmt: skip
    if not common:
        return out
    sums_a, counts_a = (np.array([a[q][i] for q in common], dtype=np.float64) for i in (0, 1))
    sums_b, counts_b = (np.array([b[q][i] for q in common], dtype=np.float64) for i in (0, 1))
    out["difference"] = round(float(sums_a.sum() / counts_a.sum() - sums_b.sum() / counts_b.sum()), 4)
    out["lower"] = out["upper"] = out["difference"]
    if rounds:
        weights = _draws(len(common), rounds, seed)
        differences = weights @ sums_a / (weights @ counts_a) - weights @ sums_b / (weights @ counts_b)
        out["lower"], out["upper"] = _quantiles(differences, level)
    out["supported"] = bool(out["lower"] > 0 or out["upper"] < 0)
    return out


def win_rate_difference(a: dict, b: dict, *, level: float = LEVEL) -> dict:
    """Win rate of A minus win rate of B (AlpacaEval entries: win_rate, standard_error, both in percent), with a
    normal interval from the combined standard error; ``supported`` when it excludes 0."""
    out = {"difference": None, "standard_error": None, "lower": None, "upper": None, "level": level,
           "supported": False}  # fmt: skip
    values = [a.get("win_rate"), b.get("win_rate"), a.get("standard_error"), b.get("standard_error")]
    if any(v is None or v != v for v in values):  # v != v: NaN, a win rate over fewer than two pairs
        return out
    difference = values[0] - values[1]
    error = (values[2] ** 2 + values[3] ** 2) ** 0.5
    z = NormalDist().inv_cdf(1.0 - (1.0 - level) / 2.0)
    out.update(
        difference=round(difference, 4),
        standard_error=round(error, 4),
        lower=round(difference - z * error, 4),
        upper=round(difference + z * error, 4),
    )
    out["supported"] = bool(out["lower"] > 0 or out["upper"] < 0)
    return out


def mean_standard_error(wins: int, losses: int, ties: int) -> float | None:
    """Standard error (ddof 1) of the mean outcome of pairwise games scored 1, 0.5 (tie) and 0: the error bar of an
    adjusted win rate, on the 0-1 scale."""
    n = wins + losses + ties
    if n < 2:
        return None
    mean = (wins + ties / 2) / n
    squares = wins * (1 - mean) ** 2 + ties * (0.5 - mean) ** 2 + losses * mean**2
    return (squares / (n - 1)) ** 0.5 / n**0.5
