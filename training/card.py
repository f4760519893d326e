"""Model cards: what a reader needs to know to trust or reproduce a checkpoint."""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any

from .data import describe_mixture

_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "deepspeed", "datasets")


def _version(pkg: str) -> str:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def write_model_card(out_dir: str, *, stage: str, setup, trainer, details: dict[str, Any]) -> str:
    from .session import metrics_summary

    args = setup.training
    ws = args.world_size
    per_device, accum = args.per_device_train_batch_size, args.gradient_accumulation_steps
    mixture = setup.recipe.parsed["mixture"]
    metrics = metrics_summary(trainer)
    base = setup.model.model_name_or_path
    lines = [
        "---",
        f"base_model: {base}",
        "tags: [" + ", ".join(["trl", stage.lower(), "distillation"] + (["lora"] if setup.model.use_peft else [])) + "]",
        "datasets:",
        *[f"  - {s.id}" for s in mixture.datasets],
        "---",
        "",
        f"# {os.path.basename(os.path.abspath(out_dir))}",
        "",
        f"{stage} of `{base}` with TRL, trained from the recipe `{setup.recipe.path}` (sha256 `{setup.recipe.sha256[:12]}`).",
        "",
        "## Data",
        *[f"- {line}" for line in describe_mixture(mixture)],
        f"- mixture seed {mixture.seed}; training examples {details.get('train_examples', '?')}"
        + (f", evaluation examples {details['eval_examples']}" if details.get("eval_examples") else ""),
        "",
        "## Training",
        f"- effective global batch size: **{per_device * accum * ws}** = {per_device} per device x {accum} "
        f"gradient accumulation x {ws} processes",
        f"- precision {setup.runtime.precision}, attention {setup.runtime.attn_implementation}, "
        f"device {setup.runtime.device}, backend {args.ddp_backend or 'default'}",
        f"- learning rate {args.learning_rate:g}, scheduler {getattr(args.lr_scheduler_type, 'value', args.lr_scheduler_type)}, "
        f"warmup {args.warmup_steps:g}, epochs {args.num_train_epochs:g}, max_steps {args.max_steps}, seed {args.seed}",
        f"- max_length {args.max_length}, optimizer {getattr(args.optim, 'value', args.optim)}, "
        f"gradient checkpointing {args.gradient_checkpointing}",
    ]
    if setup.model.use_peft:
        lines.append(f"- LoRA r={setup.model.lora_r} alpha={setup.model.lora_alpha} dropout={setup.model.lora_dropout} "
                     f"targets={setup.model.lora_target_modules}" + (" on a 4-bit base (QLoRA)" if setup.model.load_in_4bit else ""))
    for key, value in details.items():
        if key not in ("train_examples", "eval_examples"):
            lines.append(f"- {key}: {value}")
    from .plots import plot_training_curves

    figure = plot_training_curves(trainer.state.log_history, stage, out_dir)
    lines += ["", "## Results (last logged values)", ""]
    if figure:
        lines += [f"![training curves]({figure})", ""]
    lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in sorted(metrics.items())] or ["(none logged)"]
    if metrics:
        lines.insert(len(lines) - len(metrics), "| metric | value |\n| --- | --- |")
    lines += ["", "## Recipe", "", "```yaml", setup.recipe.text.rstrip(), "```"]
    if setup.recipe.overrides:
        lines += ["", "Command-line overrides: `" + " ".join(setup.recipe.overrides) + "`"]
    lines += ["", "## Framework versions", ""] + [f"- {p} {_version(p)}" for p in _PACKAGES]
    path = os.path.join(out_dir, "README.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path
