"""A pipeline recipe read into stages: their kinds, launches, the order they run in and their fingerprints."""

from __future__ import annotations

import graphlib
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import RecipeError
from ..records import file_sha256
from ..structs import build_strict, read_utf8, read_yaml_mapping

KINDS = {  # kind -> (script, trains a model)
    "self_instruct": ("run_self_instruct.py", False),
    "dialogues": ("run_dialogues.py", False),
    "decontaminate": ("run_decontaminate.py", False),
    "completions": ("run_completions.py", False),
    "judge": ("run_judge.py", False),
    "sft": ("run_sft.py", True),
    "dpo": ("run_dpo.py", True),
    "eval": ("run_eval.py", False),
    "merge": ("run_merge.py", False),
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
