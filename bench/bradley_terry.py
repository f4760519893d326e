#!/usr/bin/env python
"""Bradley-Terry ratings with bootstrap intervals: ours against the reference way, measured here and now.

50 models with spread-out true ratings play 100,000 battles (10% ties). The reference fits as Arena-Hard-Auto and
the Chatbot Arena notebook do: every battle written out twice as a row of a logistic regression (a tie as one win
each way), scikit-learn's unpenalised LogisticRegression without intercept, and the bootstrap refits it on battles
resampled with replacement. Ours fits the counted (a, b, outcome) triples by Newton's method. Both run 100
bootstrap rounds. The full-data ratings must agree to 0.01 points; the printed figure is the speed ratio.

    python bench/bradley_terry.py [--models 50] [--battles 100000] [--rounds 100]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from evaluation.bradley_terry import count_battles, rank_models  # noqa: E402


def simulate(models: int, battles: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.normal(1000, 150, models)
    a = rng.integers(0, models, battles)
    b = (a + rng.integers(1, models, battles)) % models  # never a model against itself
    p_a = 1 / (1 + 10 ** ((truth[b] - truth[a]) / 400))
    draw = rng.random(battles)
    outcome = np.where(draw < 0.1, 0.5, np.where(rng.random(battles) < p_a, 1.0, 0.0))
    return [f"model-{i:02d}" for i in range(models)], a, b, outcome


def reference_fit(models: int, a: np.ndarray, b: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    """Elo ratings the reference way: each battle twice; a tie is a win for a in one copy and for b in the other."""
    from sklearn.linear_model import LogisticRegression

    n = len(a)
    x = np.zeros((2 * n, models))
    rows = np.arange(2 * n)
    x[rows, np.concatenate([a, a])] = math.log(10)
    x[rows, np.concatenate([b, b])] = -math.log(10)
    y = np.concatenate([outcome == 1.0, outcome == 1.0]).astype(float)
    y[:n][outcome == 0.5] = 1.0  # first copy of each tie: a won; second copy: b won
    model = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-8, max_iter=1000)  # unpenalised
    model.fit(x, y)
    elo = 400 * model.coef_[0] + 1000
    return elo + 1000 - elo[0]  # anchor the first model at 1000


def reference_ranking(models: int, a, b, outcome, rounds: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    point = reference_fit(models, a, b, outcome)
    samples = []
    for _ in range(rounds):
        pick = rng.integers(0, len(a), len(a))
        samples.append(reference_fit(models, a[pick], b[pick], outcome[pick]))
    return point, np.quantile(np.array(samples), [0.025, 0.975], axis=0)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--battles", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args(argv)
    names, a, b, outcome = simulate(args.models, args.battles, seed=0)

    start = time.perf_counter()
    ref_point, ref_bounds = reference_ranking(args.models, a, b, outcome, args.rounds, seed=1)
    ref_s = time.perf_counter() - start

    start = time.perf_counter()
    battles = count_battles([(names[i], names[j], float(o)) for i, j, o in zip(a, b, outcome)], names)
    ranking = rank_models(battles, anchor=(names[0], 1000.0), rounds=args.rounds, seed=1)
    ours_s = time.perf_counter() - start

    ours = {r.model: r for r in ranking.ratings}
    gap = max(abs(ours[m].rating - ref_point[i]) for i, m in enumerate(names))
    width_ours = np.mean([ours[m].upper - ours[m].lower for m in names[1:]])
    width_ref = np.mean(ref_bounds[1][1:] - ref_bounds[0][1:])
    print(f"{args.models} models, {args.battles:,} battles, {args.rounds} bootstrap rounds")
    print(f"reference (logistic regression on duplicated battles): {ref_s:.2f} s")
    print(f"ours (Newton on counted triples):                       {ours_s:.2f} s")
    print(f"largest rating difference: {gap:.5f} points (target < 0.01)")
    print(f"mean 95% interval width: ours {width_ours:.2f}, reference {width_ref:.2f} points")
    print(f"speed-up: x{ref_s / ours_s:.1f}")
    return 0 if gap < 0.01 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
