#!/usr/bin/env python
"""Write the small local chat (sft/) and preference (prefs/) datasets the smoke recipes train on.

python scripts/build_smoke_data.py runs/smoke/data
"""

import argparse

import _bootstrap  # noqa: F401

from distill_core.errors import run_cli


def main(argv):
    parser = argparse.ArgumentParser(prog="build_smoke_data.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--train", type=int, default=2048, help="training examples per dataset")
    parser.add_argument("--test", type=int, default=32, help="test examples per dataset")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from training.smoke_data import build_smoke_datasets

    paths = build_smoke_datasets(args.out_dir, n_sft=args.train, n_pref=args.train, n_test=args.test, seed=args.seed)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
