"""Per-GPU memory plan of a training recipe before launch: will it fit, and if not, what to change.

The plan reads the model's ``config.json`` only (no weights, no torch) and the launcher's accelerate and DeepSpeed
configs. It counts, per GPU, in GB of 2**30 bytes (the unit DeepSpeed's estimator prints and nvidia-smi's MiB
imply; an "80 GB" A100/H100 holds about 80 of them):

Model states (held the whole step)
    Under DeepSpeed ZeRO-2/3 their total is DeepSpeed's own estimate (``estimate_zero3_model_states_mem_needs`` and
    ``estimate_zero2_model_states_mem_needs`` of deepspeed 0.19.8, reproduced below without importing torch;
    tests/test_preflight.py checks that the numbers are equal): 18 bytes per trainable parameter split across the
    GPUs (16-bit weights, fp32 gradients, fp32 master weights, two fp32 Adam moments), ZeRO-3 adding 4 bytes x the
    largest layer for gathering, ZeRO-2 keeping the 16-bit weights whole on every GPU. ``offload_optimizer`` moves
    gradients and optimizer states to CPU RAM, ``offload_param`` the weights too. ZeRO-3 may also keep up to
    ``stage3_max_live_parameters`` gathered 16-bit weights resident; the excess over the estimator's allowance is
    its own line. Under DDP every GPU holds everything: weights and gradients in the load dtype, a second gradient
    copy in DDP's all-reduce buckets, optimizer moments (torch AdamW: two in the weights' dtype).
LoRA / QLoRA
    The base weights are frozen (16-bit, or 4-bit: 0.5 byte per linear-layer weight plus one fp32 absmax per
    64-weight block, 1/64 byte plus a second level with nested quantization; embeddings and head stay 16-bit).
    Only the adapters train: lora_r x (in + out) per targeted linear of every layer, fp32 (PEFT's default
    autocast_adapter_dtype), plus full copies of lora_modules_to_save.
DPO reference
    ref_mode model: a second copy of the weights, sharded like the policy under ZeRO-3 (TRL's prepare_deepspeed),
    whole on every GPU otherwise; no gradients or optimizer. precomputed and adapter: nothing during training.
Activations
    Saved for backward by one decoder layer, per token (transformers 5.24, Llama/Mistral layer, flash/sdpa
    attention): two RMSNorms (fp32 input, normalised input, output: 4h + 2 x 2h bytes, plus an fp32 rsqrt),
    attention (q after RoPE and the output at h, k and v at the key-value width, an fp32 log-sum-exp per head) and
    the gated MLP (gate, up, SiLU(gate), their product: 4 x intermediate), all in the compute dtype. For Mistral-7B
    in bf16 that is 200,840 bytes per token, exactly what saved-tensor hooks measure on a one-layer model of real
    width. LoRA adds, per targeted linear, its dropout copy and mask ((2 + 1) x in) and the r-wide intermediate.
    With activation checkpointing (``activation_checkpointing`` / ``gradient_checkpointing``, on by default in
    TRL) a checkpointed layer keeps only its 16-bit input; ``every_n_layers`` checkpoints every n-th layer and the
    others keep everything; ``offload`` moves the kept inputs to host memory.
    Tokens per micro-batch: per_device_train_batch_size x max_length (SFT, packed or padded to at most max_length);
    DPO concatenates chosen and rejected, so 2 x per_device_train_batch_size sequences of max_length.
Working sets of the peak (only the largest counts: they do not coincide)
    Backward of one checkpointed layer: its recomputed activations, two MLP-wide and two hidden-wide gradients,
    its 16-bit weight gradients before ZeRO's reduce-scatter. Loss head: TRL 1.16's fused LM head
    (trl/trainer/utils.py add_fused_lm_head) never materialises the batch x seq x vocab logits; it works in tiles of
    4096 tokens x 32768 vocabulary entries and accumulates fp32 gradients of the hidden states and the head.
    Reference forward (DPO): one layer's transient MLP tensors without grad, while the policy's saved activations
    are held.
Logits
    Not materialised under TRL 1.16 for SFT and DPO. Where they are (label smoothing in SFT), they are counted as
    batch x seq x vocab x (compute dtype + 4 bytes of fp32 upcast for the loss). The plan prints what materialised
    logits would add, for comparison with estimates made for older TRL.
Margin
    2.5 GB for the CUDA context, NCCL buffers and allocator fragmentation.

Verdict: fits when the total is at most 90% of the GPU's memory, tight up to 100%, does not fit above.

Compared with the usual estimates for the Zephyr recipes on 8 x 80 GB under ZeRO-3 (dSFT 40-45 GB, dDPO with a
frozen reference 33-38 GB), this plan gives about 37 and 30 GB: the difference is the logits, which those
estimates count (bf16 plus the fp32 upcast: 5.9 GB for dSFT; 2.9 GB each for the DPO policy and reference) and
TRL 1.16 no longer materialises. Adding them back lands inside both ranges (the plan prints that figure).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace

import yaml

from distill_core.errors import RecipeError

GB = 2**30
CONTEXT_MARGIN_GB = 2.5
TIGHT_FRACTION = 0.9
LOGPROB_TILE = (4096, 32768)  # TRL 1.16 fused LM head: TOKEN_CHUNK_SIZE x _CHUNKED_LOGPROB_CHUNK_SIZE
LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PEFT_DEFAULT_TARGETS = ("q_proj", "v_proj")  # peft's default for llama/mistral/qwen2 when lora_target_modules is unset
DEEPSPEED_MAX_LIVE_PARAMETERS = 1e9  # DeepSpeed's default for stage3_max_live_parameters
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


# ---------------------------------------------------------------------------------------------------------------------
# Inputs: the model's shapes, the launcher, the run


@dataclass(frozen=True)
class ModelShape:
    """What the plan needs from a Llama/Mistral-style config.json."""

    source: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each linear layer of one decoder layer."""
        h, i = self.hidden_size, self.intermediate_size
        q, kv = self.num_attention_heads * self.head_dim, self.num_key_value_heads * self.head_dim
        return {
            "q_proj": (h, q),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (q, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    @property
    def linear_params_per_layer(self) -> int:
        return sum(a * b for a, b in self.linears().values())

    @property
    def layer_params(self) -> int:
        return self.linear_params_per_layer + 2 * self.hidden_size  # two RMSNorm weights

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def total_params(self) -> int:
        heads = 1 if self.tie_word_embeddings else 2
        return self.num_hidden_layers * self.layer_params + heads * self.embedding_params + self.hidden_size

    @property
    def largest_layer(self) -> tuple[str, int]:
        """The module with the most parameters of its own, as DeepSpeed's model_to_params counts."""
        name, (a, b) = max(self.linears().items(), key=lambda kv: kv[1][0] * kv[1][1])
        return max([("embed_tokens", self.embedding_params), (name, a * b)], key=lambda t: t[1])


def read_model_shape(model: str, *, where: str, revision: str = "main") -> ModelShape:
    """Shapes from ``model``'s config.json: a directory, or a hub id already in the local Hugging Face cache."""
    path = os.path.join(os.path.expanduser(model), "config.json")
    if not os.path.isfile(path):
        path = _cached_config(model, revision) if not os.path.isdir(os.path.expanduser(model)) else None
        if path is None:
            raise RecipeError(
                f"{where}: model '{model}' is not a local directory and its config.json is neither in "
                f"the local Hugging Face cache nor downloadable (HF_HUB_OFFLINE, no network or no access); "
                f"pass --model_name_or_path DIR, a directory holding the model's config.json"
            )
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as exc:
        raise RecipeError(f"{path}: unreadable model config ({exc}); fix or replace the file") from None
    config = config.get("text_config", config) if isinstance(config.get("text_config"), dict) else config
    missing = [
        k
        for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
        if not isinstance(config.get(k), int)
    ]
    if missing:
        raise RecipeError(f"{path}: '{missing[0]}' is missing; the plan supports Llama/Mistral-style decoder configs")
    if config.get("num_local_experts") or config.get("num_experts"):
        raise RecipeError(f"{path}: mixture-of-experts models are not supported by the memory plan")
    heads = config["num_attention_heads"]
    return ModelShape(
        source=path,
        hidden_size=config["hidden_size"],
        intermediate_size=config["intermediate_size"],
        num_hidden_layers=config["num_hidden_layers"],
        num_attention_heads=heads,
        num_key_value_heads=config.get("num_key_value_heads") or heads,
        head_dim=config.get("head_dim") or config["hidden_size"] // heads,
        vocab_size=config["vocab_size"],
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
    )


def _cached_config(model: str, revision: str) -> str | None:
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "config.json", revision=revision)
    except Exception:  # a malformed repo id, an unreadable cache: same answer as not cached
        found = None
    if isinstance(found, str) and os.path.isfile(found):
        return found
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return None
    try:  # the config alone (a few kB), as the training run would fetch it first anyway
        from huggingface_hub import hf_hub_download

        return hf_hub_download(model, "config.json", revision=revision, etag_timeout=10)
    except Exception:  # no network, a gated or missing repo: same answer as not cached
        return None


@dataclass(frozen=True)
class Launcher:
    """How an accelerate config distributes a run: DeepSpeed ZeRO (stage, offload) or DDP."""

    config: str
    kind: str  # "deepspeed", "ddp" or "single"
    zero_stage: int = 0
    offload_optimizer: bool = False
    offload_param: bool = False
    zero_init: bool = True
    max_live_parameters: float = DEEPSPEED_MAX_LIVE_PARAMETERS
    deepspeed_config: str | None = None
    num_machines: int = 1
    num_processes: int = 1

    def describe(self) -> str:
        if self.kind != "deepspeed":
            return "DDP (every GPU holds a full copy)" if self.kind == "ddp" else "one process (no distribution)"
        offload = [
            name for name, on in (("optimizer", self.offload_optimizer), ("parameters", self.offload_param)) if on
        ]
        where = f" ({self.deepspeed_config})" if self.deepspeed_config else ""
        return f"DeepSpeed ZeRO-{self.zero_stage}{where}" + (
            f", offloading {' and '.join(offload)} to CPU" if offload else ""
        )


def read_launcher(path: str) -> Launcher:
    """Read an accelerate config and the DeepSpeed config file it points to (relative paths: from the current
    directory, as accelerate reads them)."""
    if not os.path.isfile(path):
        raise RecipeError(
            f"--accelerate_config: '{path}' not found; pass an accelerate config such as recipes/accelerate/zero3.yaml"
        )
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError:
        raise RecipeError(f"{path}: invalid YAML; fix the accelerate config") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: an accelerate config is a mapping of key: value pairs")
    kind = str(data.get("distributed_type", "NO")).upper()
    machines, processes = int(data.get("num_machines") or 1), int(data.get("num_processes") or 1)
    if kind in ("MULTI_GPU", "NO"):
        return Launcher(
            path, "ddp" if kind == "MULTI_GPU" else "single", num_machines=machines, num_processes=processes
        )
    if kind != "DEEPSPEED":
        raise RecipeError(
            f"{path}: distributed_type {kind} has no memory plan; use a DeepSpeed (recipes/accelerate/"
            f"zero3.yaml) or DDP (recipes/accelerate/ddp.yaml) config"
        )
    ds = data.get("deepspeed_config") or {}
    config_file = ds.get("deepspeed_config_file")
    if config_file:
        if not os.path.isfile(config_file):
            raise RecipeError(
                f"{path}: deepspeed_config.deepspeed_config_file '{config_file}' not found (relative to "
                f"{os.getcwd()}); run from the repository root or fix the path"
            )
        try:
            with open(config_file, encoding="utf-8") as f:
                zero = json.load(f).get("zero_optimization") or {}
        except (OSError, ValueError, AttributeError):
            raise RecipeError(f"{config_file}: not a DeepSpeed JSON config; fix the file") from None
        stage = zero.get("stage", 0)
        offload_opt = (zero.get("offload_optimizer") or {}).get("device", "none")
        offload_par = (zero.get("offload_param") or {}).get("device", "none")
        live = zero.get("stage3_max_live_parameters", DEEPSPEED_MAX_LIVE_PARAMETERS)
    else:  # the plugin's inline keys
        stage = ds.get("zero_stage", 0)
        offload_opt, offload_par = ds.get("offload_optimizer_device", "none"), ds.get("offload_param_device", "none")
        live = DEEPSPEED_MAX_LIVE_PARAMETERS
    if stage not in (0, 1, 2, 3):
        raise RecipeError(f"{config_file or path}: zero_optimization.stage must be 0-3, got {stage!r}")
    return Launcher(
        path,
        "deepspeed",
        stage,
        str(offload_opt).lower() not in ("none", ""),
        str(offload_par).lower() not in ("none", ""),
        bool(ds.get("zero3_init_flag", True)),
        float(live) if isinstance(live, (int, float)) else DEEPSPEED_MAX_LIVE_PARAMETERS,
        config_file,
        machines,
        processes,
    )


@dataclass(frozen=True)
class RunShape:
    """The recipe values that decide memory, resolved with TRL's defaults."""

    stage: str  # "sft" or "dpo"
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    max_length: int
    compute_bytes: int  # 2 for bf16/fp16, 4 for fp32
    load_bytes: int  # the weights' dtype when loaded (what DDP trains in)
    checkpointing: bool
    checkpoint_every: int = 1
    checkpoint_offload: bool = False
    attn_implementation: str = "flash_attention_2"
    optim: str = "adamw_torch"
    use_peft: bool = False
    lora_r: int = 16
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ()
    lora_modules_to_save: tuple[str, ...] = ()
    quantization: str | None = None  # "4bit", "8bit" or None
    nested_quant: bool = False
    ref_mode: str | None = None  # DPO: "model", "precomputed" or "adapter"
    materialised_logits: bool = False

    @property
    def sequences(self) -> int:
        return self.per_device_train_batch_size * (2 if self.stage == "dpo" else 1)

    @property
    def tokens(self) -> int:
        return self.sequences * self.max_length


def run_shape(recipe, stage: str, defaults: dict) -> RunShape:
    """Resolve a validated recipe into the values the plan reads; ``defaults`` maps a key to its schema default."""

    def value(key):
        return recipe.get(key, defaults.get(key))

    max_length = value("max_length")
    if not isinstance(max_length, int) or max_length <= 0:
        raise RecipeError(f"{recipe.path}: max_length is {max_length!r}; the memory plan needs a sequence length")
    precision = 4 if value("bf16") is False and not value("fp16") else 2
    dtype = value("dtype")
    load = {"bfloat16": 2, "float16": 2, "float32": 4}.get(dtype, precision)
    ckpt = value("activation_checkpointing")
    if ckpt is None:
        ckpt = value("gradient_checkpointing")
    kwargs = value("activation_checkpointing_kwargs") or value("gradient_checkpointing_kwargs") or {}
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    every = kwargs.get("every_n_layers", 1)
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise RecipeError(f"{recipe.path}: activation_checkpointing_kwargs.every_n_layers must be a whole number >= 1")
    targets = value("lora_target_modules")
    optim = value("optim")
    return RunShape(
        stage=stage,
        per_device_train_batch_size=value("per_device_train_batch_size"),
        gradient_accumulation_steps=value("gradient_accumulation_steps"),
        max_length=max_length,
        compute_bytes=precision,
        load_bytes=load,
        checkpointing=bool(ckpt if ckpt is not None else True),
        checkpoint_every=every,
        checkpoint_offload=bool(kwargs.get("offload", False)),
        attn_implementation=value("attn_implementation") or "sdpa",
        optim=optim if isinstance(optim, str) else "adamw_torch",
        use_peft=bool(value("use_peft")),
        lora_r=value("lora_r") or 16,
        lora_dropout=value("lora_dropout") or 0.0,
        lora_targets=tuple(targets) if targets else PEFT_DEFAULT_TARGETS,
        lora_modules_to_save=tuple(value("lora_modules_to_save") or ()),
        quantization="4bit" if value("load_in_4bit") else ("8bit" if value("load_in_8bit") else None),
        nested_quant=bool(value("use_bnb_nested_quant")),
        ref_mode=value("ref_mode") if stage == "dpo" else None,
        materialised_logits=stage == "sft" and bool(value("label_smoothing_factor")),
    )


# ---------------------------------------------------------------------------------------------------------------------
# DeepSpeed's estimators (deepspeed/runtime/zero/stage3.py and stage_1_and_2.py, 0.19.8), as integer bytes


def zero3_model_states(
    total_params: int,
    largest_layer_params: int,
    num_gpus_per_node: int = 1,
    num_nodes: int = 1,
    cpu_offload: bool = True,
    cpu_offload_params: bool = True,
    zero_init: bool = True,
    additional_buffer_factor: float = 1.5,
) -> tuple[int, int, int]:
    """(cpu bytes, gpu bytes, largest layer bytes): estimate_zero3_model_states_mem_needs, same arguments."""
    total_gpus = num_nodes * num_gpus_per_node
    gpus_factor = 1 / num_nodes
    largest_layer_memory = 4 * largest_layer_params
    if cpu_offload:
        if cpu_offload_params:
            gpu_mem = largest_layer_memory
            per_param = 18 * gpus_factor if zero_init else max(4 * num_gpus_per_node, 18 * gpus_factor)
        else:
            gpu_mem = largest_layer_memory + int(2 * total_params / total_gpus)
            per_param = 16 * gpus_factor if zero_init else max(4 * num_gpus_per_node, 16 * gpus_factor)
        cpu_mem = total_params * per_param * additional_buffer_factor
    else:
        gpu_mem = largest_layer_memory + int(18 * total_params / total_gpus)
        cpu_mem = (
            (largest_layer_params if zero_init else total_params) * 4 * num_gpus_per_node * additional_buffer_factor
        )
    return int(cpu_mem), int(gpu_mem), largest_layer_memory


def zero2_model_states(
    total_params: int,
    num_gpus_per_node: int = 1,
    num_nodes: int = 1,
    cpu_offload: bool = True,
    additional_buffer_factor: float = 1.5,
) -> tuple[int, int]:
    """(cpu bytes, gpu bytes): estimate_zero2_model_states_mem_needs, same arguments."""
    total_gpus = num_nodes * num_gpus_per_node
    if cpu_offload:
        gpu_mem = 2 * total_params
        cpu_mem = total_params * max(4 * total_gpus, 16) * additional_buffer_factor
    else:
        gpu_mem = 2 * total_params + int(18 * total_params / total_gpus)
        cpu_mem = total_params * 4 * num_gpus_per_node * additional_buffer_factor
    return int(cpu_mem), int(gpu_mem)


# ---------------------------------------------------------------------------------------------------------------------
# The plan


@dataclass(frozen=True)
class LineItem:
    name: str
    bytes: int
    how: str
    counted: bool = True  # False: a working set smaller than the one that sets the peak

    @property
    def gb(self) -> float:
        return self.bytes / GB


@dataclass
class MemoryPlan:
    recipe: str
    run: RunShape
    model: ModelShape
    launcher: Launcher
    nodes: int
    gpus_per_node: int
    gpu_memory_gb: float
    items: list[LineItem]
    notes: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    materialised_logits_bytes: int = 0  # what full logits would add where the fused head avoids them

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def total_bytes(self) -> int:
        return sum(item.bytes for item in self.items if item.counted)

    @property
    def total_gb(self) -> float:
        return self.total_bytes / GB

    @property
    def verdict(self) -> str:
        if self.total_gb <= TIGHT_FRACTION * self.gpu_memory_gb:
            return "fits"
        return "tight" if self.total_gb <= self.gpu_memory_gb else "does not fit"

    @property
    def fits(self) -> bool:
        return self.verdict != "does not fit"

    def item(self, name: str) -> LineItem | None:
        return next((i for i in self.items if i.name == name), None)

    def biggest(self) -> LineItem:
        return max((i for i in self.items if i.counted), key=lambda i: i.bytes)

    def summary(self) -> str:
        """One line: the total against the GPU, the biggest item, and what to change."""
        big = self.biggest()
        line = (
            f"{self.recipe}: the plan needs {self.total_gb:.1f} GB per GPU of {self.gpu_memory_gb:g} GB "
            f"(biggest: {big.name} {big.gb:.1f} GB)"
        )
        return f"{line}; {'; or '.join(self.advice)}" if self.advice else line


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
    items, notes = _model_state_items(run, model, launcher, nodes, gpus_per_node)
    items += _reference_items(run, reference or model, launcher, gpus)
    activation_items, logits_bytes = _activation_items(run, model, launcher, reference or model)
    items += activation_items
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


def _trainable_params(run: RunShape, model: ModelShape) -> tuple[int, int, str]:
    """(trainable, frozen, how) parameter counts."""
    total = model.total_params
    if not run.use_peft:
        return total, 0, f"all {_count(total)} parameters train"
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
    how = f"LoRA r={run.lora_r} on {', '.join(sorted(targets))}: {_count(adapters)} adapter parameters"
    if saved:
        how += f" + {_count(saved)} in lora_modules_to_save"
    return adapters + saved, total, how


def _frozen_bytes(run: RunShape, model: ModelShape, weight_bytes: int) -> tuple[int, str]:
    """Bytes of the whole model's frozen (possibly quantized) weights."""
    params = model.total_params
    if run.quantization is None:
        return params * weight_bytes, f"{weight_bytes} B x {_count(params)}"
    linear = model.num_hidden_layers * model.linear_params_per_layer
    rest = params - linear
    if run.quantization == "4bit":
        per = 0.5 + ((1 / 64 + 4 / (64 * 256)) if run.nested_quant else 4 / 64)
        how = (
            f"4-bit: {per:.3f} B x {_count(linear)} linear weights (absmax per 64) + {weight_bytes} B x {_count(rest)}"
        )
    else:
        per = 1 + 4 / model.hidden_size
        how = f"8-bit: ~1 B x {_count(linear)} linear weights + {weight_bytes} B x {_count(rest)}"
    return int(linear * per + rest * weight_bytes), how


def _model_state_items(
    run: RunShape, model: ModelShape, launcher: Launcher, nodes: int, gpus_per_node: int
) -> tuple[list[LineItem], list[str]]:
    gpus = nodes * gpus_per_node
    trainable, frozen, trainable_how = _trainable_params(run, model)
    ll_name, ll_params = model.largest_layer
    items: list[LineItem] = []
    notes = [f"trainable: {trainable_how}"]
    a = run.compute_bytes
    if launcher.kind == "deepspeed" and launcher.zero_stage == 3:
        opt, par = launcher.offload_optimizer, launcher.offload_param
        if opt or not par:
            cpu, gpu, gather = zero3_model_states(
                trainable, ll_params, gpus_per_node, nodes, opt, par, launcher.zero_init
            )
            source = "DeepSpeed estimate_zero3_model_states_mem_needs"
        else:  # parameters offloaded, optimizer on the GPU: outside DeepSpeed's estimator
            cpu, gather = 0, 4 * ll_params
            gpu = gather + int(16 * trainable / gpus)
            source = "DeepSpeed's per-parameter bytes (its estimator has no parameter-only offload)"
        params = 0 if par else int(2 * trainable / gpus)
        grads = 0 if opt else int(4 * trainable / gpus)
        items += [
            LineItem(
                "parameters",
                params,
                "offloaded to CPU" if par else f"2 B (16-bit) x {_count(trainable)} / {gpus} GPUs",
            ),
            LineItem(
                "gradients",
                grads,
                "offloaded to CPU" if opt else f"4 B (fp32 partition) x {_count(trainable)} / {gpus}",
            ),
            LineItem(
                "optimizer states",
                gpu - gather - params - grads,
                "offloaded to CPU" if opt else f"12 B (fp32 master + Adam m, v) x {_count(trainable)} / {gpus}",
            ),
            LineItem("ZeRO-3 gather buffer", gather, f"4 B x largest layer ({ll_name}, {_count(ll_params)})"),
        ]
        notes.append(
            f"model states {gpu / GB:.2f} GB per GPU = {source}"
            + (f"; CPU RAM per node for offloaded states: {cpu / GB:.1f} GB" if opt or par else "")
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
        if frozen:
            fb, how = _frozen_bytes(run, model, a)
            items.append(
                LineItem(
                    "frozen base weights",
                    0 if par else fb // gpus,
                    "offloaded to CPU" if par else f"{how}, / {gpus} GPUs",
                )
            )
    elif launcher.kind == "deepspeed":
        stage, opt = launcher.zero_stage, launcher.offload_optimizer
        shards = gpus if stage >= 1 else 1  # optimizer states: sharded from stage 1 on
        if stage == 2:
            cpu, gpu = zero2_model_states(trainable, gpus_per_node, nodes, opt)
            source = "DeepSpeed estimate_zero2_model_states_mem_needs"
            grads = 0 if opt else int(6 * trainable / gpus)
            grads_how = "offloaded to CPU" if opt else f"(2 B 16-bit + 4 B fp32) x {_count(trainable)} / {gpus}"
        else:  # stage 0/1: gradients whole on every GPU
            grads = 2 * trainable + (0 if opt else int(4 * trainable / shards))
            gpu = 2 * trainable + grads + (0 if opt else int(12 * trainable / shards))
            cpu, source = 0, f"DeepSpeed's per-parameter bytes for ZeRO-{stage} (no estimator of its own)"
            grads_how = f"2 B x {_count(trainable)}" + (
                ", fp32 offloaded" if opt else f" + 4 B x {_count(trainable)} / {shards}"
            )
        items += [
            LineItem("parameters", 2 * trainable, f"2 B (16-bit) x {_count(trainable)}, whole on every GPU"),
            LineItem("gradients", grads, grads_how),
            LineItem(
                "optimizer states",
                gpu - 2 * trainable - grads,
                "offloaded to CPU" if opt else f"12 B (fp32 master + Adam m, v) x {_count(trainable)} / {shards}",
            ),
        ]
        notes.append(
            f"model states {gpu / GB:.2f} GB per GPU = {source}"
            + (f"; CPU RAM per node for offloaded states: {cpu / GB:.1f} GB" if opt else "")
        )
        if frozen:
            fb, how = _frozen_bytes(run, model, a)
            items.append(LineItem("frozen base weights", fb, f"{how}, whole on every GPU"))
    else:
        w = 4 if run.use_peft else run.load_bytes  # PEFT keeps adapters in fp32 (autocast_adapter_dtype)
        state = OPTIMIZER_STATE_BYTES.get(run.optim, 8)
        state = 2 * w if state is None else state
        items += [
            LineItem("parameters", trainable * w, f"{w} B x {_count(trainable)}, a full copy on every GPU"),
            LineItem("gradients", trainable * w, f"{w} B x {_count(trainable)}"),
            LineItem("optimizer states", trainable * state, f"{state} B ({run.optim}) x {_count(trainable)}"),
        ]
        if launcher.kind == "ddp" and gpus > 1:
            items.append(
                LineItem(
                    "DDP gradient buckets",
                    trainable * w,
                    "a second gradient copy for all-reduce (gradient_as_bucket_view off)",
                )
            )
        if run.optim not in OPTIMIZER_STATE_BYTES:
            notes.append(f"optimizer {run.optim}: counted as two moments of 4 B per parameter")
        if frozen:
            fb, how = _frozen_bytes(run, model, run.load_bytes)
            items.append(LineItem("frozen base weights", fb, f"{how}, whole on every GPU"))
    return items, notes


def _reference_items(run: RunShape, reference: ModelShape, launcher: Launcher, gpus: int) -> list[LineItem]:
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


def layer_activation_bytes(run: RunShape, model: ModelShape) -> int:
    """Bytes one decoder layer saves for backward, per token (see the module docstring)."""
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


def _activation_items(
    run: RunShape, model: ModelShape, launcher: Launcher, reference: ModelShape
) -> tuple[list[LineItem], int]:
    a, h, n = run.compute_bytes, model.hidden_size, run.tokens
    layers = model.num_hidden_layers
    per_layer = layer_activation_bytes(run, model)
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
    full_logits = n * model.vocab_size * (a + 4)
    if run.materialised_logits:
        working["logits (materialised)"] = (
            full_logits + 4 * n * h,
            f"label smoothing: {shape} x {model.vocab_size} x ({a} + 4 fp32) B",
        )
    peak = max(working, key=lambda k: working[k][0])
    for name, (size, how) in working.items():
        items.append(LineItem(name, size, how, name == peak))
    if run.materialised_logits:
        return items, 0
    with_reference = run.stage == "dpo" and run.ref_mode in ("model", "adapter")
    return items, full_logits * (2 if with_reference else 1)


def _advice(plan: MemoryPlan, reference: ModelShape | None) -> list[str]:
    """Single changes that make the plan fit, checked by planning each; else the one that helps most."""
    run, launcher = plan.run, plan.launcher
    candidates: list[tuple[str, RunShape, Launcher, int]] = []
    if not run.checkpointing or run.checkpoint_every > 1:
        text = (
            "checkpoint every layer (activation_checkpointing_kwargs every_n_layers: 1)"
            if run.checkpointing
            else "enable activation checkpointing (--activation_checkpointing true)"
        )
        candidates.append((text, replace(run, checkpointing=True, checkpoint_every=1), launcher, plan.nodes))
    batch = run.per_device_train_batch_size
    for smaller in (d for d in range(batch - 1, 0, -1) if batch % d == 0):
        accum = run.gradient_accumulation_steps * batch // smaller
        candidates.append(
            (
                f"lower per_device_train_batch_size to {smaller} and raise gradient_accumulation_steps to "
                f"{accum} (same global batch): --per_device_train_batch_size {smaller} "
                f"--gradient_accumulation_steps {accum}",
                replace(run, per_device_train_batch_size=smaller, gradient_accumulation_steps=accum),
                launcher,
                plan.nodes,
            )
        )
    if run.stage == "dpo" and run.ref_mode == "model":
        candidates.append(
            (
                "precompute the reference (--ref_mode precomputed)",
                replace(run, ref_mode="precomputed"),
                launcher,
                plan.nodes,
            )
        )
    sharding = run.quantization is None  # a quantized base is not sharded by ZeRO-3 (training refuses it)
    if sharding and not (launcher.kind == "deepspeed" and launcher.zero_stage == 3):
        candidates.append(
            (
                "shard with ZeRO-3 (--accelerate_config recipes/accelerate/zero3.yaml)",
                run,
                Launcher("recipes/accelerate/zero3.yaml", "deepspeed", 3),
                plan.nodes,
            )
        )
    if sharding and not (launcher.offload_optimizer and launcher.offload_param):
        candidates.append(
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
            candidates.append(
                (f"use more GPUs (--nodes {nodes}: {nodes * plan.gpus_per_node} GPUs)", run, launcher, nodes)
            )
    tried = []
    for text, cand_run, cand_launcher, nodes in candidates:
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


# ---------------------------------------------------------------------------------------------------------------------
# Rendering


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
        f"model: {model.source}: {_count(model.total_params)} parameters (hidden {model.hidden_size}, mlp "
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


def _count(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}" if unit == "B" else f"{n / size:.1f}{unit}"
    return str(int(n))


# ---------------------------------------------------------------------------------------------------------------------
# Entry point for scripts and the pipeline


def infer_stage(recipe_path: str, argv: list[str]) -> str:
    """sft or dpo from the keys a recipe sets: keys only DPO's sections have (beta, ref_mode, loss_type) mean dpo."""
    from distill_core.recipe import parse_overrides
    from distill_core.schema import fields_of

    from .arguments import DPO_SECTIONS, SFT_SECTIONS

    if not os.path.isfile(recipe_path):
        return "sft"  # either will do: load_recipe reports the missing file
    with open(recipe_path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError:
            data = None  # load_recipe reports the syntax error
    keys = set(parse_overrides(argv)) | (set(data) if isinstance(data, dict) else set())
    sft = {k for s in SFT_SECTIONS for k in fields_of(s.cls)}
    dpo = {k for s in DPO_SECTIONS for k in fields_of(s.cls)}
    if keys & (dpo - sft):
        return "dpo"
    if keys & (sft - dpo):
        return "sft"
    raise RecipeError(
        f"{recipe_path}: cannot tell an sft from a dpo recipe by its keys; pass --stage sft or --stage dpo"
    )


def preflight(
    recipe_path: str,
    argv: list[str],
    *,
    accelerate_config: str,
    gpu_memory_gb: float,
    nodes: int | None = None,
    gpus_per_node: int | None = None,
    stage: str | None = None,
) -> MemoryPlan:
    """Validate the recipe (with its --key value overrides) and plan its memory; raises RecipeError on bad input.

    ``nodes`` and ``gpus_per_node`` default to the accelerate config's num_machines and num_processes / num_machines.
    The caller decides what a plan that does not fit means (scripts/preflight.py exits 2).
    """
    from distill_core.recipe import load_recipe
    from distill_core.schema import fields_of

    from .arguments import DPO_SECTIONS, SFT_SECTIONS, check_dpo, check_sft

    stage = stage or infer_stage(recipe_path, argv)
    if stage not in ("sft", "dpo"):
        raise RecipeError(f"--stage: unknown stage '{stage}'; use sft or dpo")
    sections, check = (SFT_SECTIONS, check_sft) if stage == "sft" else (DPO_SECTIONS, check_dpo)
    recipe = load_recipe(recipe_path, argv, sections, check)
    launcher = read_launcher(accelerate_config)
    nodes = nodes or launcher.num_machines
    gpus_per_node = gpus_per_node or max(1, launcher.num_processes // launcher.num_machines)
    defaults = {name: spec.default for s in sections for name, spec in fields_of(s.cls).items()}
    run = run_shape(recipe, stage, defaults)
    revision = recipe.get("model_revision", "main")
    model = read_model_shape(recipe.get("model_name_or_path"), where=recipe_path, revision=revision)
    reference = None
    ref_path = recipe.get("ref_model_name_or_path")
    if stage == "dpo" and run.ref_mode == "model" and ref_path and ref_path != recipe.get("model_name_or_path"):
        reference = read_model_shape(ref_path, where=f"{recipe_path}: ref_model_name_or_path", revision=revision)
    return plan_memory(
        run,
        model,
        launcher,
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        gpu_memory_gb=gpu_memory_gb,
        recipe=recipe_path,
        reference=reference,
    )
