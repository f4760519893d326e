"""Single-process dSFT (full, LoRA, QLoRA) and dDPO in each reference mode, through the real scripts."""

from __future__ import annotations

import json
import os
import re
import sys

import pytest
from conftest import run_script, script

LN2 = 0.6931


def logged(output: str, key: str) -> list[float]:
    """Values of one metric in the order the trainer logged them."""
    return [float(v) for v in re.findall(rf"'{re.escape(key)}': '([-0-9.e+]+)'", output)]


def tensors(path: str) -> dict:
    from safetensors.torch import load_file

    return load_file(os.path.join(path, "model.safetensors"))


def card_metadata(model_dir: str) -> dict:
    from huggingface_hub import ModelCard

    return ModelCard.load(os.path.join(model_dir, "README.md")).data.to_dict()


def assert_weights_changed(before_dir: str, after_dir: str) -> None:
    before, after = tensors(before_dir), tensors(after_dir)
    assert before.keys() == after.keys()
    changed = [k for k in before if not (before[k].float() - after[k].float()).abs().max().item() == 0]
    assert len(changed) >= len(before) // 2, f"only {len(changed)}/{len(before)} tensors changed"


def test_sft_full_single_process(workspace):
    out = "runs/t-sft"
    res = run_script(
        [
            sys.executable,
            script("run_sft.py"),
            "recipes/smoke/sft.yaml",
            "--output_dir",
            out,
            "--max_steps",
            "6",
            "--logging_steps",
            "1",
            "--eval_strategy",
            "no",
            "--report_to",
            "[tensorboard, wandb]",
        ],
        cwd=workspace,
        env={"WANDB_MODE": "offline", "WANDB_DIR": str(workspace), "WANDB_SILENT": "true"},
    )
    assert res.returncode == 0, res.output[-3000:]
    assert "formatted training sample 0:\n<s><|" in res.output, "a fully formatted sample is logged before training"
    assert (
        "world_size=1 per_device_train_batch_size=4 gradient_accumulation_steps=2 effective_global_batch=8 "
        "(= 4 x 2 x 1) precision=fp32 attn_implementation=sdpa"
    ) in res.output
    losses = logged(res.output, "loss")
    assert len(losses) == 6 and losses[-1] < losses[0], losses

    path = os.path.join(workspace, out)
    from transformers import AutoModelForCausalLM, GenerationConfig

    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.model_type == "mistral"
    assert_weights_changed(os.path.join(workspace, "runs/smoke/tiny-model"), path)
    gen = GenerationConfig.from_pretrained(path)
    assert gen.eos_token_id == 2 and gen.pad_token_id not in (None, 2)
    card = open(os.path.join(path, "README.md")).read()
    assert "effective global batch size: **8** = 4 per device x 2 gradient accumulation x 1 processes" in card
    assert "recipes/smoke/sft.yaml" in card and "runs/smoke/data/sft" in card
    assert os.path.exists(os.path.join(path, "recipe.yaml"))
    assert os.path.getsize(os.path.join(path, "training_curves.png")) > 10_000
    assert "![training curves](training_curves.png)" in card
    assert card_metadata(path) == {
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["trl", "sft", "dsft", "distillation"],
    }, "a local base and data: no hub ids"
    events = [
        f for _, _, files in os.walk(os.path.join(path, "runs")) for f in files if f.startswith("events.out.tfevents")
    ]
    assert events, "report_to: tensorboard writes event files"
    offline_runs = [d for d in os.listdir(os.path.join(workspace, "wandb")) if d.startswith("offline-run-")]
    assert offline_runs, "wandb in offline mode records the run locally"


def test_sft_lora_saves_an_adapter(workspace):
    out = "runs/t-lora"
    res = run_script(
        [
            sys.executable,
            script("run_sft.py"),
            "recipes/smoke/sft.yaml",
            "--output_dir",
            out,
            "--max_steps",
            "3",
            "--eval_strategy",
            "no",
            "--use_peft",
            "--lora_r",
            "8",
            "--lora_alpha",
            "16",
            "--lora_target_modules",
            "[q_proj, v_proj]",
        ],
        cwd=workspace,
    )
    assert res.returncode == 0, res.output[-3000:]
    path = os.path.join(workspace, out)
    config = json.load(open(os.path.join(path, "adapter_config.json")))
    assert config["r"] == 8 and set(config["target_modules"]) == {"q_proj", "v_proj"}
    assert "LoRA r=8" in open(os.path.join(path, "README.md")).read()
    assert card_metadata(path)["library_name"] == "peft"


def test_sft_qlora_4bit(workspace):
    out = "runs/t-qlora"
    res = run_script(
        [
            sys.executable,
            script("run_sft.py"),
            "recipes/smoke/sft.yaml",
            "--output_dir",
            out,
            "--max_steps",
            "3",
            "--eval_strategy",
            "no",
            "--use_peft",
            "--load_in_4bit",
            "--lora_target_modules",
            "[q_proj, k_proj, v_proj, o_proj]",
        ],
        cwd=workspace,
    )
    assert res.returncode == 0, res.output[-3000:]
    path = os.path.join(workspace, out)
    assert os.path.exists(os.path.join(path, "adapter_model.safetensors"))
    assert "on a 4-bit base (QLoRA)" in open(os.path.join(path, "README.md")).read()


