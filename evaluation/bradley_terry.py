"""Bradley-Terry ratings from pairwise battles, on the Elo scale, with seeded bootstrap intervals and ranks.

P(a beats b) = 1 / (1 + 10 ** ((R_b - R_a) / 400)). A tie counts half a win to each side. The fit is the maximum
likelihood over the distinct (a, b, outcome) triples weighted by their counts (the same optimum Chatbot Arena and
Arena-Hard-Auto reach with a logistic regression over every battle written out twice), found by Newton's method on
the at most models x models x 3 triples: a few milliseconds for 50 models, whatever the number of battles.

The bootstrap resamples battles with replacement (a seeded multinomial draw over the triples, which is the same
distribution as drawing battles one by one), refits, and takes the quantiles of each model's rating at the stated
level. The reported rating is the fit on all battles, not the bootstrap mean. A model's rank is 1 + the number of
models whose lower bound is above its upper bound, so models whose intervals overlap share a rank.

A model that won, or lost, every battle it is linked through has no finite maximum-likelihood rating; the fit
refuses such data with a message naming the models, unless ``l2`` (a weak Gaussian prior on the ratings, in units
of the natural log-odds scale) is given. A bootstrap resample can lose that property by chance: those rounds are
counted (``degenerate_rounds``) and their ratings, which run off towards plus or minus infinity, are kept as they
are: they fall in the tails, which is what an interval should show for a model the data barely pins down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from distill_core.errors import UserError

LN10 = math.log(10.0)
SCALE = 400.0
INITIAL = 1000.0
OUTCOMES = (1.0, 0.5, 0.0)  # model_a won, tie, model_b won


@dataclass(frozen=True)
class Battles:
    """Battle counts by distinct triple: ``a`` and ``b`` index ``models``, ``outcome`` is 1, 0.5 or 0 for a."""

    models: tuple[str, ...]
    a: np.ndarray
    b: np.ndarray
    outcome: np.ndarray
    count: np.ndarray

    @property
    def total(self) -> int:
        return int(self.count.sum())


@dataclass(frozen=True)
class Rating:
    model: str
    rating: float
    lower: float
    upper: float
    rank: int
    battles: int


@dataclass(frozen=True)
class Ranking:
    ratings: list[Rating]  # best first
    level: float
    rounds: int
    seed: int
    anchor: tuple[str, float] | None
    degenerate_rounds: int

    def as_rows(self) -> list[dict]:
        return [vars(r) | {"rating": round(r.rating, 4), "lower": round(r.lower, 4), "upper": round(r.upper, 4)}
                for r in self.ratings]  # fmt: skip


def count_battles(records: list[tuple[str, str, float]], models: list[str] | None = None) -> Battles:
    """Aggregate (model_a, model_b, outcome for a) records into counted triples."""
    names = list(models) if models is not None else sorted({m for a, b, _ in records for m in (a, b)})
    index = {m: i for i, m in enumerate(names)}
    counts: dict[tuple[int, int, float], int] = {}
    for a, b, outcome in records:
        if outcome not in OUTCOMES:
            raise UserError(f"battle {a} vs {b} has outcome {outcome!r}: use 1 (a won), 0.5 (tie) or 0 (b won)")
        if a == b:
            raise UserError(f"a battle pits {a} against itself: drop it or fix the model names")
        key = (index[a], index[b], float(outcome))
        counts[key] = counts.get(key, 0) + 1
    keys = sorted(counts)
    return Battles(
        models=tuple(names),
        a=np.array([k[0] for k in keys], dtype=np.int64),
        b=np.array([k[1] for k in keys], dtype=np.int64),
        outcome=np.array([k[2] for k in keys], dtype=np.float64),
        count=np.array([counts[k] for k in keys], dtype=np.float64),
    )


def fit(battles: Battles, *, weights: np.ndarray | None = None, l2: float = 0.0, max_iter: int = 100) -> np.ndarray:
    """Maximum-likelihood strengths on the natural scale (r, with P(a beats b) = sigmoid(ln10 (r_a - r_b))), the
    first model fixed at 0. ``weights`` replaces the triple counts (a bootstrap resample)."""
    n = len(battles.models)
    w = battles.count if weights is None else weights
    r = np.zeros(n)
    if n < 2:
        return r
    loss = _neg_log_likelihood(battles, w, r, l2)
    for _ in range(max_iter):
        grad, hess = _gradient_hessian(battles, w, r, l2)
        if np.max(np.abs(grad[1:])) < 1e-10:
            break
        step = np.zeros(n)
        step[1:] = np.linalg.lstsq(hess[1:, 1:], -grad[1:], rcond=None)[0]  # r_0 = 0 removes the free shift
        shrink = 1.0  # backtracking keeps every step downhill, so separated data drifts instead of oscillating
        while shrink > 1e-8:
            candidate = r + shrink * step
            new_loss = _neg_log_likelihood(battles, w, candidate, l2)
            if new_loss <= loss + 1e-12:
                break
            shrink /= 2
        if shrink <= 1e-8 or loss - new_loss < 1e-15 * max(1.0, abs(loss)):
            r = candidate if new_loss <= loss else r
            break
        r, loss = candidate, new_loss
    return r


def _neg_log_likelihood(battles: Battles, w: np.ndarray, r: np.ndarray, l2: float) -> float:
    z = LN10 * (r[battles.a] - r[battles.b])
    # -[y log s(z) + (1 - y) log s(-z)] = softplus(z) - y z, written to stay finite for large |z|
    per_triple = np.logaddexp(0.0, z) - battles.outcome * z
    return float(np.dot(w, per_triple) + 0.5 * l2 * np.dot(r, r))


def _gradient_hessian(battles: Battles, w: np.ndarray, r: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    n = len(battles.models)
    z = LN10 * (r[battles.a] - r[battles.b])
    p = 0.5 * (1.0 + np.tanh(0.5 * z))  # sigmoid without overflow
    g = LN10 * w * (p - battles.outcome)
    grad = np.bincount(battles.a, g, n) - np.bincount(battles.b, g, n) + l2 * r
    h = LN10 * LN10 * w * p * (1.0 - p)
    hess = np.zeros((n, n))
    np.add.at(hess, (battles.a, battles.b), -h)
    np.add.at(hess, (battles.b, battles.a), -h)
    diagonal = np.bincount(battles.a, h, n) + np.bincount(battles.b, h, n)
    hess[np.diag_indices(n)] += diagonal + l2
    return grad, hess


def check_identifiable(battles: Battles, l2: float) -> None:
    """Refuse data whose maximum-likelihood ratings are infinite or undetermined, naming the models at fault.

    The ratings are finite and unique exactly when every model can reach every other along "did not lose to"
    edges (a tie is an edge both ways): the directed graph is strongly connected. With a prior (l2 > 0) any data
    fits.
    """
    if l2 > 0 or len(battles.models) < 2:
        return
    n = len(battles.models)
    beats = [set() for _ in range(n)]  # i -> j: i won or drew against j at least once
    for a, b, outcome, count in zip(battles.a, battles.b, battles.outcome, battles.count):
        if count <= 0:
            continue
        if outcome >= 0.5:
            beats[a].add(b)
        if outcome <= 0.5:
            beats[b].add(a)
    reach_from_first = _reachable(beats, 0)
    reach_to_first = _reachable([{i for i in range(n) if j in beats[i]} for j in range(n)], 0)
    stranded = [battles.models[i] for i in range(n) if i not in reach_from_first or i not in reach_to_first]
    if stranded:
        names = ", ".join(stranded[:5]) + (f" and {len(stranded) - 5} more" if len(stranded) > 5 else "")
        raise UserError(
            f"no finite Bradley-Terry ratings: {names} never lost or never won (or never met the others) along "
            f"the battles linking them to {battles.models[0]}; add battles, or pass --l2 0.01 for a weak prior"
        )


def _reachable(edges: list[set], start: int) -> set[int]:
    seen, stack = {start}, [start]
    while stack:
        for nxt in edges[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def to_elo(r: np.ndarray, models: tuple[str, ...], anchor: tuple[str, float] | None) -> np.ndarray:
    """Natural strengths -> Elo-scale ratings: 400 r + 1000, shifted so the anchor model has its rating (without
    an anchor, shifted so the mean rating is 1000)."""
    elo = SCALE * r + INITIAL
    if anchor is None:
        return elo - elo.mean() + INITIAL
    model, value = anchor
    return elo + value - elo[models.index(model)]


def rank_models(
    battles: Battles,
    *,
    anchor: tuple[str, float] | None = None,
    rounds: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    l2: float = 0.0,
) -> Ranking:
    """Ratings, bootstrap intervals and ranks for every model of the battles."""
    if anchor is not None and anchor[0] not in battles.models:
        raise UserError(f"the anchor model {anchor[0]!r} appears in no battle; pick one of {list(battles.models)}")
    if not 0 < level < 1:
        raise UserError(f"the interval level {level} must lie between 0 and 1, e.g. 0.95")
    check_identifiable(battles, l2)
    point = to_elo(fit(battles, l2=l2), battles.models, anchor)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(battles.total, battles.count / battles.total, size=rounds) if rounds else []
    samples, degenerate = [], 0
    for weights in draws:
        resample = Battles(battles.models, battles.a, battles.b, battles.outcome, weights.astype(np.float64))
        try:
            check_identifiable(resample, l2)
        except UserError:
            degenerate += 1
        samples.append(to_elo(fit(battles, weights=resample.count, l2=l2), battles.models, anchor))
    tail = (1 - level) / 2
    if samples:
        lower, upper = np.quantile(np.array(samples), [tail, 1 - tail], axis=0)
    else:
        lower, upper = point.copy(), point.copy()
    played = np.bincount(battles.a, battles.count, len(battles.models)) + np.bincount(
        battles.b, battles.count, len(battles.models)
    )
    ratings = [
        Rating(m, float(point[i]), float(lower[i]), float(upper[i]), 1 + int(np.sum(lower > upper[i])), int(played[i]))
        for i, m in enumerate(battles.models)
    ]
    ratings.sort(key=lambda r: (-r.rating, r.model))
    return Ranking(ratings, level, rounds, seed, anchor, degenerate)
