"""Real `accelerate launch` of 2 processes with DeepSpeed ZeRO-3 (gloo, fp32): dSFT, then dDPO from its output."""

from __future__ import annotations

import os
import socket
import sys

import pytest
from conftest import run_script, script
from test_train import assert_weights_changed, logged

pytestmark = pytest.mark.slow

ACCELERATE = os.path.join(os.path.dirname(sys.executable), "accelerate")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(workspace, stage: str, *overrides: str):
    return run_script(
        [
            ACCELERATE,
            "launch",
            "--config_file",
            "recipes/accelerate/zero3_cpu.yaml",
            "--main_process_port",
            str(free_port()),
            script(f"run_{stage}.py"),
            f"recipes/smoke/{stage}.yaml",
            *overrides,
        ],
        cwd=workspace,
        timeout=900,
    )


ZERO3_LINE = (
    "world_size=2 per_device_train_batch_size=4 gradient_accumulation_steps=2 effective_global_batch=16 "
    "(= 4 x 2 x 2) precision=fp32 attn_implementation=sdpa backend=gloo deepspeed=yes"
)


def test_zero3_sft_then_dpo(workspace):
    from transformers import AutoModelForCausalLM

    sft = launch(workspace, "sft", "--max_steps", "4", "--logging_steps", "1")
    assert sft.returncode == 0, sft.output[-4000:]
    op = os.path.join(os.environ["TORCH_EXTENSIONS_DIR"], "deepspeed_shm_comm", "deepspeed_shm_comm.so")
    built_at = os.stat(op).st_mtime_ns  # DeepSpeed's CPU comm op, compiled at most once per checkout
    assert sft.output.count(ZERO3_LINE) == 1, "one batch line, from rank 0"
    sft_dir = os.path.join(workspace, "runs/smoke/sft")
    model = AutoModelForCausalLM.from_pretrained(sft_dir)  # gathered full weights, not ZeRO shards
    assert sum(p.numel() for p in model.parameters()) > 100_000
    assert_weights_changed(os.path.join(workspace, "runs/smoke/tiny-model"), sft_dir)
    assert (
        "effective global batch size: **16** = 4 per device x 2 gradient accumulation x 2 processes"
        in open(os.path.join(sft_dir, "README.md")).read()
    )

    dpo = launch(workspace, "dpo", "--max_steps", "4", "--logging_steps", "1")  # starts from runs/smoke/sft
    assert dpo.returncode == 0, dpo.output[-4000:]
    assert os.stat(op).st_mtime_ns == built_at, "the second launch reused the compiled op instead of rebuilding it"
    assert ZERO3_LINE in dpo.output
    assert logged(dpo.output, "loss")[0] == pytest.approx(0.6931, rel=2e-3), "the frozen reference is the dSFT model"
    dpo_dir = os.path.join(workspace, "runs/smoke/dpo")
    AutoModelForCausalLM.from_pretrained(dpo_dir)
    assert_weights_changed(sft_dir, dpo_dir)


def test_zero3_dpo_with_precomputed_reference(workspace):
    res = launch(
        workspace,
        "dpo",
        "--model_name_or_path",
        "runs/smoke/tiny-model",
        "--ref_mode",
        "precomputed",
        "--output_dir",
        "runs/z3-pre",
        "--max_steps",
        "3",
        "--logging_steps",
        "1",
    )
    assert res.returncode == 0, res.output[-4000:]
    assert logged(res.output, "loss")[0] == pytest.approx(0.6931, rel=2e-3)
    assert_weights_changed(os.path.join(workspace, "runs/smoke/tiny-model"), os.path.join(workspace, "runs/z3-pre"))
