"""The records that let a rerun skip a finished stage and resume a partial one, and the run directory's owner.

A stage's ``.pipeline_started.json`` holds the fingerprint it was started with; its ``manifest.json`` gains a
``pipeline`` entry, with the fingerprint, once it completes.
"""

from __future__ import annotations

import json
import os

from .. import locks
from ..errors import UserError
from ..records import write_atomic
from .graph import Pipeline, Stage, stage_dir

_STARTED = ".pipeline_started.json"


def stage_state(pipeline: Pipeline, stage: Stage) -> str:
    """done (manifest matches), stale (finished with other inputs), partial (started, same inputs) or new."""
    d = stage_dir(pipeline, stage)
    try:
        with open(os.path.join(d, "manifest.json"), encoding="utf-8") as f:
            record = json.load(f).get("pipeline", {})
        if record.get("status") == "complete":
            return "done" if record.get("fingerprint") == stage.fingerprint else "stale"
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(d, _STARTED), encoding="utf-8") as f:
            started = json.load(f)
        return "partial" if started.get("fingerprint") == stage.fingerprint else "stale"
    except (OSError, ValueError):
        return "new" if not os.path.exists(d) else "stale"


def mark_started(pipeline: Pipeline, stage: Stage) -> None:
    write_atomic(
        os.path.join(stage_dir(pipeline, stage), _STARTED), json.dumps({"fingerprint": stage.fingerprint}) + "\n"
    )


def mark_complete(pipeline: Pipeline, stage: Stage, cmd: list[str], wall: float) -> dict:
    """Add the pipeline's record to the manifest the stage wrote (or start one), and return the manifest."""
    manifest_path = os.path.join(stage_dir(pipeline, stage), "manifest.json")
    manifest = {}
    if os.path.exists(manifest_path):
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
    manifest["pipeline"] = {
        "status": "complete",
        "fingerprint": stage.fingerprint,
        "stage": stage.name,
        "kind": stage.kind,
        "recipe": stage.recipe,
        "command": cmd,
        "wall_time_s": wall,
        "depends_on": {dep: pipeline.stages[dep].fingerprint for dep in stage.deps},
    }
    write_atomic(manifest_path, json.dumps(manifest, indent=2, default=str) + "\n")
    return manifest


# The run directories this process holds: a pipeline keeps its lock until it exits (the kernel drops it then, also
# on kill -9), so the lock covers every stage, report and record it writes.
_claimed: dict[str, locks.DirectoryLock] = {}


def claim_run_dir(pipeline: Pipeline) -> None:
    """A run directory belongs to one pipeline, and to one run of it at a time.

    Another pipeline's directory is refused (reusing it would mix two runs' records); a second run of the same
    pipeline on it stops at once, naming the first, rather than paying for the same stages again.
    """
    if pipeline.run_dir not in _claimed:
        _claimed[pipeline.run_dir] = locks.acquire(pipeline.run_dir)
    marker = os.path.join(pipeline.run_dir, "pipeline.json")
    if os.path.exists(marker):
        with open(marker, encoding="utf-8") as f:
            owner = json.load(f)
        if owner.get("name") != pipeline.name:
            raise UserError(
                f"run_dir '{pipeline.run_dir}' belongs to pipeline '{owner.get('name')}' ({owner.get('recipe')}); "
                f"choose another run_dir or delete that directory"
            )
    else:
        write_atomic(marker, json.dumps({"name": pipeline.name, "recipe": pipeline.path}, indent=2) + "\n")
