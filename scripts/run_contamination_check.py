#!/usr/bin/env python
"""Model-level contamination check: Min-K% Prob and Min-K%++ of benchmark items against non-members, with AUCs.

python scripts/run_contamination_check.py --model MODEL_DIR --benchmark ITEMS.jsonl --out-dir DIR
    [--comparison HELD_OUT.jsonl] [--text-field text] [--limit N] [--k 0.2] [--seed 0] [--swap-fraction 0.2]
    [--batch-size 8] [--max-length 1024] [--dtype auto|bf16|fp32] [--device auto|cpu|cuda]

Members are the benchmark's items; non-members the comparison file's items, else the items perturbed by seeded
adjacent word swaps. Writes DIR/scores.jsonl, summary.json, min_k_histogram.png, manifest.json and README.md, and
prints the summary. There is no universal threshold: read the AUC, never a score alone.
"""

import argparse
import json
import sys
from dataclasses import fields

import _bootstrap  # noqa: F401

from distill_core.errors import run_cli
from evaluation.contamination_check import ContaminationCheck, run_contamination_check

TYPES = {"limit": int, "k": float, "seed": int, "swap_fraction": float, "batch_size": int, "max_length": int}


def parse_check(argv: list[str]) -> ContaminationCheck:
    parser = argparse.ArgumentParser(prog="run_contamination_check.py", description=__doc__.splitlines()[0])
    for spec in fields(ContaminationCheck):
        if spec.type == "bool":
            option = "--" + spec.name.replace("_", "-")
            parser.add_argument(option, dest=spec.name, action=argparse.BooleanOptionalAction, default=spec.default,
                                help=spec.metadata["help"] + f" (default {spec.default})")  # fmt: skip
            continue
        required = spec.name in ("model", "benchmark", "out_dir")
        parser.add_argument(
            "--" + spec.name.replace("_", "-"),
            dest=spec.name,
            type=TYPES.get(spec.name, str),
            required=required,
            default=None if required else spec.default,
            choices=("auto", "bf16", "fp32") if spec.name == "dtype" else None,
            help=spec.metadata["help"] + ("" if required or spec.default is None else f" (default {spec.default})"),
        )
    return ContaminationCheck(**vars(parser.parse_args(argv)))


def main(argv: list[str]) -> int:
    check = parse_check(argv)
    summary = run_contamination_check(check)
    print(json.dumps(summary, indent=2))
    print(f"wrote {check.out_dir}: {summary['threshold']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_cli(main)
