#!/usr/bin/env python
"""Bradley-Terry ratings on the Elo scale, with bootstrap intervals and ranks, from Chatbot Arena battles.

python scripts/rank_models.py BATTLES.jsonl [--anchor MODEL=RATING] [--bootstrap N] [--level 0.95] [--seed S]

BATTLES.jsonl: one JSON object per line with model_a, model_b and winner (model_a, model_b, tie, tie (bothbad)).
Prints one JSON object per model, best first: model, rating, lower, upper, rank (and battles, the games it played).
"""

import argparse
import json
import sys

import _bootstrap  # noqa: F401

from distill_core.errors import UserError, run_cli
from evaluation.bradley_terry import count_battles, rank_models
from evaluation.intervals import add_bootstrap_arguments, check_bootstrap_arguments
from evaluation.reference_files import read_arena_battles


def parse_anchor(text: str) -> tuple[str, float]:
    model, _, value = text.rpartition("=")
    try:
        rating = float(value)
    except ValueError:
        rating = None
    if not model or rating is None:
        raise UserError(f"--anchor {text!r}: write MODEL=RATING, e.g. --anchor gpt-4-0314=1000")
    return model, rating


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="rank_models.py", description=__doc__.splitlines()[0])
    parser.add_argument("battles", help="Chatbot Arena battles, JSON lines")
    parser.add_argument("--anchor", help="MODEL=RATING: the model whose rating is fixed (default: mean 1000)")
    add_bootstrap_arguments(parser, min_rounds=0)
    parser.add_argument("--l2", type=float, default=0.0, help="weak prior for models that never lost or never won")
    args = parser.parse_args(argv)
    check_bootstrap_arguments(args, min_rounds=0)
    anchor = parse_anchor(args.anchor) if args.anchor else None
    ranking = rank_models(
        count_battles(read_arena_battles(args.battles)),
        anchor=anchor,
        rounds=args.bootstrap,
        level=args.level,
        seed=args.seed,
        l2=args.l2,
    )
    for row in ranking.as_rows():
        print(json.dumps(row))
    print(
        f"{len(ranking.ratings)} models; {ranking.level:.0%} intervals from {ranking.rounds} bootstrap rounds "
        f"(seed {ranking.seed}), {ranking.degenerate_rounds} of them with a model that never lost or never won",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
