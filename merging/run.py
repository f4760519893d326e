"""A merge from its recipe: open and check the inputs, plan every tensor, then either print the plan (dry run) or
stream the tensors through the method into sharded safetensors, and write the config, tokenizer, generation config,
card and manifest beside them."""

from __future__ import annotations

import glob
import os
import resource
import shutil
import tempfile
import time
from typing import Callable

from distill_core.recipe import Recipe

from .config import MergeSpec
from .inputs import ModelInput, check_compatible, check_tokenizers, resolve_models
from .output import write_companions
from .plan import Job, output_layers, plan_jobs

OUT_DTYPES = ("float32", "float16", "bfloat16")


def run_merge(recipe: Recipe, merge_adapter: Callable[[str, str], str] | None = None) -> str:
    spec: MergeSpec = recipe.parsed["merge"]
    out_dir = os.path.abspath(os.path.expanduser(recipe.parsed["args"].output_dir))
    scratch = tempfile.mkdtemp(prefix=".merge-inputs-", dir=_existing_parent(out_dir))
    try:
        models = resolve_models(spec.models, scratch, merge_adapter)
        check_tokenizers(list(models.values()), recipe.parsed["args"].tokenizer_source)
        check_compatible(list(models.values()))
        jobs = plan_jobs(spec, models)
        if recipe.parsed["args"].dry_run:
            for job in jobs:
                print(job.describe(spec.method))
            return f"dry run: {len(jobs)} tensors planned with {spec.method}; nothing written"
        started = time.monotonic()
        stats = stream_merge(spec, models, jobs, out_dir, output_dtype(recipe, models[_reference(spec)]), recipe)
        stats["seconds"] = round(time.monotonic() - started, 3)
        write_companions(recipe, spec, models, out_dir, stats, len(output_layers(spec, models[_reference(spec)])))
        return f"merged {len(spec.models)} models with {spec.method} into {out_dir}"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _reference(spec: MergeSpec) -> str:
    return spec.base or spec.models[0]


def _existing_parent(path: str) -> str:
    while not os.path.isdir(path):
        path = os.path.dirname(path)
    return path


def output_dtype(recipe: Recipe, reference: ModelInput) -> str:
    chosen = recipe.parsed["args"].out_dtype or recipe.parsed["args"].dtype
    if chosen:
        return chosen
    declared = reference.config.get("dtype") or reference.config.get("torch_dtype")
    return declared if declared in OUT_DTYPES else "float32"


def merge_tensor(spec: MergeSpec, job: Job, read: Callable[[str, str], "torch.Tensor"], seed: int):  # noqa: F821
    """One output tensor in float32, from the inputs ``read(model, tensor)`` returns."""
    from . import methods

    tensors = [read(model, name).float() for model, name in job.sources]
    base = read(*job.base).float() if job.base else None
    settings, per_model = job.settings, job.per_model
    if spec.method == "linear":
        return methods.linear(tensors, per_model["weight"], settings["normalize"])
    if spec.method == "slerp":
        return methods.slerp(settings["t"], base, tensors[0])
    if spec.method == "model_stock":
        return methods.model_stock(base, tensors, settings["filter_wise"])
    return methods.delta_merge(
        methods.DELTA_RULES[spec.method],
        base,
        tensors,
        per_model["weight"],
        per_model.get("density", [1.0] * len(tensors)),
        normalize=settings["normalize"],
        lam=settings["lambda"],
        rescale=settings.get("rescale", True),
        seed=seed,
        name=job.name,
    )


def stream_merge(
    spec: MergeSpec, models: dict[str, ModelInput], jobs: list[Job], out_dir: str, dtype: str, recipe: Recipe
) -> dict:
    """Each output tensor computed from its inputs read one at a time, and appended to its shard at once."""
    import torch

    from .shards import CODES, DTYPES, ShardWriter, TensorInfo, read_tensor

    target = getattr(torch, dtype)
    reference = models[_reference(spec)]
    infos = []
    for job in jobs:
        template = reference.tensors[(job.base or job.sources[0])[1]]
        keep = DTYPES[template.dtype] if not DTYPES[template.dtype].is_floating_point else target
        infos.append(TensorInfo(job.name, CODES[keep], template.shape))
    os.makedirs(out_dir, exist_ok=True)
    for stale in glob.glob(os.path.join(out_dir, "model*.safetensors*")):
        os.remove(stale)
    before = peak_rss_mib()
    writer = ShardWriter(out_dir, infos, int(recipe.parsed["args"].max_shard_size_mb * 1e6))
    for job, info in zip(jobs, infos):
        merged = merge_tensor(spec, job, lambda m, n: read_tensor(models[m].tensors[n]), recipe.parsed["args"].seed)
        writer.write(job.name, merged.to(DTYPES[info.dtype]))
    writer.close()
    return {
        "peak_rss_mib": peak_rss_mib(),
        "rss_before_first_tensor_mib": before,
        "largest_tensor_mib": round(max(i.nbytes for i in reference.tensors.values()) / 2**20, 2),
        "tensors": len(infos),
        "shards": len(writer.files),
        "dtype": dtype,
    }


def peak_rss_mib() -> float:
    """This process's peak resident memory: VmHWM, which (unlike ru_maxrss) does not inherit the peak of the process
    that forked it."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def merge_in_memory(spec: MergeSpec, models: dict[str, ModelInput], jobs: list[Job], dtype: str, seed: int) -> dict:
    """The same merge with every input loaded whole (safetensors' own loader): the streamed merge's reference."""
    import torch
    from safetensors.torch import load_file

    state = {}
    for name, model in models.items():
        state[name] = {}
        for path in sorted({info.path for info in model.tensors.values()}):
            state[name].update(load_file(path))
    out = {}
    for job in jobs:
        merged = merge_tensor(spec, job, lambda m, n: state[m][n], seed)
        template = state[_reference(spec)][(job.base or job.sources[0])[1]]
        out[job.name] = merged.to(getattr(torch, dtype) if template.is_floating_point() else template.dtype)
    return out
