"""The plan as the text preflight prints."""

from __future__ import annotations

from .plan import GB, TIGHT_FRACTION, MemoryPlan, short_count


def render(plan: MemoryPlan) -> str:
    run, model = plan.run, plan.model
    ckpt = (
        (
            "on"
            + (f" (every {run.checkpoint_every} layers)" if run.checkpoint_every > 1 else "")
            + (", inputs offloaded" if run.checkpoint_offload else "")
        )
        if run.checkpointing
        else "off"
    )
    head = "tied" if model.tie_word_embeddings else "untied"
    lines = [
        f"memory plan: {plan.recipe} ({run.stage}) on {plan.nodes} node(s) x {plan.gpus_per_node} GPUs of "
        f"{plan.gpu_memory_gb:g} GB; {plan.launcher.describe()}",
        f"model: {model.source}: {short_count(model.total_params)} parameters (hidden {model.hidden_size}, mlp "
        f"{model.intermediate_size}, {model.num_hidden_layers} layers, {model.num_attention_heads}/"
        f"{model.num_key_value_heads} heads, vocab {model.vocab_size}, {head})",
        f"micro-batch: {run.sequences} sequences x {run.max_length} tokens = {run.tokens:,} tokens"
        + (" (DPO: chosen + rejected)" if run.stage == "dpo" else "")
        + f"; {'fp32' if run.compute_bytes == 4 else '16-bit'} compute; activation checkpointing {ckpt}",
        "",
        f"  {'item':<34} {'GB/GPU':>8}  how",
    ]
    for item in plan.items:
        shown = f"{item.gb:.2f}" if item.counted else f"({item.gb:.2f})"
        lines.append(f"  {item.name:<34} {shown:>8}  {item.how}")
    share = plan.total_gb / plan.gpu_memory_gb if plan.gpu_memory_gb > 0 else float("inf")
    lines += [f"  {'total':<34} {plan.total_gb:8.2f}  of {plan.gpu_memory_gb:g} GB ({share:.0%})", ""]
    notes = list(plan.notes)
    if plan.materialised_logits_bytes:
        notes.append(
            f"logits are not materialised (TRL 1.16 fused LM head); 16-bit logits + fp32 upcast"
            f"{' of policy and reference' if run.stage == 'dpo' else ''}, as older TRL held them, would add "
            f"{plan.materialised_logits_bytes / GB:.2f} GB -> "
            f"{(plan.total_bytes + plan.materialised_logits_bytes) / GB:.1f} GB"
        )
    notes.append("GB = 2**30 bytes; (in parentheses): a working set smaller than the peak's, not added")
    lines += [f"note: {note}" for note in notes]
    lines.append(
        f"verdict: {plan.verdict} ({plan.total_gb:.1f} of {plan.gpu_memory_gb:g} GB; tight above {TIGHT_FRACTION:.0%})"
    )
    lines += [f"to change: {text}" for text in plan.advice]
    return "\n".join(lines)
