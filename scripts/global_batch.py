#!/usr/bin/env python
"""Print the effective global batch a training recipe gives at a world size, validating the recipe.

    python scripts/global_batch.py {sft,dpo} RECIPE.yaml --world-size 16 [--key value ...]
    python scripts/global_batch.py {sft,dpo} --config RECIPE.yaml --world-size 16

Reads the recipe with the same loader as the training scripts (no torch import), so a bad recipe
fails here, before a cluster job waits in a queue.
"""

import _bootstrap  # noqa: F401

from distill_core.cli import split_recipe_argv
from distill_core.errors import RecipeError, run_cli
from distill_core.recipe import load_recipe
from distill_core.schema import fields_of


def main(argv):
    if len(argv) < 2 or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    from training.arguments import DPO_SECTIONS, SFT_SECTIONS, check_dpo, check_sft

    stages = {"sft": (SFT_SECTIONS, check_sft), "dpo": (DPO_SECTIONS, check_dpo)}
    if argv[0] not in stages:
        raise RecipeError(f"unknown stage '{argv[0]}'; use sft or dpo")
    sections, check = stages[argv[0]]
    args = list(argv[1:])
    world_size = 1
    if "--world-size" in args:
        i = args.index("--world-size")
        try:
            world_size = int(args[i + 1])
        except (IndexError, ValueError):
            raise RecipeError("--world-size needs a whole number of processes (GPUs)") from None
        del args[i:i + 2]
    path, overrides = split_recipe_argv(args, "global_batch.py")
    recipe = load_recipe(path, overrides, sections, check)
    training = fields_of(sections[-1].cls)
    per_device = recipe.get("per_device_train_batch_size", training["per_device_train_batch_size"].default)
    accum = recipe.get("gradient_accumulation_steps", training["gradient_accumulation_steps"].default)
    print(f"{path}: effective global batch {per_device * accum * world_size} "
          f"= {per_device} per device x {accum} gradient accumulation x {world_size} processes")
    return 0


if __name__ == "__main__":
    run_cli(main)
