#!/usr/bin/env python
"""AlpacaEval's leaderboard numbers for an annotations file, computed as AlpacaEval defines them.

python scripts/score_alpaca_eval.py ANNOTATIONS.json

Prints one JSON object: win_rate, standard_error, n_wins, n_wins_base, n_draws, n_total, n_unannotated, avg_length.
Unlike AlpacaEval, pairs nobody annotated are counted (n_unannotated) instead of vanishing.
"""

import argparse
import json

import _bootstrap  # noqa: F401

from distill_core.errors import run_cli
from evaluation.reference_files import score_alpaca_annotations


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="score_alpaca_eval.py", description=__doc__.splitlines()[0])
    parser.add_argument("annotations", help="AlpacaEval annotations JSON (a list of records with preference)")
    args = parser.parse_args(argv)
    print(json.dumps(score_alpaca_annotations(args.annotations)))
    return 0


if __name__ == "__main__":
    run_cli(main)
