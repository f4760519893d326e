"""Recipe schemas of the training scripts: TRL's config classes plus the few keys TRL has no name for."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal, Optional

from distill_core.chat_template import resolve_chat_template
from distill_core.errors import RecipeError
from distill_core.recipe import Recipe, Section, check_output_dir
from distill_core.schema import DPO_CONFIG, MODEL_CONFIG, SFT_CONFIG, fields_of

from .mixture import parse_mixture
from .runtime import launched_zero_stage


@dataclass
class DataArguments:
    dataset_mixture: dict = field(
        metadata={
            "help": (
                "Datasets to train on: {datasets: [{id, split, test_split, columns, weight}], seed, test_split_size}."
            )
        }
    )
    log_samples: int = field(
        default=2, metadata={"help": "How many fully formatted training samples to log before training."}
    )
    chat_template: Optional[str] = field(
        default=None,
        metadata={
            "help": "Pin the chat template: a name ('zephyr') or Jinja text. Wins over the tokenizer's own template; "
            "without it the tokenizer's template is used, else Zephyr's."
        },
    )
    chat_template_path: Optional[str] = field(
        default=None,
        metadata={"help": "Pin the chat template from a Jinja file or a tokenizer directory (its chat_template)."},
    )


@dataclass
class DPOArguments(DataArguments):
    ref_mode: Literal["model", "precomputed", "adapter"] = field(
        default="model",
        metadata={
            "help": "Reference for DPO. model: a frozen copy loaded from ref_model_name_or_path. precomputed: "
            "reference log-probs computed once before training, then the reference is freed. adapter: "
            "the policy with its LoRA adapter disabled (needs use_peft)."
        },
    )
    ref_model_name_or_path: Optional[str] = field(
        default=None, metadata={"help": "Frozen reference model; defaults to model_name_or_path (the dSFT model)."}
    )
    max_prompt_length: Optional[int] = field(
        default=None,
        metadata={
            "help": "Cut each prompt to its last N tokens after the prompt is extracted (the Zephyr paper and "
            "handbook used 512); max_length then caps prompt plus answer. None keeps prompts whole."
        },
    )


def ref_mode(recipe: Recipe) -> str:
    """The DPO reference mode a recipe asks for; unset, DPOArguments' default (a dataclass keeps each field's
    default as the class attribute)."""
    return recipe.get("ref_mode", DPOArguments.ref_mode)


SFT_SECTIONS = [Section("data", DataArguments), Section("model", MODEL_CONFIG), Section("training", SFT_CONFIG)]
DPO_SECTIONS = [Section("data", DPOArguments), Section("model", MODEL_CONFIG), Section("training", DPO_CONFIG)]


def _check_common(recipe: Recipe) -> None:
    path = recipe.path
    model = recipe.get("model_name_or_path")
    if not model:
        raise RecipeError(f"{path}: required key 'model_name_or_path' is missing; name a model directory or hub id")
    if (model.startswith((".", "/", "~")) or model.count("/") > 1) and not os.path.isdir(os.path.expanduser(model)):
        raise RecipeError(
            f"{path}: model_name_or_path '{model}' is not a directory; build or download the model first"
        )
    if os.path.isfile(os.path.join(os.path.expanduser(model), "adapter_config.json")):
        raise RecipeError(
            f"{path}: model_name_or_path '{model}' is a LoRA adapter, not a model; merge it first: "
            f"python scripts/merge_adapter.py {model} {model.rstrip('/')}-merged"
        )
    if not recipe.get("output_dir"):
        raise RecipeError(f"{path}: required key 'output_dir' is missing; say where the trained model is written")
    check_output_dir(recipe)
    if recipe.get("load_in_4bit") and not recipe.get("use_peft"):
        raise RecipeError(f"{path}: load_in_4bit (QLoRA) trains adapters only; also set use_peft: true")
    _check_launcher(recipe)
    recipe.parsed["chat_template"] = resolve_chat_template(
        recipe.get("chat_template"), recipe.get("chat_template_path"), path
    )
    recipe.parsed["mixture"] = parse_mixture(recipe.get("dataset_mixture"), path)


def _check_launcher(recipe: Recipe) -> None:
    """Refuse combinations the launcher this process runs under cannot train, before any data or model loads."""
    stage = launched_zero_stage()
    if stage == 3 and (recipe.get("load_in_4bit") or recipe.get("load_in_8bit")):
        raise RecipeError(
            f"{recipe.path}: a 4/8-bit quantized base (QLoRA) is not supported under DeepSpeed ZeRO-3 here; launch it "
            f"with recipes/accelerate/ddp.yaml (one quantized copy per GPU) or as a single process"
        )


def check_sft(recipe: Recipe) -> None:
    _check_common(recipe)


def check_dpo(recipe: Recipe) -> None:
    _check_common(recipe)
    path = recipe.path
    if "precompute_ref_log_probs" in recipe.values:
        raise RecipeError(
            f"{path}: set the reference with 'ref_mode: precomputed' instead of precompute_ref_log_probs"
        )
    mode = ref_mode(recipe)
    if mode == "adapter" and not recipe.get("use_peft"):
        raise RecipeError(
            f"{path}: ref_mode 'adapter' uses the adapter-disabled base as reference and needs use_peft: true; "
            f"or use ref_mode: model"
        )
    if mode != "model" and recipe.get("ref_model_name_or_path"):
        raise RecipeError(f"{path}: ref_model_name_or_path is only used with ref_mode: model (got ref_mode: {mode})")
    if mode == "precomputed" and recipe.get("sync_ref_model"):
        raise RecipeError(
            f"{path}: sync_ref_model updates the reference during training, so it cannot be precomputed; "
            f"use ref_mode: model"
        )
    prompt_cap = recipe.get("max_prompt_length")
    max_length = recipe.get("max_length", fields_of(DPO_CONFIG)["max_length"].default)
    if prompt_cap is not None and (prompt_cap <= 0 or (max_length is not None and prompt_cap >= max_length)):
        raise RecipeError(
            f"{path}: max_prompt_length {prompt_cap} must be above 0 and below max_length {max_length}, "
            f"so the answers keep some room (Zephyr: 512 of 1024)"
        )
    ref = recipe.get("ref_model_name_or_path")
    if ref and (ref.startswith((".", "/", "~")) or ref.count("/") > 1) and not os.path.isdir(os.path.expanduser(ref)):
        raise RecipeError(f"{path}: ref_model_name_or_path '{ref}' is not a directory")
