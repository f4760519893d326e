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

import graphlib
import hashlib
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import yaml

from . import locks
from .errors import RecipeError, UserError
from .processes import Stopped, free_port, run_process_group
from .records import file_sha256, write_atomic
from .structs import build_strict, read_utf8, read_yaml_mapping

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = {  # kind -> (script, trains a model)
    "self_instruct": ("run_self_instruct.py", False),
    "dialogues": ("run_dialogues.py", False),
    "completions": ("run_completions.py", False),
    "judge": ("run_judge.py", False),
    "sft": ("run_sft.py", True),
    "dpo": ("run_dpo.py", True),
}
_REF = re.compile(r"\{run_dir\}/([A-Za-z0-9_\-]+)")


@dataclass
class Launch:
    accelerate_config: str = "recipes/accelerate/zero3_cpu.yaml"
    num_processes: int = 2
    gpu_memory_gb: float | None = None  # one GPU's memory: the stage's memory plan is checked against it before launch
    nodes: int = 1  # nodes the processes span: gpus_per_node = num_processes / nodes


@dataclass
class StageSpec:
    recipe: str
    kind: str = ""
    overrides: dict = field(default_factory=dict)
    launch: dict | None = None


@dataclass
class Stage:
    name: str
    kind: str
    recipe: str
    overrides: dict
    launch: Launch | None
    deps: list[str]
    fingerprint: str = ""


@dataclass
class Pipeline:
    path: str
    name: str
    run_dir: str
    stages: dict[str, Stage]  # in execution order


def load_pipeline(path: str, run_dir: str | None = None) -> Pipeline:
    data = read_yaml_mapping(path, "pipeline")
    unknown = sorted(set(data) - {"run_dir", "stages", "name"})
    if unknown:
        raise RecipeError(f"{path}: unknown key '{unknown[0]}'; a pipeline has run_dir, name and stages")
    run_dir = run_dir or data.get("run_dir")
    if not run_dir or not isinstance(data.get("stages"), dict) or not data["stages"]:
        raise RecipeError(
            f"{path}: a pipeline needs 'run_dir' and a 'stages' mapping of name -> {{recipe, overrides}}"
        )
    stages: dict[str, Stage] = {}
    for name, raw in data["stages"].items():
        where = f"{path}: stages.{name}"
        spec = build_strict(StageSpec, raw, where)
        kind = spec.kind or name
        if kind not in KINDS:
            raise RecipeError(f"{where}: unknown stage kind '{kind}'; set kind: one of {sorted(KINDS)}")
        if not os.path.isfile(spec.recipe):
            raise RecipeError(f"{where}: stage recipe '{spec.recipe}' not found; fix the path")
        launch = build_strict(Launch, spec.launch, f"{where}.launch") if spec.launch is not None else None
        if KINDS[kind][1] and launch is None:
            launch = Launch()
        if launch is not None and not os.path.isfile(launch.accelerate_config):
            raise RecipeError(f"{where}.launch: accelerate config '{launch.accelerate_config}' not found")
        deps = sorted(set(_REF.findall(json.dumps(spec.overrides))))
        stages[name] = Stage(name, kind, spec.recipe, spec.overrides, launch, deps)
    for stage in stages.values():
        for dep in stage.deps:
            if dep not in stages:
                raise RecipeError(f"{path}: stages.{stage.name} reads {{run_dir}}/{dep} but there is no stage '{dep}'")
    order = _dependency_order(stages, path)
    pipeline = Pipeline(
        path,
        str(data.get("name") or os.path.splitext(os.path.basename(path))[0]),
        run_dir,
        {n: stages[n] for n in order},
    )
    for stage in pipeline.stages.values():
        stage.fingerprint = _fingerprint(stage, pipeline)
    return pipeline


def _dependency_order(stages: dict[str, Stage], path: str) -> list[str]:
    """The stages in declaration order, each preceded by the stages it reads that have not run yet."""
    reads = {name: stage.deps for name, stage in stages.items()}
    try:
        order = list(graphlib.TopologicalSorter(reads).static_order())
    except graphlib.CycleError as exc:
        raise RecipeError(
            f"{path}: the stages form a cycle ({_describe_cycle(exc.args[1], list(stages))}); "
            f"remove one of these dependencies"
        ) from None
    # A stage runs with the first declared stage that needs it, itself or one that reads it directly or not.
    needed_by = {name: i for i, name in enumerate(stages)}
    for name in reversed(order):  # each stage before the stages it reads
        for dep in reads[name]:
            needed_by[dep] = min(needed_by[dep], needed_by[name])
    return sorted(order, key=needed_by.__getitem__)  # stable: within one group the dependency order stays


def _describe_cycle(cycle: list[str], declared: list[str]) -> str:
    """``a -> b -> a``: each stage reads the next, starting from the one declared first.

    graphlib lists a stage before the stages that read it, and repeats the first at the end.
    """
    reads = cycle[:0:-1]
    start = min(range(len(reads)), key=lambda i: declared.index(reads[i]))
    reads = reads[start:] + reads[:start]
    return " -> ".join([*reads, reads[0]])