@pytest.mark.parametrize(
    "mode,loss_type,first_loss,extra",
    [
        ("model", "sigmoid", LN2, []),
        ("precomputed", "sigmoid", LN2, []),
        # IPO at policy == reference: (0 - 1/(2*beta))^2 = 25 with beta 0.1, which also proves loss_type is honoured
        ("adapter", "ipo", 25.0, ["--use_peft", "--lora_target_modules", "[q_proj, v_proj]"]),
    ],
)
def test_dpo_reference_modes(workspace, mode, loss_type, first_loss, extra):
    """At the first step the policy equals the starting model, so a correct reference gives the textbook loss."""
    out = f"runs/t-dpo-{mode}"
    res = run_script(
        [
            sys.executable,
            script("run_dpo.py"),
            "recipes/smoke/dpo.yaml",
            "--model_name_or_path",
            "runs/smoke/tiny-model",
            "--output_dir",
            out,
            "--ref_mode",
            mode,
            "--loss_type",
            f"[{loss_type}]",
            "--max_steps",
            "4",
            "--logging_steps",
            "1",
            "--eval_strategy",
            "no",
            *extra,
        ],
        cwd=workspace,
    )
    assert res.returncode == 0, res.output[-3000:]
    losses = logged(res.output, "loss")
    assert len(losses) == 4
    assert losses[0] == pytest.approx(first_loss, rel=2e-3), losses
    card = open(os.path.join(workspace, out, "README.md")).read()
    expected = {
        "model": "reference: frozen copy of runs/smoke/tiny-model",
        "precomputed": "reference: log-probs precomputed by the starting model",
        "adapter": "reference: the base with the LoRA adapter disabled",
    }[mode]
    assert expected in card and f"loss_type: {loss_type}" in card
    if mode != "adapter":
        assert_weights_changed(os.path.join(workspace, "runs/smoke/tiny-model"), os.path.join(workspace, out))


def test_ctrl_c_then_rerun_resumes_from_the_last_checkpoint(workspace):
    import signal
    import subprocess
    import time

    from conftest import OFFLINE_ENV, REPO

    out = "runs/t-resume"
    cmd = [
        sys.executable,
        script("run_sft.py"),
        "recipes/smoke/sft.yaml",
        "--output_dir",
        out,
        "--max_steps",
        "120",
        "--save_strategy",
        "steps",
        "--save_steps",
        "5",
        "--save_total_limit",
        "2",
        "--eval_strategy",
        "no",
        "--logging_steps",
        "200",
    ]
    env = {**os.environ, **OFFLINE_ENV, "PYTHONPATH": REPO}
    proc = subprocess.Popen(cmd, cwd=workspace, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first_ckpt = os.path.join(workspace, out, "checkpoint-10", "trainer_state.json")
    deadline = time.time() + 120
    while not os.path.exists(first_ckpt) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted: partial outputs are kept; rerun the same command to resume" in err
    assert not os.path.exists(os.path.join(workspace, out, "model.safetensors"))

    res = run_script(cmd, cwd=workspace)
    assert res.returncode == 0, res.output[-3000:]
    match = re.search(r"resuming from (\S+checkpoint-(\d+))", res.output)
    assert match and int(match.group(2)) >= 10, res.output[-3000:]
    state = json.load(open(os.path.join(workspace, out, "checkpoint-120", "trainer_state.json")))
    assert state["global_step"] == 120
    assert os.path.exists(os.path.join(workspace, out, "model.safetensors"))


def test_lora_adapter_merges_into_a_model_dpo_can_start_from(workspace):
    out = "runs/t-lora-m"
    res = run_script(
        [
            sys.executable,
            script("run_sft.py"),
            "recipes/smoke/sft.yaml",
            "--output_dir",
            out,
            "--max_steps",
            "3",
            "--eval_strategy",
            "no",
            "--use_peft",
            "--lora_target_modules",
            "[q_proj, v_proj]",
            "--learning_rate",
            "0.05",
        ],
        cwd=workspace,
    )
    assert res.returncode == 0, res.output[-3000:]
    dpo = [
        sys.executable,
        script("run_dpo.py"),
        "recipes/smoke/dpo.yaml",
        "--output_dir",
        "runs/t-lora-dpo",
        "--max_steps",
        "2",
        "--eval_strategy",
        "no",
    ]
    refused = run_script(dpo + ["--model_name_or_path", out], cwd=workspace)
    assert refused.returncode == 2 and f"python scripts/merge_adapter.py {out} {out}-merged" in refused.stderr
    merged = run_script([sys.executable, script("merge_adapter.py"), out, f"{out}-merged"], cwd=workspace)
    assert merged.returncode == 0, merged.output[-3000:]
    tensors_base = tensors(os.path.join(workspace, "runs/smoke/tiny-model"))
    tensors_merged = tensors(os.path.join(workspace, f"{out}-merged"))
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not (tensors_base[q] == tensors_merged[q]).all(), "the adapter's update is in the merged weights"
    merged_card = card_metadata(os.path.join(workspace, f"{out}-merged"))
    assert merged_card["library_name"] == "transformers" and "merged-lora" in merged_card["tags"]
    assert "base_model" not in merged_card, "the local base is named in the body, not as a hub id"
    trained = run_script(dpo + ["--model_name_or_path", f"{out}-merged"], cwd=workspace)
    assert trained.returncode == 0, trained.output[-3000:]
