"""The one place that decides precision, attention implementation and distributed backend.

The decision follows what the machine has, not what a recipe hoped for: recipes are written for
GPU clusters (bf16, FlashAttention-2, NCCL) and must still run on a laptop CPU (fp32, sdpa, gloo).
Every downgrade is logged; nothing is upgraded silently.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import dataclass

from distill_core.errors import RecipeError
from distill_core.placement import is_main_process  # noqa: F401 - training's callers import it from here

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    device: str  # "cuda" or "cpu"
    precision: str  # "bf16", "fp16" or "fp32"
    attn_implementation: str
    ddp_backend: str | None  # None lets accelerate pick (nccl on GPUs)
    notes: tuple[str, ...] = ()

    def training_overrides(self) -> dict:
        """Values forced onto TRL's config so it matches the machine."""
        out = {"bf16": self.precision == "bf16", "fp16": self.precision == "fp16"}
        if self.ddp_backend and world_size() > 1:  # a single process has no process group to configure
            out["ddp_backend"] = self.ddp_backend
        return out

    def weight_dtype(self, requested: str | None) -> str:
        return _weight_dtype(requested, self.precision)


def decide_runtime(
    *,
    bf16: bool | None,
    fp16: bool | None,
    attn_implementation: str | None,
    dtype: str | None = None,
    full_weights: bool = True,
    where: str = "recipe",
) -> Runtime:
    """Precision, attention and backend for this machine.

    On a GPU the recipe is honoured or the run stops with a one-line error: flash_attention_2 without flash-attn or
    on a GPU older than Ampere is refused (sdpa is used only when the recipe says sdpa), and a full fine-tune whose
    weights would be held in bf16/fp16 without DeepSpeed (Adam states in 16 bits lose most small updates) is refused.
    Without a GPU it falls back to fp32, sdpa and gloo and logs each downgrade.
    """
    import torch

    notes = []
    if torch.cuda.is_available():
        if fp16:
            precision = "fp16"
        elif bf16 is False:
            precision = "fp32"
        elif torch.cuda.is_bf16_supported():
            precision = "bf16"
        else:
            precision = "fp16"
            notes.append("GPU lacks bf16: using fp16 (model weights loaded in float16 to match)")
        attn = attn_implementation or "sdpa"
        if attn == "flash_attention_2":
            _check_flash_attention(where)
        weights = _weight_dtype(dtype, precision)
        if full_weights and weights in ("bfloat16", "float16") and launched_zero_stage() is None:
            raise RecipeError(
                f"{where}: a full fine-tune with weights in {weights} and no DeepSpeed keeps Adam's states in 16 "
                "bits, "
                f"which lose most small updates; launch with recipes/accelerate/zero3.yaml (fp32 master weights), "
                f"or set dtype: float32 and keep bf16: true for mixed precision"
            )
        return Runtime("cuda", precision, attn, None, tuple(notes))

    if bf16 or fp16:
        notes.append("no CUDA device: bf16/fp16 turned off, training in fp32")
    attn = attn_implementation or "sdpa"
    if attn not in ("sdpa", "eager"):
        notes.append(f"no CUDA device: attn_implementation {attn} replaced by sdpa")
        attn = "sdpa"
    return Runtime("cpu", "fp32", attn, "gloo", tuple(notes))


def _check_flash_attention(where: str) -> None:
    """Refuse flash_attention_2 on a GPU older than Ampere or without flash-attn installed."""
    import torch

    major, minor = torch.cuda.get_device_capability()
    if major < 8:
        raise RecipeError(
            f"{where}: attn_implementation flash_attention_2 needs an Ampere or newer GPU (compute "
            "capability 8.0+), "
            f"this one is {major}.{minor}; set attn_implementation: sdpa"
        )
    if importlib.util.find_spec("flash_attn") is None:
        raise RecipeError(
            f"{where}: attn_implementation flash_attention_2 but flash-attn is not installed; "
            f"pip install -r requirements-gpu.txt --no-build-isolation, or set attn_implementation: sdpa "
            f"(slower with packing)"
        )


def _weight_dtype(dtype: str | None, precision: str) -> str:
    """The dtype weights are loaded in: the recipe's, kept consistent with the precision actually used."""
    if dtype in (None, "auto"):
        return {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[precision]
    if dtype == "bfloat16" and precision == "fp16":
        return "float16"  # the GPU has no bf16: weights follow the fp16 fallback
    if dtype in ("bfloat16", "float16") and precision == "fp32":
        return "float32"
    return dtype


def launched_zero_stage() -> int | None:
    """The DeepSpeed ZeRO stage of the accelerate launch this process runs under, or None without DeepSpeed."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() != "true":
        return None
    stage = os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE")
    if stage:
        return int(stage)
    config = os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE")
    if config and os.path.isfile(config):
        with open(config, encoding="utf-8") as f:
            return int(json.load(f).get("zero_optimization", {}).get("stage", 0))
    return 0


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def effective_global_batch(per_device: int, accumulation: int, processes: int) -> int:
    """Examples per optimizer step: each process's micro-batch, accumulated, across every process."""
    return per_device * accumulation * processes


def batch_line(args, runtime: Runtime) -> str:
    """The line users grep for: who trains, with what global batch, in what precision."""
    ws = args.world_size
    per_device = args.per_device_train_batch_size
    accum = args.gradient_accumulation_steps
    return (
        f"world_size={ws} per_device_train_batch_size={per_device} gradient_accumulation_steps={accum} "
        f"effective_global_batch={effective_global_batch(per_device, accum, ws)} (= {per_device} x {accum} x {ws}) "
        f"precision={runtime.precision} attn_implementation={runtime.attn_implementation} "
        f"backend={(args.ddp_backend or ('nccl' if runtime.device == 'cuda' else 'gloo')) if ws > 1 else 'none'} "
        f"deepspeed={'yes' if getattr(args, 'deepspeed_plugin', None) or args.deepspeed else 'no'}"
    )
