"""Merge a LoRA/QLoRA adapter into its base model, so the result loads and trains like any full checkpoint."""

from __future__ import annotations

import json
import os

from distill_core.errors import UserError
from distill_core.records import write_card

from .card import model_card_data, read_card_metadata


def merge_lora_adapter(adapter_dir: str, out_dir: str, dtype: str = "auto") -> str:
    config_path = os.path.join(adapter_dir, "adapter_config.json")
    if not os.path.isfile(config_path):
        raise UserError(f"'{adapter_dir}' is not a LoRA adapter directory (no adapter_config.json)")
    with open(config_path, encoding="utf-8") as f:
        base = json.load(f).get("base_model_name_or_path")
    if not base:
        raise UserError(f"{config_path} names no base_model_name_or_path; cannot tell which model to merge into")
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # merge in full precision (or the base's own dtype): merging into 4-bit weights would lose the adapter's update
    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch_dtype)
    tokenizer = AutoTokenizer.from_pretrained(
        adapter_dir if os.path.exists(os.path.join(adapter_dir, "tokenizer_config.json")) else base
    )
    if len(tokenizer) != model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    merged.generation_config.eos_token_id = tokenizer.eos_token_id
    merged.generation_config.pad_token_id = tokenizer.pad_token_id
    os.makedirs(out_dir, exist_ok=True)
    merged.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    # the adapter's own card (written by training) says which data trained it; the merged weights keep saying so
    trained = read_card_metadata(adapter_dir)
    tags = [t for t in trained.get("tags") or [] if t != "lora"] + ["merged-lora"]
    data = model_card_data(base, adapter=False, datasets=trained.get("datasets") or [], tags=tags)
    data.license = data.license or trained.get("license")  # the base's card may be out of reach here, not at training
    write_card(
        out_dir,
        data,
        f"# {os.path.basename(os.path.abspath(out_dir))}\n\n`{base}` with the LoRA adapter "
        f"`{adapter_dir}` merged into its weights (dtype {dtype}).\n",
    )
    return out_dir
