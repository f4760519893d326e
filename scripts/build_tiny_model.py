#!/usr/bin/env python
"""Build a tiny Mistral-architecture model and BPE tokenizer (with the Zephyr chat template) into a directory.

    python scripts/build_tiny_model.py runs/smoke/tiny-model [--text FILE ...] [--vocab-size 512]

The tokenizer is trained on the given text files (one example per line), or on the smoke-data
vocabulary if none are given. Nothing is downloaded.
"""

import argparse
import os

import _bootstrap  # noqa: F401

from distill_core.errors import UserError, run_cli


def main(argv):
    parser = argparse.ArgumentParser(prog="build_tiny_model.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--text", nargs="*", default=[], help="text files to train the tokenizer on")
    parser.add_argument("--vocab-size", type=int, default=512)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from training.smoke_data import corpus_lines

    lines = []
    for path in args.text:
        if not os.path.isfile(path):
            raise UserError(f"--text: file '{path}' does not exist")
        with open(path, encoding="utf-8") as f:
            lines += [line.rstrip("\n") for line in f if line.strip()]
    lines = lines or corpus_lines()

    from training.tiny import build_tiny_model

    out = build_tiny_model(
        args.out_dir,
        lines,
        vocab_size=args.vocab_size,
        hidden_size=args.hidden_size,
        layers=args.layers,
        seed=args.seed,
    )
    print(f"tiny model written to {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
