"""The per-GPU plan of one run: model states, the DPO reference, activations and a flat margin, with advice."""

from __future__ import annotations

from dataclasses import replace

from .activations import activation_items
from .advice import advice_lines, candidate_changes
from .launcher import Launcher
from .model_shape import ModelShape
from .model_states import model_state_items, reference_items
from .plan import GB, LineItem, MemoryPlan
from .run_shape import RunShape

CONTEXT_MARGIN_GB = 2.5


def plan_memory(
    run: RunShape,
    model: ModelShape,
    launcher: Launcher,
    *,
    nodes: int,
    gpus_per_node: int,
    gpu_memory_gb: float,
    recipe: str = "recipe",
    reference: ModelShape | None = None,
    advise: bool = True,
) -> MemoryPlan:
    """The per-GPU plan. ``reference`` is the DPO reference's shape when it differs from the policy's."""
    gpus = nodes * gpus_per_node
    items, notes = model_state_items(run, model, launcher, nodes, gpus_per_node)
    items += reference_items(run, reference or model, launcher, gpus)
    activations, logits_bytes = activation_items(run, model, launcher, reference or model)
    items += activations
    items.append(
        LineItem(
            "CUDA context and fragmentation",
            int(CONTEXT_MARGIN_GB * GB),
            "flat margin: CUDA context, NCCL buffers, allocator fragmentation",
        )
    )
    plan = MemoryPlan(
        recipe,
        run,
        model,
        launcher,
        nodes,
        gpus_per_node,
        gpu_memory_gb,
        items,
        notes,
        materialised_logits_bytes=logits_bytes,
    )
    if advise:
        other = plan_memory(
            replace(run, checkpointing=not run.checkpointing, checkpoint_every=1),
            model,
            launcher,
            nodes=nodes,
            gpus_per_node=gpus_per_node,
            gpu_memory_gb=gpu_memory_gb,
            recipe=recipe,
            reference=reference,
            advise=False,
        )
        saved = other.item("activations (saved)")
        plan.notes.append(
            f"activation checkpointing {'off' if run.checkpointing else 'on'} instead: saved activations "
            f"{saved.gb:.2f} GB, total {other.total_gb:.1f} GB"
        )
        if plan.verdict != "fits":
            plan.advice = _advice(plan, reference)
    return plan


def _advice(plan: MemoryPlan, reference: ModelShape | None) -> list[str]:
    """Single changes that make the plan fit, checked by planning each; else the one that helps most."""
    tried = []
    for text, cand_run, cand_launcher, nodes in candidate_changes(plan):
        cand = plan_memory(
            cand_run,
            plan.model,
            cand_launcher,
            nodes=nodes,
            gpus_per_node=plan.gpus_per_node,
            gpu_memory_gb=plan.gpu_memory_gb,
            recipe=plan.recipe,
            reference=reference,
            advise=False,
        )
        tried.append((cand.total_bytes, text, cand))
    return advice_lines(tried)
