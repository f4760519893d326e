"""The one place that decides precision, attention implementation and distributed backend.

The decision follows what the machine has, not what a recipe hoped for: recipes are written for
GPU clusters (bf16, FlashAttention-2, NCCL) and must still run on a laptop CPU (fp32, sdpa, gloo).
Every downgrade is logged; nothing is upgraded silently.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass

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

    @property
    def dtype(self) -> str:
        return {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[self.precision]


def decide_runtime(*, bf16: bool | None, fp16: bool | None, attn_implementation: str | None) -> Runtime:
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
            notes.append("GPU lacks bf16: using fp16")
        attn = attn_implementation or "sdpa"
        if attn == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
            notes.append("flash_attn is not installed (pip install -r requirements-gpu.txt): using sdpa")
            attn = "sdpa"
        return Runtime("cuda", precision, attn, None, tuple(notes))

    if bf16 or fp16:
        notes.append("no CUDA device: bf16/fp16 turned off, training in fp32")
    attn = attn_implementation or "sdpa"
    if attn not in ("sdpa", "eager"):
        notes.append(f"no CUDA device: attn_implementation {attn} replaced by sdpa")
        attn = "sdpa"
    return Runtime("cpu", "fp32", attn, "gloo", tuple(notes))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def batch_line(args, runtime: Runtime) -> str:
    """The line users grep for: who trains, with what global batch, in what precision."""
    ws = args.world_size
    per_device = args.per_device_train_batch_size
    accum = args.gradient_accumulation_steps
    return (
        f"world_size={ws} per_device_train_batch_size={per_device} gradient_accumulation_steps={accum} "
        f"effective_global_batch={per_device * accum * ws} (= {per_device} x {accum} x {ws}) "
        f"precision={runtime.precision} attn_implementation={runtime.attn_implementation} "
        f"backend={(args.ddp_backend or ('nccl' if runtime.device == 'cuda' else 'gloo')) if ws > 1 else 'none'} "
        f"deepspeed={'yes' if getattr(args, 'deepspeed_plugin', None) or args.deepspeed else 'no'}"
    )
