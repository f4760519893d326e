"""The input models: their config, the tensors their safetensors shards hold, and the checks that they can be
merged (same architecture, same tensor names and shapes, same tokenizer unless the recipe names one to take).

mergekit keeps the common top-left block of the embeddings when vocabularies differ and merges tokenizers in ways that
break them; here any difference is refused in one line, before a tensor is read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Callable

from distill_core.errors import UserError

from .shards import TensorInfo, read_header

ADAPTER_CONFIG = "adapter_config.json"


@dataclass
class ModelInput:
    name: str  # as the recipe wrote it
    path: str  # the directory read (an adapter's merged copy for an adapter)
    config: dict
    tensors: dict[str, TensorInfo]

    @property
    def layers(self) -> int:
        return int(self.config.get("num_hidden_layers") or 0)


def is_adapter(path: str) -> bool:
    return os.path.isfile(os.path.join(path, ADAPTER_CONFIG))


def open_model(name: str, path: str) -> ModelInput:
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        raise UserError(f"model '{name}': no config.json in '{path}'; name a model directory saved by save_pretrained")
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    elif os.path.isfile(os.path.join(path, "model.safetensors")):
        files = ["model.safetensors"]
    else:
        raise UserError(
            f"model '{name}': no safetensors weights in '{path}'; "
            "save it with save_pretrained(safe_serialization=True)"
        )
    tensors = {info.name: info for file in files for info in read_header(os.path.join(path, file))}
    return ModelInput(name, path, config, tensors)


def resolve_models(
    names: list[str], scratch: str, merge_adapter: Callable[[str, str], str] | None
) -> dict[str, ModelInput]:
    """Each input opened; a LoRA/QLoRA adapter directory is first merged into its base under ``scratch``."""
    out = {}
    for i, name in enumerate(names):
        path = os.path.expanduser(name)
        if not os.path.isdir(path):
            raise UserError(f"model '{name}' is not a directory here; download it first (the merge reads no hub)")
        if is_adapter(path):
            if merge_adapter is None:
                raise UserError(f"model '{name}' is a LoRA adapter; merge it first with scripts/merge_adapter.py")
            path = merge_adapter(path, os.path.join(scratch, f"adapter-{i}"))
        out[name] = open_model(name, path)
    return out


def check_compatible(models: list[ModelInput]) -> None:
    """Same architecture, and the same tensor names with the same shapes; else a one-line UserError."""
    first = models[0]
    for other in models[1:]:
        for key in ("architectures", "model_type"):
            if first.config.get(key) != other.config.get(key):
                raise UserError(
                    f"'{first.name}' and '{other.name}' differ in {key} ({first.config.get(key)} vs "
                    f"{other.config.get(key)}); only models of one architecture can be merged"
                )
        missing = sorted(set(first.tensors) ^ set(other.tensors))
        if missing:
            raise UserError(
                f"'{first.name}' and '{other.name}' hold different tensors (e.g. '{missing[0]}'); "
                "only models of one architecture and size can be merged"
            )
        for tensor_name, info in first.tensors.items():
            if other.tensors[tensor_name].shape != info.shape:
                raise UserError(
                    f"'{first.name}' and '{other.name}' differ in the shape of {tensor_name} ({list(info.shape)} vs "
                    f"{list(other.tensors[tensor_name].shape)}); only models of one size can be merged"
                )


def tokenizer_signature(path: str) -> dict:
    """What must agree between inputs' tokenizers: vocabulary, special tokens and chat template."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise UserError(
            f"'{path}' has no tokenizer that loads ({exc.__class__.__name__}); set tokenizer_source"
        ) from None
    return {
        "vocabulary": tokenizer.get_vocab(),
        "special tokens": {k: str(v) for k, v in tokenizer.special_tokens_map.items()},
        "chat template": tokenizer.chat_template,
    }


def check_tokenizers(models: list[ModelInput], tokenizer_source: str | None) -> None:
    """Refuse inputs whose tokenizers differ, unless the recipe says which one the merge takes."""
    if tokenizer_source is not None:
        return
    first = tokenizer_signature(models[0].path)
    for other in models[1:]:
        theirs = tokenizer_signature(other.path)
        for part, value in first.items():
            if theirs[part] != value:
                detail = (
                    f" ({len(value)} vs {len(theirs[part])} tokens)" if part == "vocabulary" else ""
                )  # fmt: skip
                raise UserError(
                    f"'{models[0].name}' and '{other.name}' have different tokenizers: the {part} differs{detail}; "
                    "set tokenizer_source: base (or an input's name) to take one, if the shapes agree"
                )
