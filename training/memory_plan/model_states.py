"""Model states per GPU: parameters, gradients, optimizer states and frozen weights, and the DPO reference's copy."""

from __future__ import annotations

from distill_core.errors import RecipeError

from .deepspeed_estimators import zero2_model_states, zero3_model_states
from .launcher import Launcher
from .model_shape import LINEAR_NAMES, ModelShape
from .plan import GB, LineItem, short_count
from .run_shape import RunShape

OPTIMIZER_STATE_BYTES = {  # per trainable parameter under DDP; None: two moments in the weights' dtype (torch AdamW)
    "adamw_torch": None,
    "adamw_torch_fused": None,
    "adamw_torch_xla": None,
    "adamw_apex_fused": 8,
    "adamw_bnb_8bit": 2,
    "adamw_8bit": 2,
    "paged_adamw_8bit": 2,
    "paged_adamw_32bit": 8,
    "adamw_32bit": 8,
    "lion_8bit": 1,
    "lion_32bit": 4,
    "paged_lion_8bit": 1,
    "paged_lion_32bit": 4,
    "adafactor": 0,
    "sgd": 0,
}


def _trainable_params(run: RunShape, model: ModelShape) -> tuple[int, int, str]:
    """(trainable, frozen, how) parameter counts."""
    total = model.total_params
    if not run.use_peft:
        return total, 0, f"all {short_count(total)} parameters train"
    linears = model.linears()
    targets = set(run.lora_targets)
    if targets & {"all-linear", "all_linear"}:
        targets = set(LINEAR_NAMES)
    unknown = sorted(targets - set(LINEAR_NAMES) - {"lm_head", "embed_tokens"})
    if unknown:
        raise RecipeError(
            f"lora_target_modules: '{unknown[0]}' is not a linear layer of a Llama/Mistral-style model; "
            f"use names from {list(LINEAR_NAMES)} or all-linear"
        )
    per_layer = sum(run.lora_r * (linears[n][0] + linears[n][1]) for n in targets if n in linears)
    adapters = model.num_hidden_layers * per_layer
    head = model.hidden_size + model.vocab_size
    adapters += run.lora_r * head * len(targets & {"lm_head", "embed_tokens"})
    saved = len(set(run.lora_modules_to_save) & {"lm_head", "embed_tokens"}) * model.embedding_params
    how = f"LoRA r={run.lora_r} on {', '.join(sorted(targets))}: {short_count(adapters)} adapter parameters"
    if saved:
        how += f" + {short_count(saved)} in lora_modules_to_save"
    return adapters + saved, total, how


def _frozen_bytes(run: RunShape, model: ModelShape, weight_bytes: int) -> tuple[int, str]:
    """Bytes of the whole model's frozen (possibly quantized) weights."""
    params = model.total_params
    if run.quantization is None:
        return params * weight_bytes, f"{weight_bytes} B x {short_count(params)}"
    linear = model.num_hidden_layers * model.linear_params_per_layer
    rest = params - linear
    if run.quantization == "4bit":
        per = 0.5 + ((1 / 64 + 4 / (64 * 256)) if run.nested_quant else 4 / 64)
        how = (
            f"4-bit: {per:.3f} B x {short_count(linear)} linear weights (absmax per 64) + {weight_bytes} B x "
            f"{short_count(rest)}"
        )
    else:
        per = 1 + 4 / model.hidden_size
        how = f"8-bit: ~1 B x {short_count(linear)} linear weights + {weight_bytes} B x {short_count(rest)}"
    return int(linear * per + rest * weight_bytes), how


def model_state_items(
    run: RunShape, model: ModelShape, launcher: Launcher, nodes: int, gpus_per_node: int
) -> tuple[list[LineItem], list[str]]:
    """Parameters, gradients, optimizer states and frozen weights per GPU, and notes on what trains and where the
    model-state total comes from."""
    trainable, frozen, trainable_how = _trainable_params(run, model)
    notes = [f"trainable: {trainable_how}"]
    if launcher.kind == "deepspeed" and launcher.zero_stage == 3:
        items, more_notes = _zero3_items(run, model, launcher, nodes, gpus_per_node, trainable)
    elif launcher.kind == "deepspeed":
        items, more_notes = _zero_items(launcher, nodes, gpus_per_node, trainable)
    else:
        items, more_notes = _ddp_items(run, launcher, nodes * gpus_per_node, trainable)
    if frozen:
        items.append(_frozen_base_item(run, model, launcher, nodes * gpus_per_node))
    return items, notes + more_notes


