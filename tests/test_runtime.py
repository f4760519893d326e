"""The runtime decision on a GPU machine (simulated: these machines have none) and the recipe rules checked before
anything loads: pinned chat templates, the prompt cap, QLoRA under ZeRO-3."""

from __future__ import annotations

import os

import pytest
from conftest import REPO

from distill_core.errors import RecipeError
from distill_core.recipe import load_recipe
from training.arguments import DPO_SECTIONS, SFT_SECTIONS, check_dpo, check_sft
from training.runtime import decide_runtime, launched_zero_stage


@pytest.fixture
def gpu(monkeypatch):
    """torch.cuda answering as an Ampere GPU with bf16 and flash-attn installed; tests change one answer each."""
    import importlib.util

    import torch

    state = {"capability": (8, 0), "bf16": True, "flash_attn": True}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: state["bf16"])
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: state["capability"])
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: (
            object()
            if name == "flash_attn" and state["flash_attn"]
            else (None if name == "flash_attn" else real_find_spec(name, *a))
        ),
    )
    for var in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_DEEPSPEED_ZERO_STAGE", "ACCELERATE_DEEPSPEED_CONFIG_FILE"):
        monkeypatch.delenv(var, raising=False)
    return state


def zero3(monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", os.path.join(REPO, "ds_configs", "zero3.json"))


def test_flash_attention_is_granted_or_refused_never_swapped(gpu, monkeypatch):
    zero3(monkeypatch)
    ok = decide_runtime(bf16=True, fp16=None, attn_implementation="flash_attention_2", dtype="bfloat16")
    assert (ok.device, ok.precision, ok.attn_implementation) == ("cuda", "bf16", "flash_attention_2")
    gpu["flash_attn"] = False
    with pytest.raises(RecipeError, match="flash-attn is not installed.*set attn_implementation: sdpa"):
        decide_runtime(bf16=True, fp16=None, attn_implementation="flash_attention_2", dtype="bfloat16")
    assert (
        decide_runtime(bf16=True, fp16=None, attn_implementation="sdpa", dtype="bfloat16").attn_implementation
        == "sdpa"
    )
    gpu["flash_attn"], gpu["capability"] = True, (7, 5)
    with pytest.raises(RecipeError, match=r"compute capability 8.0\+\), this one is 7.5"):
        decide_runtime(bf16=True, fp16=None, attn_implementation="flash_attention_2", dtype="bfloat16")


def test_fp16_fallback_loads_weights_in_fp16(gpu, monkeypatch):
    zero3(monkeypatch)
    gpu["bf16"] = False
    runtime = decide_runtime(bf16=True, fp16=None, attn_implementation="sdpa", dtype="bfloat16")
    assert runtime.precision == "fp16" and runtime.weight_dtype("bfloat16") == "float16"
    assert runtime.training_overrides() == {"bf16": False, "fp16": True}


def test_full_fine_tune_in_bf16_weights_needs_deepspeed(gpu, monkeypatch):
    with pytest.raises(RecipeError, match="Adam's states in 16 bits.*recipes/accelerate/zero3.yaml"):
        decide_runtime(bf16=True, fp16=None, attn_implementation="sdpa", dtype="bfloat16")
    # fp32 master weights under bf16 autocast, adapters (LoRA), or DeepSpeed are all fine
    assert decide_runtime(bf16=True, fp16=None, attn_implementation="sdpa", dtype="float32").precision == "bf16"
    assert decide_runtime(bf16=True, fp16=None, attn_implementation="sdpa", dtype="bfloat16", full_weights=False)
    zero3(monkeypatch)
    assert launched_zero_stage() == 3
    assert decide_runtime(bf16=True, fp16=None, attn_implementation="sdpa", dtype="bfloat16").precision == "bf16"


def test_cpu_downgrades_are_noted(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    runtime = decide_runtime(bf16=True, fp16=None, attn_implementation="flash_attention_2", dtype="bfloat16")
    assert (runtime.precision, runtime.attn_implementation, runtime.ddp_backend) == ("fp32", "sdpa", "gloo")
    assert runtime.weight_dtype("bfloat16") == "float32" and len(runtime.notes) == 2


# ---------------------------------------------------------------------------------------------------------------------
# Recipe rules


TINY = ["--model_name_or_path", "runs/smoke/tiny-model"]


def _load(workspace, recipe, *overrides, sections=SFT_SECTIONS, check=check_sft):
    cwd = os.getcwd()
    os.chdir(workspace)
    try:
        return load_recipe(recipe, list(overrides), sections, check)
    finally:
        os.chdir(cwd)


def test_qlora_under_zero3_is_refused_before_loading(workspace, monkeypatch):
    zero3(monkeypatch)
    with pytest.raises(RecipeError, match="not supported under DeepSpeed ZeRO-3.*recipes/accelerate/ddp.yaml"):
        _load(workspace, "recipes/smoke/sft.yaml", "--use_peft", "--load_in_4bit")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", os.path.join(REPO, "ds_configs", "zero2.json"))
    assert _load(workspace, "recipes/smoke/sft.yaml", "--use_peft", "--load_in_4bit").get("load_in_4bit")


def test_chat_template_keys(workspace, tmp_path):
    from distill_core.chat_template import ZEPHYR_CHAT_TEMPLATE

    named = _load(workspace, "recipes/smoke/sft.yaml", "--chat_template", "zephyr")
    assert named.parsed["chat_template"] == (ZEPHYR_CHAT_TEMPLATE, "'zephyr' (recipe key chat_template)")
    chatml = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    inline = _load(
        workspace,
        "recipes/smoke/dpo.yaml",
        "--chat_template",
        chatml,
        "--model_name_or_path",
        "runs/smoke/tiny-model",
        sections=DPO_SECTIONS,
        check=check_dpo,
    )
    assert inline.parsed["chat_template"][0] == chatml
    path = tmp_path / "chatml.jinja"
    path.write_text(chatml)
    from_file = _load(workspace, "recipes/smoke/sft.yaml", "--chat_template_path", str(path))
    assert from_file.parsed["chat_template"] == (chatml, f"{path} (recipe key chat_template_path)")

    for overrides, message in [
        (["--chat_template", "{% for m in messages %}{{ m['content'] }"], "chat template does not render"),
        (["--chat_template", "chatml"], r"neither a template name \(zephyr\) nor Jinja text"),
        (["--chat_template_path", str(tmp_path / "missing.jinja")], "missing.jinja' does not exist"),
        (
            ["--chat_template", "zephyr", "--chat_template_path", str(path)],
            "set chat_template or chat_template_path, not both",
        ),
    ]:
        with pytest.raises(RecipeError, match=message) as err:
            _load(workspace, "recipes/smoke/sft.yaml", *overrides)
        assert str(err.value).startswith("recipes/smoke/sft.yaml") and "\n" not in str(err.value)


def test_pinned_template_wins_over_the_tokenizers_own(smoke_assets, caplog):
    import logging

    from transformers import AutoTokenizer

    from distill_core.chat_template import ZEPHYR_CHAT_TEMPLATE, prepare_tokenizer

    tok = AutoTokenizer.from_pretrained(str(smoke_assets / "runs/smoke/tiny-model"))
    tok.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    with caplog.at_level(logging.INFO, logger="distill_core.chat_template"):
        prepare_tokenizer(tok, pinned=(ZEPHYR_CHAT_TEMPLATE, "'zephyr' (recipe key chat_template)"))
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == "<s><|user|>\nhi</s>\n"
    assert "chat template: 'zephyr' (recipe key chat_template), sha256" in caplog.text


def test_max_prompt_length_must_leave_room_for_answers(workspace):
    with pytest.raises(RecipeError, match="max_prompt_length 256 must be above 0 and below max_length 256"):
        _load(
            workspace,
            "recipes/smoke/dpo.yaml",
            "--max_prompt_length",
            "256",
            *TINY,
            sections=DPO_SECTIONS,
            check=check_dpo,
        )
    assert (
        _load(
            workspace,
            "recipes/smoke/dpo.yaml",
            "--max_prompt_length",
            "128",
            *TINY,
            sections=DPO_SECTIONS,
            check=check_dpo,
        ).get("max_prompt_length")
        == 128
    )
