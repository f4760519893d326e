"""How an accelerate config distributes a run, read with the DeepSpeed config it points to."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import yaml

from distill_core.errors import RecipeError

DEEPSPEED_MAX_LIVE_PARAMETERS = 1e9  # DeepSpeed's default for stage3_max_live_parameters


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
