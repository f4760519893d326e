"""Model cards: what a reader needs to know to trust or reproduce a checkpoint.

The YAML header is huggingface_hub's ``ModelCardData``, so the hub and its tools read it as standard metadata:

- ``base_model``: the starting model's hub id, only when it was loaded from the hub. A local starting model (a
  dSFT checkpoint, the smoke model) is named in the body as the recipe wrote it: a path of this machine means
  nothing on the hub, and an absolute one would publish this machine's layout.
- ``datasets``: the hub ids of the mixture; local datasets are listed in the body only.
- ``license``: the starting model's, as its own card declares it, when that card can be read without the network (a
  local model directory's README.md, or the hub's README.md in the local cache). A fine-tune is a derivative of its
  base, and a dDPO model of its dSFT model, whose card carries the license on. When it cannot be read the key is
  left out, so the hub shows the license as unknown; "other" would claim a custom license the card does not state.
- ``library_name``: ``peft`` for an adapter, ``transformers`` for full weights; ``pipeline_tag``: text-generation.
"""

from __future__ import annotations

import os
from typing import Any

from distill_core.records import hub_repo_id, package_versions, write_card

from .metrics import metrics_summary
from .mixture import describe_mixture
from .runtime import effective_global_batch

# The tag TRL gives models its trainers produce, per stage; the hub lists TRL models by it.
TRAINER_TAGS = {"dSFT": "sft", "dDPO": "dpo"}


def read_card_metadata(model: str, revision: str | None = None) -> dict[str, Any]:
    """The metadata of a model's own card, read without the network: a local directory's README.md, or a hub
    model's README.md when the hub cache holds it. Empty when there is none, or it cannot be parsed."""
    from huggingface_hub import ModelCard, try_to_load_from_cache

    if os.path.isdir(model):
        readme = os.path.join(model, "README.md")
    elif hub_repo_id(model):
        cached = try_to_load_from_cache(model, "README.md", revision=revision)
        readme = cached if isinstance(cached, str) else ""
    else:
        return {}
    if not os.path.isfile(readme):
        return {}
    try:
        return ModelCard.load(readme).data.to_dict()
    except Exception:  # a card without a valid YAML header tells nothing about the license
        return {}


def model_card_data(base: str, *, revision: str | None = None, adapter: bool, datasets: list[str], tags: list[str]):
    """Standard metadata of a checkpoint trained or merged from ``base`` (see the module docstring)."""
    from huggingface_hub import ModelCardData

    hub_datasets = list(dict.fromkeys(d for d in map(hub_repo_id, datasets) if d))
    return ModelCardData(
        base_model=hub_repo_id(base),
        license=read_card_metadata(base, revision).get("license"),
        library_name="peft" if adapter else "transformers",
        pipeline_tag="text-generation",
        datasets=hub_datasets or None,
        tags=tags,
    )


def write_model_card(out_dir: str, *, stage: str, setup, trainer, details: dict[str, Any]) -> str:
    mixture = setup.recipe.parsed["mixture"]
    metrics = metrics_summary(trainer.state.log_history)
    base = setup.model.model_name_or_path
    data = model_card_data(
        base,
        revision=setup.model.model_revision,
        adapter=setup.model.use_peft,
        datasets=[s.id for s in mixture.datasets],
        tags=["trl", TRAINER_TAGS.get(stage, stage.lower()), stage.lower(), "distillation"]
        + (["lora"] if setup.model.use_peft else []),
    )
    lines = [
        f"# {os.path.basename(os.path.abspath(out_dir))}",
        "",
        f"{stage} of `{base}` with TRL, trained from the recipe `{setup.recipe.path}` (sha256 "
        f"`{setup.recipe.sha256[:12]}`).",
        "",
        "## Data",
        *[f"- {line}" for line in describe_mixture(mixture)],
        f"- mixture seed {mixture.seed}; training examples {details.get('train_examples', '?')}"
        + (f", evaluation examples {details['eval_examples']}" if details.get("eval_examples") else ""),
        "",
        *_training_lines(setup),
    ]
    for key, value in details.items():
        if key not in ("train_examples", "eval_examples"):
            lines.append(f"- {key}: {value}")
    from .plots import plot_training_curves

    figure = plot_training_curves(trainer.state.log_history, stage, out_dir)
    lines += ["", "## Results (last logged values)", ""]
    if figure:
        lines += [f"![training curves]({figure})", ""]
    lines += [
        f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in sorted(metrics.items())
    ] or ["(none logged)"]
    if metrics:
        lines.insert(len(lines) - len(metrics), "| metric | value |\n| --- | --- |")
    lines += ["", "## Recipe", "", "```yaml", setup.recipe.text.rstrip(), "```"]
    if setup.recipe.overrides:
        lines += ["", "Command-line overrides: `" + " ".join(setup.recipe.overrides) + "`"]
    lines += ["", "## Framework versions", ""] + [f"- {p} {v}" for p, v in package_versions().items()]
    return write_card(out_dir, data, "\n".join(lines) + "\n")


def _training_lines(setup) -> list[str]:
    """The card's "Training" section: batch, precision, schedule and, for an adapter, the LoRA settings."""
    args = setup.training
    ws = args.world_size
    per_device, accum = args.per_device_train_batch_size, args.gradient_accumulation_steps
    lines = [
        "## Training",
        f"- effective global batch size: **{effective_global_batch(per_device, accum, ws)}** = {per_device} per "
        f"device x {accum} "
        f"gradient accumulation x {ws} processes",
        f"- precision {setup.runtime.precision}, attention {setup.runtime.attn_implementation}, "
        f"device {setup.runtime.device}, backend {args.ddp_backend or 'default'}",
        f"- learning rate {args.learning_rate:g}, scheduler "
        f"{getattr(args.lr_scheduler_type, 'value', args.lr_scheduler_type)}, "
        f"warmup {args.warmup_steps:g}, epochs {args.num_train_epochs:g}, max_steps {args.max_steps}, seed "
        f"{args.seed}",
        f"- max_length {args.max_length}, optimizer {getattr(args.optim, 'value', args.optim)}, "
        f"gradient checkpointing {args.gradient_checkpointing}",
    ]
    if setup.model.use_peft:
        lines.append(
            f"- LoRA r={setup.model.lora_r} alpha={setup.model.lora_alpha} dropout={setup.model.lora_dropout} "
            f"targets={setup.model.lora_target_modules}"
            + (" on a 4-bit base (QLoRA)" if setup.model.load_in_4bit else "")
        )
    return lines
