"""The command line that runs a stage: its script under python, under accelerate launch, or as a Slurm job."""

from __future__ import annotations

import json
import os
import sys

from ..processes import free_port
from .graph import KINDS, Pipeline, Stage, resolve, stage_dir

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def command(pipeline: Pipeline, stage: Stage, python: str = sys.executable) -> list[str]:
    args = [script_path(stage), *script_args(pipeline, stage)]
    if stage.launch is None:
        return [python, *args]
    accelerate = os.path.join(os.path.dirname(python), "accelerate")
    return [
        accelerate,
        "launch",
        "--config_file",
        stage.launch.accelerate_config,
        "--num_processes",
        str(stage.launch.num_processes),
        "--main_process_port",
        str(free_port()),
        *args,
    ]


def slurm_command(pipeline: Pipeline, stage: Stage, nodes: int) -> list[str]:
    """The sbatch line for a training stage: the same recipe, overrides and accelerate config, on ``nodes`` nodes."""
    recipe_and_overrides = script_args(pipeline, stage)
    return [
        "sbatch",
        f"--nodes={nodes}",
        "slurm/launch.sbatch",
        stage.kind,
        recipe_and_overrides[0],
        stage.launch.accelerate_config,
        *recipe_and_overrides[1:],
    ]


def script_path(stage: Stage) -> str:
    return os.path.join(REPO_ROOT, "scripts", KINDS[stage.kind][0])


def script_args(pipeline: Pipeline, stage: Stage) -> list[str]:
    """What follows the stage's script: its recipe, its output directory and its resolved overrides."""
    args = [stage.recipe, "--output_dir", stage_dir(pipeline, stage)]
    for key, value in resolve(stage.overrides, pipeline.run_dir).items():
        # JSON is YAML: the loader reads a structured value written this way
        args += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    return args


def script_env() -> dict[str, str]:
    """The environment a stage's script runs in: this checkout's packages importable without an install."""
    return {**os.environ, "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
