"""From a recipe file to its plan: the stage its keys say, the recipe validated, the model and launcher read."""

from __future__ import annotations

import os

import yaml

from distill_core.errors import RecipeError

from .estimate import plan_memory
from .launcher import read_launcher
from .model_shape import read_model_shape
from .plan import MemoryPlan
from .run_shape import run_shape


def infer_stage(recipe_path: str, argv: list[str]) -> str:
    """sft or dpo from the keys a recipe sets: keys only DPO's sections have (beta, ref_mode, loss_type) mean dpo."""
    from distill_core.recipe import parse_overrides
    from distill_core.schema import fields_of

    from ..arguments import DPO_SECTIONS, SFT_SECTIONS

    if not os.path.isfile(recipe_path):
        return "sft"  # either will do: load_recipe reports the missing file
    with open(recipe_path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError:
            data = None  # load_recipe reports the syntax error
    keys = set(parse_overrides(argv)) | (set(data) if isinstance(data, dict) else set())
    sft = {k for s in SFT_SECTIONS for k in fields_of(s.cls)}
    dpo = {k for s in DPO_SECTIONS for k in fields_of(s.cls)}
    if keys & (dpo - sft):
        return "dpo"
    if keys & (sft - dpo):
        return "sft"
    raise RecipeError(
        f"{recipe_path}: cannot tell an sft from a dpo recipe by its keys; pass --stage sft or --stage dpo"
    )


def preflight(
    recipe_path: str,
    argv: list[str],
    *,
    accelerate_config: str,
    gpu_memory_gb: float,
    nodes: int | None = None,
    gpus_per_node: int | None = None,
    stage: str | None = None,
) -> MemoryPlan:
    """Validate the recipe (with its --key value overrides) and plan its memory; raises RecipeError on bad input.

    ``nodes`` and ``gpus_per_node`` default to the accelerate config's num_machines and num_processes / num_machines.
    The caller decides what a plan that does not fit means (scripts/preflight.py exits 2).
    """
    from distill_core.recipe import load_recipe
    from distill_core.schema import fields_of

    from ..arguments import DPO_SECTIONS, SFT_SECTIONS, check_dpo, check_sft

    stage = stage or infer_stage(recipe_path, argv)
    if stage not in ("sft", "dpo"):
        raise RecipeError(f"--stage: unknown stage '{stage}'; use sft or dpo")
    sections, check = (SFT_SECTIONS, check_sft) if stage == "sft" else (DPO_SECTIONS, check_dpo)
    recipe = load_recipe(recipe_path, argv, sections, check)
    launcher = read_launcher(accelerate_config)
    nodes = nodes or launcher.num_machines
    gpus_per_node = gpus_per_node or max(1, launcher.num_processes // launcher.num_machines)
    defaults = {name: spec.default for s in sections for name, spec in fields_of(s.cls).items()}
    run = run_shape(recipe, stage, defaults)
    revision = recipe.get("model_revision", "main")
    model = read_model_shape(recipe.get("model_name_or_path"), where=recipe_path, revision=revision)
    reference = None
    ref_path = recipe.get("ref_model_name_or_path")
    if stage == "dpo" and run.ref_mode == "model" and ref_path and ref_path != recipe.get("model_name_or_path"):
        reference = read_model_shape(ref_path, where=f"{recipe_path}: ref_model_name_or_path", revision=revision)
    return plan_memory(
        run,
        model,
        launcher,
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        gpu_memory_gb=gpu_memory_gb,
        recipe=recipe_path,
        reference=reference,
    )
