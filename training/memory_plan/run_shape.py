"""The recipe values that decide memory, resolved with TRL's defaults."""

from __future__ import annotations

from dataclasses import dataclass

from distill_core.errors import RecipeError

PEFT_DEFAULT_TARGETS = ("q_proj", "v_proj")  # peft's default for llama/mistral/qwen2 when lora_target_modules is unset


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
