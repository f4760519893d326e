"""What the plan needs from a Llama/Mistral-style model: its shapes, read from config.json alone."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from distill_core.errors import RecipeError

LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class ModelShape:
    """What the plan needs from a Llama/Mistral-style config.json."""

    source: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each linear layer of one decoder layer."""
        h, i = self.hidden_size, self.intermediate_size
        q, kv = self.num_attention_heads * self.head_dim, self.num_key_value_heads * self.head_dim
        return {
            "q_proj": (h, q),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (q, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    @property
    def linear_params_per_layer(self) -> int:
        return sum(a * b for a, b in self.linears().values())

    @property
    def layer_params(self) -> int:
        return self.linear_params_per_layer + 2 * self.hidden_size  # two RMSNorm weights

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def total_params(self) -> int:
        heads = 1 if self.tie_word_embeddings else 2
        return self.num_hidden_layers * self.layer_params + heads * self.embedding_params + self.hidden_size

    @property
    def largest_layer(self) -> tuple[str, int]:
        """The module with the most parameters of its own, as DeepSpeed's model_to_params counts."""
        name, (a, b) = max(self.linears().items(), key=lambda kv: kv[1][0] * kv[1][1])
        return max([("embed_tokens", self.embedding_params), (name, a * b)], key=lambda t: t[1])


def read_model_shape(model: str, *, where: str, revision: str = "main") -> ModelShape:
    """Shapes from ``model``'s config.json: a directory, or a hub id already in the local Hugging Face cache."""
    path = os.path.join(os.path.expanduser(model), "config.json")
    if not os.path.isfile(path):
        path = _cached_config(model, revision) if not os.path.isdir(os.path.expanduser(model)) else None
        if path is None:
            raise RecipeError(
                f"{where}: model '{model}' is not a local directory and its config.json is neither in "
                f"the local Hugging Face cache nor downloadable (HF_HUB_OFFLINE, no network or no access); "
                f"pass --model_name_or_path DIR, a directory holding the model's config.json"
            )
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as exc:
        raise RecipeError(f"{path}: unreadable model config ({exc}); fix or replace the file") from None
    config = config.get("text_config", config) if isinstance(config.get("text_config"), dict) else config
    missing = [
        k
        for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
        if not isinstance(config.get(k), int)
    ]
    if missing:
        raise RecipeError(f"{path}: '{missing[0]}' is missing; the plan supports Llama/Mistral-style decoder configs")
    if config.get("num_local_experts") or config.get("num_experts"):
        raise RecipeError(f"{path}: mixture-of-experts models are not supported by the memory plan")
    heads = config["num_attention_heads"]
    return ModelShape(
        source=path,
        hidden_size=config["hidden_size"],
        intermediate_size=config["intermediate_size"],
        num_hidden_layers=config["num_hidden_layers"],
        num_attention_heads=heads,
        num_key_value_heads=config.get("num_key_value_heads") or heads,
        head_dim=config.get("head_dim") or config["hidden_size"] // heads,
        vocab_size=config["vocab_size"],
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
    )


def _cached_config(model: str, revision: str) -> str | None:
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "config.json", revision=revision)
    except Exception:  # a malformed repo id, an unreadable cache: same answer as not cached
        found = None
    if isinstance(found, str) and os.path.isfile(found):
        return found
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return None
    try:  # the config alone (a few kB), as the training run would fetch it first anyway
        from huggingface_hub import hf_hub_download

        return hf_hub_download(model, "config.json", revision=revision, etag_timeout=10)
    except Exception:  # no network, a gated or missing repo: same answer as not cached
        return None
