"""The pipeline: stages in dependency order, each skipped when its record matches its inputs.

A pipeline recipe names each stage's recipe and wires outputs to inputs with ``{run_dir}`` placeholders::

    run_dir: runs/smoke/pipeline
    stages:
      self_instruct: {recipe: recipes/smoke/self_instruct.yaml}
      dialogues:
        recipe: recipes/smoke/dialogues.yaml
        overrides: {prompts: "{run_dir}/self_instruct/prompts"}
      sft:
        recipe: recipes/smoke/sft.yaml
        launch: {accelerate_config: recipes/accelerate/zero3_cpu.yaml, num_processes: 2}
        overrides: {dataset_mixture: {datasets: [{id: "{run_dir}/dialogues/sft"}]}}

A stage depends on the stages its overrides mention. Its fingerprint hashes its kind, recipe text, resolved
overrides, launch settings and its dependencies' fingerprints; a finished stage records it in its
``manifest.json`` and is skipped while it matches. Changing one recipe changes that stage's fingerprint and
so those of every stage downstream: exactly those rerun. A stage stopped midway resumes (journals and
checkpoints), unless its configuration changed, in which case its partial outputs are set aside.
"""

from __future__ import annotations

from .commands import command, slurm_command
from .graph import KINDS, Launch, Pipeline, Stage, load_pipeline, resolve, select, stage_dir
from .memory_check import check_memory_plan
from .running import run_stage
from .state import claim_run_dir, stage_state

__all__ = [
    "KINDS",
    "Launch",
    "Pipeline",
    "Stage",
    "check_memory_plan",
    "claim_run_dir",
    "command",
    "load_pipeline",
    "resolve",
    "run_stage",
    "select",
    "slurm_command",
    "stage_dir",
    "stage_state",
]
