#!/usr/bin/env python
"""Merge models with mergekit's methods (linear, slerp, task_arithmetic, ties, dare_ties, dare_linear, model_stock),
streamed tensor by tensor into sharded safetensors; the recipe reads like a mergekit config.

python scripts/run_merge.py recipes/smoke/merge.yaml [--dry_run] [--output_dir DIR] [--seed 0]
"""

import _bootstrap  # noqa: F401

from distill_core.cli import run_recipe_command
from distill_core.recipe import Section
from merging.config import MergeArguments, check_merge

SUMMARY = "Model merging (mergekit semantics), streamed: peak memory a few tensors, not the model."
SECTIONS = [Section("merge", MergeArguments)]


def run(recipe):
    from merging.run import run_merge
    from training.merge import merge_lora_adapter  # an adapter input is merged into its base first

    return run_merge(recipe, merge_adapter=merge_lora_adapter)


if __name__ == "__main__":
    run_recipe_command(__file__, SUMMARY, SECTIONS, check_merge, run)
