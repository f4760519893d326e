"""Running one stage: its script in a process group of its own, its log, and its outputs set aside when stale."""

from __future__ import annotations

import os
import shutil
import time

from .. import locks
from ..errors import UserError
from ..processes import Stopped, run_process_group
from .commands import command, script_env
from .graph import Pipeline, Stage, stage_dir
from .state import mark_complete, mark_started, stage_state


def run_stage(pipeline: Pipeline, stage: Stage, log) -> dict:
    """Run one stage to completion (resuming where it stopped) and stamp its manifest."""
    d = stage_dir(pipeline, stage)
    # A stage can outlive its pipeline (kill -9 ends the pipeline at once; the stage, in a process group of its own,
    # may still be running or finishing) and it holds its own directory: stop here, naming it, before its outputs are
    # set aside or its requests paid for a second time.
    holder = locks.holder(d)
    if holder is not None:
        raise UserError(f"stage '{stage.name}': {locks.describe_holder(d, holder)}")
    state = stage_state(pipeline, stage)
    if state == "stale" and os.path.exists(d):  # outputs of another configuration: set aside, never mixed in
        aside = f"{d}.stale-{time.strftime('%Y%m%d-%H%M%S')}"
        shutil.move(d, aside)
        log(f"[{stage.name}] inputs changed: previous outputs moved to {aside}")
    os.makedirs(d, exist_ok=True)
    mark_started(pipeline, stage)
    cmd = command(pipeline, stage)
    log(f"[{stage.name}] {'resuming' if state == 'partial' else 'running'}: {' '.join(cmd)}")
    started = time.monotonic()
    with open(os.path.join(d, "stage.log"), "a", encoding="utf-8") as out:
        try:  # in its own process group: a SIGINT or SIGTERM sent to the pipeline alone is passed on, never orphaned
            returncode = run_process_group(cmd, stdout=out, env=script_env())
        except Stopped as stop:
            log(f"[{stage.name}] stopped by {stop.name}: partial outputs are kept; rerun the same command to resume")
            raise
    wall = round(time.monotonic() - started, 1)
    if returncode != 0:
        tail = _tail(os.path.join(d, "stage.log"))
        raise UserError(
            f"stage '{stage.name}' failed (exit {returncode}) after {wall} s: {tail}; "
            f"full log: {os.path.join(d, 'stage.log')}; fix it and rerun the same command to resume"
        )
    manifest = mark_complete(pipeline, stage, cmd, wall)
    for warning in manifest.get("warnings") or []:  # what the stage let through and the run should not hide
        log(f"[{stage.name}] warning: {warning}")
    return manifest


def _tail(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [line.strip() for line in f if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors[-1] if errors else (lines[-1] if lines else "no output"))[:600]
