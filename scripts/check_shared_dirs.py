#!/usr/bin/env python
"""Check that every node of a job sees a training recipe's output_dir and the datasets cache (slurm/launch.sbatch).

    python scripts/check_shared_dirs.py mark  TOKEN {sft,dpo} RECIPE.yaml [--key value ...]   # on the first node
    srun ... python scripts/check_shared_dirs.py check TOKEN {sft,dpo} RECIPE.yaml [...]      # on every node
    python scripts/check_shared_dirs.py clear TOKEN {sft,dpo} RECIPE.yaml [...]

TOKEN names the markers (the job id). A node that does not see them stops with one line and exit code 2.
"""

import _bootstrap  # noqa: F401

from distill_core import shared_fs
from distill_core.cli import split_recipe_argv
from distill_core.errors import RecipeError, run_cli
from distill_core.recipe import load_recipe

ACTIONS = {"mark": shared_fs.mark, "check": shared_fs.check, "clear": shared_fs.clear}


def main(argv):
    if len(argv) < 4 or argv[0] not in ACTIONS:
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    action, token, stage = argv[:3]
    from training.arguments import DPO_SECTIONS, SFT_SECTIONS

    sections = {"sft": SFT_SECTIONS, "dpo": DPO_SECTIONS}.get(stage)
    if sections is None:
        raise RecipeError(f"unknown stage '{stage}'; use sft or dpo")
    path, overrides = split_recipe_argv(argv[3:], "check_shared_dirs.py")
    output_dir = load_recipe(path, overrides, sections).get("output_dir")
    if not output_dir:
        raise RecipeError(f"{path}: required key 'output_dir' is missing; say where the trained model is written")
    ACTIONS[action](shared_fs.directories(output_dir), token)
    return 0


if __name__ == "__main__":
    run_cli(main)
