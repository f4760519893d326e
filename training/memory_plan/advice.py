"""What to change when a plan does not fit: the single changes worth planning, and how the planned ones are told."""

from __future__ import annotations

from dataclasses import replace

from .launcher import Launcher
from .plan import GB, MemoryPlan
from .run_shape import RunShape

# (what to tell the user, the run and launcher it gives, the number of nodes)
Change = tuple[str, RunShape, Launcher, int]


def candidate_changes(plan: MemoryPlan) -> list[Change]:
    """Every single change to the run or the launch that lowers memory, in the order they are suggested."""
    run, launcher = plan.run, plan.launcher
    candidates: list[Change] = []
    if not run.checkpointing or run.checkpoint_every > 1:
        text = (
            "checkpoint every layer (activation_checkpointing_kwargs every_n_layers: 1)"
            if run.checkpointing
            else "enable activation checkpointing (--activation_checkpointing true)"
        )
        candidates.append((text, replace(run, checkpointing=True, checkpoint_every=1), launcher, plan.nodes))
    candidates += _smaller_micro_batches(plan)
    if run.stage == "dpo" and run.ref_mode == "model":
        candidates.append(
            (
                "precompute the reference (--ref_mode precomputed)",
                replace(run, ref_mode="precomputed"),
                launcher,
                plan.nodes,
            )
        )
    candidates += _launcher_changes(plan)
    return candidates


def _smaller_micro_batches(plan: MemoryPlan) -> list[Change]:
    """Each smaller micro-batch that divides the current one, with the accumulation that keeps the global batch."""
    run = plan.run
    batch = run.per_device_train_batch_size
    changes = []
    for smaller in (d for d in range(batch - 1, 0, -1) if batch % d == 0):
        accum = run.gradient_accumulation_steps * batch // smaller
        changes.append(
            (
                f"lower per_device_train_batch_size to {smaller} and raise gradient_accumulation_steps to "
                f"{accum} (same global batch): --per_device_train_batch_size {smaller} "
                f"--gradient_accumulation_steps {accum}",
                replace(run, per_device_train_batch_size=smaller, gradient_accumulation_steps=accum),
                plan.launcher,
                plan.nodes,
            )
        )
    return changes


def _launcher_changes(plan: MemoryPlan) -> list[Change]:
    """Sharding with ZeRO-3, offloading to CPU RAM, more nodes."""
    run, launcher = plan.run, plan.launcher
    changes: list[Change] = []
    sharding = run.quantization is None  # a quantized base is not sharded by ZeRO-3 (training refuses it)
    if sharding and not (launcher.kind == "deepspeed" and launcher.zero_stage == 3):
        changes.append(
            (
                "shard with ZeRO-3 (--accelerate_config recipes/accelerate/zero3.yaml)",
                run,
                Launcher("recipes/accelerate/zero3.yaml", "deepspeed", 3),
                plan.nodes,
            )
        )
    if sharding and not (launcher.offload_optimizer and launcher.offload_param):
        changes.append(
            (
                "offload optimizer and parameters to CPU RAM, slower (--accelerate_config "
                "recipes/accelerate/zero3_offload.yaml)",
                run,
                Launcher("recipes/accelerate/zero3_offload.yaml", "deepspeed", 3, True, True),
                plan.nodes,
            )
        )
    if launcher.kind == "deepspeed":
        for nodes in (2 * plan.nodes, 4 * plan.nodes, 8 * plan.nodes):
            changes.append(
                (f"use more GPUs (--nodes {nodes}: {nodes * plan.gpus_per_node} GPUs)", run, launcher, nodes)
            )
    return changes


def advice_lines(tried: list[tuple[int, str, MemoryPlan]]) -> list[str]:
    """Up to three changes whose plans fit (fitting before tight), one of each kind of batch and GPU-count change;
    when none fits, the one that needs least memory. ``tried`` holds (total bytes, text, plan) per change."""
    fitting = [(text, cand) for _, text, cand in tried if cand.verdict == "fits"]
    fitting += [(text, cand) for _, text, cand in tried if cand.verdict == "tight"]
    seen_batch = False
    advice = []
    for text, cand in fitting:  # the largest micro-batch that fits is enough of the batch suggestions
        if text.startswith("lower per_device_train_batch_size"):
            if seen_batch:
                continue
            seen_batch = True
        if text.startswith("use more GPUs") and any(t.startswith("use more GPUs") for t in advice):
            continue
        advice.append(f"{text} -> {cand.total_gb:.1f} GB" + (" (tight)" if cand.verdict == "tight" else ""))
    if advice:
        return advice[:3]
    if not tried:
        return ["use GPUs with more memory"]
    best_bytes, best_text, _ = min(tried, key=lambda t: t[0])
    return [
        f"no single change fits; the best, {best_text}, still needs {best_bytes / GB:.1f} GB: combine changes "
        f"or use GPUs with more memory"
    ]
