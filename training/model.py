"""Loading the policy, the reference and the tokenizer exactly as a real checkpoint is loaded."""

from __future__ import annotations

import logging
import os

from distill_core.chat_template import prepare_tokenizer
from distill_core.errors import RecipeError, first_line

from .runtime import Runtime

logger = logging.getLogger(__name__)


def load_tokenizer(
    model_args, *, trust_remote_code: bool, need_generation_markers: bool, pinned: tuple[str, str] | None = None
):
    from transformers import AutoTokenizer

    path = model_args.model_name_or_path
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            path, revision=model_args.model_revision, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as exc:
        raise RecipeError(f"could not load the tokenizer of '{path}': {first_line(exc)}") from None
    added = prepare_tokenizer(
        tokenizer, need_generation_markers=need_generation_markers, model_path=path, pinned=pinned
    )
    return tokenizer, added


def model_init_kwargs(model_args, runtime: Runtime, *, trust_remote_code: bool, extra: dict | None = None) -> dict:
    """from_pretrained kwargs: dtype and attention follow the runtime decision; 4-bit adds a quantization config.

    ``extra`` is the recipe's TRL ``model_init_kwargs``; it may add keys but not undo the runtime decision.
    """
    from trl import get_quantization_config

    dtype = runtime.weight_dtype(model_args.dtype)
    if dtype != model_args.dtype and model_args.dtype not in (None, "auto"):
        logger.warning(
            "weights loaded in %s, not the recipe's %s, to match precision %s",
            dtype,
            model_args.dtype,
            runtime.precision,
        )
    kwargs = dict(extra or {})
    kwargs.update(
        revision=model_args.model_revision,
        trust_remote_code=trust_remote_code,
        attn_implementation=runtime.attn_implementation,
        dtype=dtype,
    )
    quantization = get_quantization_config(model_args)
    if quantization is not None:
        import torch

        compute = getattr(torch, dtype)
        quantization.bnb_4bit_compute_dtype = compute
        # packed 4-bit weights stored in the compute dtype: what sharding and mixed-dtype checks expect
        quantization.bnb_4bit_quant_storage = compute
        if runtime.device == "cuda":  # each process loads its quantized copy on its own GPU
            kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
        kwargs["quantization_config"] = quantization
    return kwargs


def keep_adapters_in_fp32(model) -> int:
    """Cast trainable (adapter) parameters of a quantized model back to fp32; returns how many were cast.

    TRL casts them to bf16 for QLoRA. At the small learning rates of dDPO (5e-6) a bf16 weight cannot represent
    most updates (its spacing near 0.01 is about 6e-5), so most entries of lora_A never move. Kept in fp32, the
    optimizer updates them exactly; the matmuls still run in the compute dtype under autocast.
    """
    import torch

    cast = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype in (torch.bfloat16, torch.float16):
            param.data = param.data.float()
            cast += 1
    if cast:
        logger.info(
            "kept %d trainable adapter tensors in fp32 (the frozen 4-bit base computes in its own dtype)", cast
        )
    return cast


def load_causal_lm(path: str, init_kwargs: dict, tokenizer=None, resize: bool = False):
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(path, **init_kwargs)
    except (OSError, ValueError) as exc:
        raise RecipeError(f"could not load model '{path}': {first_line(exc)}") from None
    if resize and tokenizer is not None:
        model.resize_token_embeddings(len(tokenizer))
    if tokenizer is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model
