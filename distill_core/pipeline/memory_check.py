"""A training stage's memory plan, checked against its launch's GPUs before the launch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from ..errors import RecipeError, UserError
from .commands import REPO_ROOT, script_args, script_env
from .graph import KINDS, Pipeline, Stage


def check_memory_plan(pipeline: Pipeline, stage: Stage, log, *, ignore: bool = False) -> None:
    """Refuse a training stage whose per-GPU memory plan (scripts/preflight.py) does not fit its launch's GPUs.

    Runs the script in a subprocess (it reads training's recipe schemas; this package does not import training).
    Needs ``launch.gpu_memory_gb``; without it the check is skipped with one line saying so.
    """
    launch = stage.launch
    if launch is None or not KINDS[stage.kind][1]:
        return
    if ignore:
        log(f"[{stage.name}] memory plan not checked (--ignore-memory-plan)")
        return
    if launch.gpu_memory_gb is None:
        where = "no GPU on this machine" if shutil.which("nvidia-smi") is None else "GPUs present"
        log(
            f"[{stage.name}] memory plan skipped: launch.gpu_memory_gb is not set ({where}); set it to check "
            f"the plan before launch"
        )
        return
    if launch.nodes < 1 or launch.num_processes % launch.nodes:
        raise RecipeError(
            f"{pipeline.path}: stages.{stage.name}.launch: num_processes {launch.num_processes} is not "
            f"a multiple of nodes {launch.nodes}; give the processes of all nodes"
        )
    cmd = [
        sys.executable,
        os.path.join(REPO_ROOT, "scripts", "preflight.py"),
        *script_args(pipeline, stage),
        "--accelerate_config",
        launch.accelerate_config,
        "--nodes",
        str(launch.nodes),
        "--gpus_per_node",
        str(launch.num_processes // launch.nodes),
        "--gpu_memory_gb",
        str(launch.gpu_memory_gb),
        "--stage",
        stage.kind,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=script_env())
    if proc.returncode != 0:
        errors = [line[len("error: ") :] for line in proc.stderr.splitlines() if line.startswith("error: ")]
        reason = errors[-1] if errors else (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(
            f"stage '{stage.name}' refused by its memory plan: {reason}; fix the launch or recipe, or "
            f"rerun with --ignore-memory-plan to launch anyway"
        )
    verdict = next((line for line in proc.stdout.splitlines() if line.startswith("verdict:")), "verdict: unknown")
    log(f"[{stage.name}] memory plan {verdict}")