def _fingerprint(stage: Stage, pipeline: Pipeline) -> str:
    recipe_text = read_utf8(stage.recipe)
    launch_text = ""
    if stage.launch is not None:
        launch_text = read_utf8(stage.launch.accelerate_config) + f"\n{stage.launch.num_processes}"
    overrides = resolve(stage.overrides, pipeline.run_dir)
    blob = json.dumps(
        {
            "kind": stage.kind,
            "recipe": recipe_text,
            "overrides": overrides,
            "launch": launch_text,
            "deps": {d: pipeline.stages[d].fingerprint for d in stage.deps},
            "input_files": _input_files({**(yaml.safe_load(recipe_text) or {}), **overrides}, pipeline.run_dir),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _input_files(values: Any, run_dir: str) -> dict[str, str]:
    """Content hashes of the local files a stage reads (seed tasks, prompt files), so editing one reruns it."""
    found: dict[str, str] = {}

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str) and not value.startswith(run_dir) and os.path.isfile(value):
            found[value] = file_sha256(value)

    walk(values)
    return found


def resolve(value: Any, run_dir: str) -> Any:
    if isinstance(value, str):
        return value.replace("{run_dir}", run_dir)
    if isinstance(value, list):
        return [resolve(v, run_dir) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, run_dir) for k, v in value.items()}
    return value


def stage_dir(pipeline: Pipeline, stage: Stage) -> str:
    return os.path.join(pipeline.run_dir, stage.name)


def command(pipeline: Pipeline, stage: Stage, python: str = sys.executable) -> list[str]:
    script, _ = KINDS[stage.kind]
    args = [os.path.join(ROOT, "scripts", script), stage.recipe, "--output_dir", stage_dir(pipeline, stage)]
    for key, value in resolve(stage.overrides, pipeline.run_dir).items():
        args += [
            f"--{key}",
            value if isinstance(value, str) else json.dumps(value),
        ]  # JSON is YAML: the loader reads it
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
    local = command(pipeline, stage)
    script_at = next(i for i, a in enumerate(local) if a.endswith(KINDS[stage.kind][0]))
    recipe_and_overrides = local[script_at + 1 :]
    return [
        "sbatch",
        f"--nodes={nodes}",
        "slurm/launch.sbatch",
        stage.kind,
        recipe_and_overrides[0],
        stage.launch.accelerate_config,
        *recipe_and_overrides[1:],
    ]


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
        with open(os.path.join(d, ".pipeline_started.json"), encoding="utf-8") as f:
            started = json.load(f)
        return "partial" if started.get("fingerprint") == stage.fingerprint else "stale"
    except (OSError, ValueError):
        return "new" if not os.path.exists(d) else "stale"


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


def select(pipeline: Pipeline, only: list[str] | None, start: str | None, until: str | None) -> list[Stage]:
    names = list(pipeline.stages)
    for given in [*(only or []), start, until]:
        if given is not None and given not in pipeline.stages:
            raise RecipeError(f"{pipeline.path}: no stage '{given}'; stages are {names}")
    if only:
        return [pipeline.stages[n] for n in names if n in only]
    lo = names.index(start) if start else 0
    hi = names.index(until) + 1 if until else len(names)
    return [pipeline.stages[n] for n in names[lo:hi]]


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
    write_atomic(os.path.join(d, ".pipeline_started.json"), json.dumps({"fingerprint": stage.fingerprint}) + "\n")
    cmd = command(pipeline, stage)
    log(f"[{stage.name}] {'resuming' if state == 'partial' else 'running'}: {' '.join(cmd)}")
    started = time.monotonic()
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(os.path.join(d, "stage.log"), "a", encoding="utf-8") as out:
        try:  # in its own process group: a SIGINT or SIGTERM sent to the pipeline alone is passed on, never orphaned
            returncode = run_process_group(cmd, stdout=out, env=env)
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
    manifest_path = os.path.join(d, "manifest.json")
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


def _tail(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [line.strip() for line in f if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors[-1] if errors else (lines[-1] if lines else "no output"))[:600]


def check_memory_plan(pipeline: Pipeline, stage: Stage, log, *, ignore: bool = False) -> None:
    """Refuse a training stage whose per-GPU memory plan (scripts/preflight.py) does not fit its launch's GPUs.

    Runs the script in a subprocess (it reads training's recipe schemas; this package does not import training).
    Needs ``launch.gpu_memory_gb``; without it the check is skipped with one line saying so.
    """
    import subprocess

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
    local = command(pipeline, stage)
    script_at = next(i for i, a in enumerate(local) if a.endswith(KINDS[stage.kind][0]))
    cmd = [
        sys.executable,
        os.path.join(ROOT, "scripts", "preflight.py"),
        *local[script_at + 1 :],
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
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        errors = [line[len("error: ") :] for line in proc.stderr.splitlines() if line.startswith("error: ")]
        reason = errors[-1] if errors else (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(
            f"stage '{stage.name}' refused by its memory plan: {reason}; fix the launch or recipe, or "
            f"rerun with --ignore-memory-plan to launch anyway"
        )
    verdict = next((line for line in proc.stdout.splitlines() if line.startswith("verdict:")), "verdict: unknown")
    log(f"[{stage.name}] memory plan {verdict}")
