"""Activations per GPU: what the decoder layers save for backward, and the largest working set of the step."""

from __future__ import annotations

import math

from .launcher import Launcher
from .model_shape import LINEAR_NAMES, ModelShape
from .plan import LineItem
from .run_shape import RunShape

LOGPROB_TILE = (4096, 32768)  # TRL 1.16 fused LM head: TOKEN_CHUNK_SIZE x _CHUNKED_LOGPROB_CHUNK_SIZE


def layer_activation_bytes(run: RunShape, model: ModelShape) -> int:
    """Bytes one decoder layer saves for backward, per token (see the package docstring)."""
    a, h, i = run.compute_bytes, model.hidden_size, model.intermediate_size
    q = model.num_attention_heads * model.head_dim
    kv = model.num_key_value_heads * model.head_dim
    norms = 2 * (4 * h + 2 * a * h + 4)
    attention = 2 * a * q + 2 * a * kv + 4 * model.num_attention_heads
    if run.attn_implementation == "eager":  # k, v repeated to every head, fp32 softmax and its 16-bit copy
        attention += 2 * a * (q - kv) + model.num_attention_heads * run.max_length * (4 + a)
    mlp = 4 * a * i
    lora = 0
    if run.use_peft:
        targets = set(LINEAR_NAMES) if set(run.lora_targets) & {"all-linear", "all_linear"} else set(run.lora_targets)
        for name, (fan_in, _) in model.linears().items():
            if name in targets:
                lora += a * run.lora_r + ((a + 1) * fan_in if run.lora_dropout > 0 else 0)
    return norms + attention + mlp + lora


def activation_items(
    run: RunShape, model: ModelShape, launcher: Launcher, reference: ModelShape
) -> tuple[list[LineItem], int]:
    """The saved activations and the step's working sets (only the largest counted), and the bytes materialised
    logits would add where the fused head avoids them (0 where they are materialised and already counted)."""
    per_layer = layer_activation_bytes(run, model)
    items = _saved_activation_items(run, model, per_layer)
    working = _working_sets(run, model, launcher, reference, per_layer)
    full_logits = run.tokens * model.vocab_size * (run.compute_bytes + 4)
    if run.materialised_logits:
        working["logits (materialised)"] = (
            full_logits + 4 * run.tokens * model.hidden_size,
            f"label smoothing: {run.sequences} x {run.max_length} tokens x {model.vocab_size} x "
            f"({run.compute_bytes} + 4 fp32) B",
        )
    peak = max(working, key=lambda k: working[k][0])
    for name, (size, how) in working.items():
        items.append(LineItem(name, size, how, name == peak))
    if run.materialised_logits:
        return items, 0
    with_reference = run.stage == "dpo" and run.ref_mode in ("model", "adapter")
    return items, full_logits * (2 if with_reference else 1)


def _saved_activation_items(run: RunShape, model: ModelShape, per_layer: int) -> list[LineItem]:
    """What the layers keep for backward (inputs only where checkpointed), and the final norm's."""
    a, h, n = run.compute_bytes, model.hidden_size, run.tokens
    layers = model.num_hidden_layers
    shape = f"{run.sequences} x {run.max_length} tokens"
    items = []
    if run.checkpointing:
        kept = math.ceil(layers / run.checkpoint_every)
        full = layers - kept
        inputs = 0 if run.checkpoint_offload else kept * n * h * a
        how = f"checkpointing: {kept} layer inputs x {shape} x {h} x {a} B" + (
            " (offloaded to host memory)" if run.checkpoint_offload else ""
        )
        if full:
            how += f" + {full} layers kept whole x {per_layer:,} B/token"
        items.append(LineItem("activations (saved)", inputs + full * n * per_layer, how))
    else:
        items.append(
            LineItem(
                "activations (saved)",
                layers * n * per_layer,
                f"no checkpointing: {layers} layers x {shape} x {per_layer:,} B/token",
            )
        )
    items.append(LineItem("final norm and head input", n * (4 * h + 2 * a * h), f"{shape} x (4 + 2 x {a}) B x {h}"))
    return items


def _working_sets(
    run: RunShape, model: ModelShape, launcher: Launcher, reference: ModelShape, per_layer: int
) -> dict[str, tuple[int, str]]:
    """The transient sets of the step that do not coincide, name -> (bytes, how): one layer's backward, the fused
    loss head and, in DPO, the reference's forward."""
    a, h, n = run.compute_bytes, model.hidden_size, run.tokens
    trainable_head = not run.use_peft or bool(set(run.lora_modules_to_save) & {"lm_head", "embed_tokens"})
    zero3 = launcher.kind == "deepspeed" and launcher.zero_stage == 3
    layer_grads = 0 if run.use_peft or launcher.kind != "deepspeed" else a * model.layer_params
    working = {
        "backward of one layer": (
            (n * per_layer if run.checkpointing else 0)
            + n * (2 * a * model.intermediate_size + 2 * a * h)
            + layer_grads,
            ("recomputed layer + " if run.checkpointing else "")
            + "2 MLP-wide + 2 hidden-wide gradients"
            + (" + its 16-bit weight gradients" if layer_grads else ""),
        ),
        "loss head (fused, no logits)": (
            a * min(n, LOGPROB_TILE[0]) * min(model.vocab_size, LOGPROB_TILE[1])
            + 4 * n * h
            + (4 * model.embedding_params if trainable_head else 0)
            + (a * model.embedding_params if zero3 else 0),
            f"{LOGPROB_TILE[0]} x {LOGPROB_TILE[1]} tile + fp32 gradient of hidden"
            + (" and head" if trainable_head else "")
            + (" + gathered head" if zero3 else ""),
        ),
    }
    if run.stage == "dpo" and run.ref_mode in ("model", "adapter"):
        working["reference forward"] = (
            n * (3 * a * reference.intermediate_size + 2 * a * reference.hidden_size)
            + a * min(n, LOGPROB_TILE[0]) * min(reference.vocab_size, LOGPROB_TILE[1])
            + (a * reference.layer_params if zero3 else 0),
            "no grad: one layer's MLP tensors + a head tile" + (" + the gathered layer" if zero3 else ""),
        )
    return working
