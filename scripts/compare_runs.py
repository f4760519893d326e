#!/usr/bin/env python
"""Compare the evaluations of several runs: one table of models x metrics, plots, and which differences hold up.

python scripts/compare_runs.py RUN_DIR_OR_EVAL_DIR... [--out compare] [--pair A B] [--bootstrap 1000] [--level 0.95]
                               [--seed 0]

Each argument is a pipeline run directory (its stage directories holding scores.json are read) or an evaluation
output directory. Prints the table (rows run/stage/model) and, for the same model name across runs (or each
--pair A B), the MT-Bench difference with a paired bootstrap interval over the common questions and the AlpacaEval
win-rate difference with the combined standard error, each called supported when its interval excludes 0.
Writes compare.json and the plots (compare_mt_bench.png, compare_win_rates.png, compare_bradley_terry.png) to --out.
"""

import argparse
import json
import os

import _bootstrap  # noqa: F401

from distill_core.errors import UserError, run_cli
from distill_core.records import write_atomic
from evaluation.compare import differences, find_evaluations, model_rows, plot_comparison, table, verdicts
from evaluation.intervals import add_bootstrap_arguments, check_bootstrap_arguments


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="compare_runs.py", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="pipeline run directories or evaluation output directories")
    parser.add_argument("--out", default="compare", help="where compare.json and the plots go (default ./compare)")
    parser.add_argument(
        "--pair",
        nargs=2,
        action="append",
        default=[],
        metavar=("A", "B"),
        help="compare model A with model B (repeatable; default: each model with itself across runs)",
    )
    add_bootstrap_arguments(parser, min_rounds=1)
    args = parser.parse_args(argv)
    check_bootstrap_arguments(args, min_rounds=1)
    evaluations = [ev for arg in args.runs for ev in find_evaluations(arg)]
    paths = [os.path.abspath(ev.path) for ev in evaluations]
    if len(set(paths)) < len(paths):
        raise UserError("the same evaluation directory is given twice; name each run once")
    stats = {"rounds": args.bootstrap, "level": args.level, "seed": args.seed}
    rows = model_rows(evaluations, **stats)
    diffs = differences(evaluations, [tuple(p) for p in args.pair], **stats)
    print(table(rows))
    lines = verdicts(diffs)
    print("\n".join(["", *lines]) if lines else "\nno model appears in two evaluations: give --pair A B to compare")
    os.makedirs(args.out, exist_ok=True)
    figures = plot_comparison(rows, args.out, args.level)
    result = {**stats, "rows": rows, "differences": diffs, "figures": [os.path.basename(f) for f in figures]}
    write_atomic(os.path.join(args.out, "compare.json"), json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {os.path.join(args.out, 'compare.json')} and {len(figures)} plots")
    return 0


if __name__ == "__main__":
    run_cli(main)
