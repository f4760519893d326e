"""What a merged model carries beside its weights: config, tokenizer with its chat template, generation config, a
model card (recipe, parents, method, measured peak memory) and the run manifest."""

from __future__ import annotations

import json
import os

from distill_core.recipe import Recipe
from distill_core.records import hub_repo_id, recipe_record, write_atomic, write_card, write_manifest

from .config import MergeSpec
from .inputs import ModelInput


def tokenizer_path(recipe: Recipe, spec: MergeSpec, models: dict[str, ModelInput]) -> str:
    source = recipe.parsed["args"].tokenizer_source
    name = spec.base or spec.models[0] if source in (None, "base") else source
    return models[name].path


def write_companions(
    recipe: Recipe, spec: MergeSpec, models: dict[str, ModelInput], out_dir: str, stats: dict, layers: int
) -> None:
    from transformers import AutoTokenizer, GenerationConfig

    reference = models[spec.base or spec.models[0]]
    config = dict(reference.config)
    config["num_hidden_layers"] = layers
    config["dtype"] = stats["dtype"]
    config.pop("torch_dtype", None)
    write_atomic(os.path.join(out_dir, "config.json"), json.dumps(config, indent=2) + "\n")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path(recipe, spec, models))
    tokenizer.save_pretrained(out_dir)
    if os.path.isfile(os.path.join(reference.path, "generation_config.json")):
        generation = GenerationConfig.from_pretrained(reference.path)
    else:
        generation = GenerationConfig(bos_token_id=config.get("bos_token_id"))
    generation.eos_token_id = tokenizer.eos_token_id
    if tokenizer.pad_token_id is not None:
        generation.pad_token_id = tokenizer.pad_token_id
    generation.save_pretrained(out_dir)
    write_card(out_dir, _card_data(spec), _card_body(recipe, spec, out_dir, stats))
    write_manifest(
        out_dir,
        "merge",
        recipe=recipe_record(recipe),
        method=spec.method,
        parents=spec.models,
        base_model=spec.base,
        tokenizer_from=tokenizer_path(recipe, spec, models),
        memory=stats,
    )


def _card_data(spec: MergeSpec):
    from huggingface_hub import ModelCardData

    return ModelCardData(
        base_model=[m for m in map(hub_repo_id, spec.models) if m] or None,
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=["merge", spec.method],
    )


def _card_body(recipe: Recipe, spec: MergeSpec, out_dir: str, stats: dict) -> str:
    parents = "\n".join(f"- `{m}`" + (" (base)" if m == spec.base else "") for m in spec.models)
    return (
        f"# {os.path.basename(out_dir)}\n\n"
        f"A merge of {len(spec.models)} models with **{spec.method}** (mergekit semantics), streamed tensor by "
        f"tensor into {stats['shards']} safetensors shard(s), {stats['dtype']}.\n\n"
        f"## Parents\n\n{parents}\n\n"
        f"## Memory\n\n"
        f"Peak resident memory of the merging process: {stats['peak_rss_mib']} MiB "
        f"({stats['rss_before_first_tensor_mib']} MiB before the first tensor was read; the largest tensor is "
        f"{stats['largest_tensor_mib']} MiB). Merge time {stats['seconds']} s for {stats['tensors']} tensors.\n\n"
        f"## Recipe\n\n```yaml\n{recipe.text.rstrip()}\n```\n"
        + (f"\nCommand-line overrides: `{' '.join(recipe.overrides)}`\n" if recipe.overrides else "")
    )