def _zero3_items(
    run: RunShape, model: ModelShape, launcher: Launcher, nodes: int, gpus_per_node: int, trainable: int
) -> tuple[list[LineItem], list[str]]:
    """ZeRO-3: everything sharded, totals from DeepSpeed's estimator, plus the live parameters beyond its gather
    buffer."""
    gpus = nodes * gpus_per_node
    ll_name, ll_params = model.largest_layer
    a = run.compute_bytes
    opt, par = launcher.offload_optimizer, launcher.offload_param
    if opt or not par:
        cpu, gpu, gather = zero3_model_states(trainable, ll_params, gpus_per_node, nodes, opt, par, launcher.zero_init)
        source = "DeepSpeed estimate_zero3_model_states_mem_needs"
    else:  # parameters offloaded, optimizer on the GPU: outside DeepSpeed's estimator
        cpu, gather = 0, 4 * ll_params
        gpu = gather + int(16 * trainable / gpus)
        source = "DeepSpeed's per-parameter bytes (its estimator has no parameter-only offload)"
    params = 0 if par else int(2 * trainable / gpus)
    grads = 0 if opt else int(4 * trainable / gpus)
    items = [
        LineItem(
            "parameters",
            params,
            "offloaded to CPU" if par else f"2 B (16-bit) x {short_count(trainable)} / {gpus} GPUs",
        ),
        LineItem(
            "gradients",
            grads,
            "offloaded to CPU" if opt else f"4 B (fp32 partition) x {short_count(trainable)} / {gpus}",
        ),
        LineItem(
            "optimizer states",
            gpu - gather - params - grads,
            "offloaded to CPU" if opt else f"12 B (fp32 master + Adam m, v) x {short_count(trainable)} / {gpus}",
        ),
        LineItem("ZeRO-3 gather buffer", gather, f"4 B x largest layer ({ll_name}, {short_count(ll_params)})"),
    ]
    note = f"model states {gpu / GB:.2f} GB per GPU = {source}" + (
        f"; CPU RAM per node for offloaded states: {cpu / GB:.1f} GB" if opt or par else ""
    )
    live = int(min(launcher.max_live_parameters, model.total_params) * a) - gather
    if live > 0:
        items.append(
            LineItem(
                "ZeRO-3 live parameters",
                live,
                f"stage3_max_live_parameters {launcher.max_live_parameters:.3g} x {a} B, beyond the gather buffer",
            )
        )
    return items, [note]


def _zero_items(
    launcher: Launcher, nodes: int, gpus_per_node: int, trainable: int
) -> tuple[list[LineItem], list[str]]:
    """ZeRO-0/1/2: 16-bit weights whole on every GPU; optimizer states sharded from stage 1, gradients from 2."""
    gpus = nodes * gpus_per_node
    stage, opt = launcher.zero_stage, launcher.offload_optimizer
    shards = gpus if stage >= 1 else 1  # optimizer states: sharded from stage 1 on
    if stage == 2:
        cpu, gpu = zero2_model_states(trainable, gpus_per_node, nodes, opt)
        source = "DeepSpeed estimate_zero2_model_states_mem_needs"
        grads = 0 if opt else int(6 * trainable / gpus)
        grads_how = "offloaded to CPU" if opt else f"(2 B 16-bit + 4 B fp32) x {short_count(trainable)} / {gpus}"
    else:  # stage 0/1: gradients whole on every GPU
        grads = 2 * trainable + (0 if opt else int(4 * trainable / shards))
        gpu = 2 * trainable + grads + (0 if opt else int(12 * trainable / shards))
        cpu, source = 0, f"DeepSpeed's per-parameter bytes for ZeRO-{stage} (no estimator of its own)"
        grads_how = f"2 B x {short_count(trainable)}" + (
            ", fp32 offloaded" if opt else f" + 4 B x {short_count(trainable)} / {shards}"
        )
    items = [
        LineItem("parameters", 2 * trainable, f"2 B (16-bit) x {short_count(trainable)}, whole on every GPU"),
        LineItem("gradients", grads, grads_how),
        LineItem(
            "optimizer states",
            gpu - 2 * trainable - grads,
            "offloaded to CPU" if opt else f"12 B (fp32 master + Adam m, v) x {short_count(trainable)} / {shards}",
        ),
    ]
    note = f"model states {gpu / GB:.2f} GB per GPU = {source}" + (
        f"; CPU RAM per node for offloaded states: {cpu / GB:.1f} GB" if opt else ""
    )
    return items, [note]


