#!/usr/bin/env python
"""Print the effective global batch a training recipe gives at a world size, validating the recipe.

    python scripts/global_batch.py {sft,dpo} RECIPE.yaml --world-size 16 [--key value ...]
    python scripts/global_batch.py {sft,dpo} --config RECIPE.yaml --world-size 16

Reads the recipe with the same loader as the training scripts (no torch import), so a bad recipe
fails here, before a cluster job waits in a queue.
"""

import argparse

import _bootstrap  # noqa: F401

from distill_core.cli import split_recipe_argv
from distill_core.errors import RecipeError, run_cli
from distill_core.recipe import load_recipe
from distill_core.schema import fields_of

PROG = "global_batch.py"
USAGE = f"{PROG} {{sft,dpo}} RECIPE.yaml --world-size N [--key value ...]"


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # argparse's own error is a usage block and a second line; every bad input here is one line, exit 2
        raise RecipeError(f"{PROG}: {message}; usage: {USAGE}")


def _processes(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"needs a whole number of processes (GPUs), got {text!r}") from None


def main(argv):
    parser = _Parser(
        prog=PROG,
        usage=USAGE,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )  # an abbreviation would take a recipe override such as --world for ours
    parser.add_argument("stage", help="sft or dpo: which training script's schema reads the recipe")
    parser.add_argument("--world-size", type=_processes, default=1, help="processes (GPUs) of the launch")
    # what is left, the recipe and its --key value overrides, is the training scripts' own command line
    args, recipe_argv = parser.parse_known_args(argv)

    from training.arguments import DPO_SECTIONS, SFT_SECTIONS, check_dpo, check_sft
    from training.runtime import effective_global_batch

    stages = {"sft": (SFT_SECTIONS, check_sft), "dpo": (DPO_SECTIONS, check_dpo)}
    if args.stage not in stages:
        raise RecipeError(f"unknown stage '{args.stage}'; use sft or dpo")
    sections, check = stages[args.stage]
    path, overrides = split_recipe_argv(recipe_argv, PROG)
    recipe = load_recipe(path, overrides, sections, check)
    training = fields_of(sections[-1].cls)
    per_device = recipe.get("per_device_train_batch_size", training["per_device_train_batch_size"].default)
    accum = recipe.get("gradient_accumulation_steps", training["gradient_accumulation_steps"].default)
    print(
        f"{path}: effective global batch {effective_global_batch(per_device, accum, args.world_size)} "
        f"= {per_device} per device x {accum} gradient accumulation x {args.world_size} processes"
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