def _ddp_items(run: RunShape, launcher: Launcher, gpus: int, trainable: int) -> tuple[list[LineItem], list[str]]:
    """DDP (or one process): every GPU holds weights, gradients and optimizer states whole, in the load dtype."""
    w = 4 if run.use_peft else run.load_bytes  # PEFT keeps adapters in fp32 (autocast_adapter_dtype)
    state = OPTIMIZER_STATE_BYTES.get(run.optim, 8)
    state = 2 * w if state is None else state
    items = [
        LineItem("parameters", trainable * w, f"{w} B x {short_count(trainable)}, a full copy on every GPU"),
        LineItem("gradients", trainable * w, f"{w} B x {short_count(trainable)}"),
        LineItem("optimizer states", trainable * state, f"{state} B ({run.optim}) x {short_count(trainable)}"),
    ]
    if launcher.kind == "ddp" and gpus > 1:
        items.append(
            LineItem(
                "DDP gradient buckets",
                trainable * w,
                "a second gradient copy for all-reduce (gradient_as_bucket_view off)",
            )
        )
    notes = []
    if run.optim not in OPTIMIZER_STATE_BYTES:
        notes.append(f"optimizer {run.optim}: counted as two moments of 4 B per parameter")
    return items, notes


def _frozen_base_item(run: RunShape, model: ModelShape, launcher: Launcher, gpus: int) -> LineItem:
    """The frozen base of LoRA: sharded (or offloaded) under ZeRO-3, whole on every GPU otherwise."""
    if launcher.kind == "deepspeed" and launcher.zero_stage == 3:
        fb, how = _frozen_bytes(run, model, run.compute_bytes)
        par = launcher.offload_param
        return LineItem(
            "frozen base weights",
            0 if par else fb // gpus,
            "offloaded to CPU" if par else f"{how}, / {gpus} GPUs",
        )
    fb, how = _frozen_bytes(run, model, run.compute_bytes if launcher.kind == "deepspeed" else run.load_bytes)
    return LineItem("frozen base weights", fb, f"{how}, whole on every GPU")


def reference_items(run: RunShape, reference: ModelShape, launcher: Launcher, gpus: int) -> list[LineItem]:
    """The DPO reference's frozen copy per GPU; nothing held while training for ref_mode precomputed or adapter."""
    if run.stage != "dpo":
        return []
    if run.ref_mode != "model":
        why = {
            "precomputed": "log-probs precomputed before training; no reference held while training",
            "adapter": "the policy with its adapter disabled; no second copy",
        }[run.ref_mode]
        return [LineItem("reference model", 0, f"ref_mode {run.ref_mode}: {why}")]
    zero3 = launcher.kind == "deepspeed" and launcher.zero_stage == 3
    weight = run.compute_bytes if launcher.kind == "deepspeed" else run.load_bytes
    full, how = _frozen_bytes(run, reference, weight)
    if zero3 and launcher.offload_param:
        return [LineItem("reference model", 0, "frozen copy, parameters offloaded to CPU")]
    if zero3:
        return [LineItem("reference model", full // gpus, f"frozen copy: {how} / {gpus} GPUs (ZeRO-3 shards it)")]
    return [LineItem("reference model", full, f"frozen copy: {how}, whole on every GPU")]
