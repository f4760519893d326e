"""The Zephyr recipes as users run them, on local copies of UltraChat 200k and UltraFeedback binarized in their
published hub layout and schemas. Only the model path, sizes and step counts are overridden."""

from __future__ import annotations

import os
import re
import sys

import pytest
from conftest import run_script, script
from test_train import LN2, logged
from zephyr_data import ULTRACHAT, ULTRAFEEDBACK, build_zephyr_datasets

ACCELERATE = os.path.join(os.path.dirname(sys.executable), "accelerate")
SIZES = [
    "--model_name_or_path",
    "runs/smoke/tiny-model",
    "--max_length",
    "96",
    "--per_device_train_batch_size",
    "2",
    "--per_device_eval_batch_size",
    "2",
]


@pytest.fixture(scope="module")
def zephyr_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    build_zephyr_datasets(str(root))
    return root


@pytest.fixture
def zephyr_workspace(workspace, zephyr_data):
    """The workspace with the datasets where their hub ids resolve (a local directory named like the repo)."""
    os.symlink(zephyr_data / "HuggingFaceH4", workspace / "HuggingFaceH4")
    return workspace


def test_zephyr_sft_recipe_on_ultrachat(zephyr_workspace):
    res = run_script(
        [
            sys.executable,
            script("run_sft.py"),
            "recipes/zephyr-7b-beta/sft.yaml",
            *SIZES,
            "--max_steps",
            "2",
            "--logging_steps",
            "1",
        ],
        cwd=zephyr_workspace,
    )
    assert res.returncode == 0, res.output[-4000:]
    assert "chat template: 'zephyr' (recipe key chat_template)" in res.output
    packed = re.search(
        r"packing train \(bfd_split, 96 tokens per sequence\): (\d+) tokens from 48 examples into (\d+) "
        r"sequences; (\d+) tokens dropped",
        res.output,
    )
    assert packed, res.output[-3000:]
    tokens, sequences, dropped = map(int, packed.groups())
    assert dropped == 0 and sequences > 48, (
        "long dialogues continue in further sequences instead of losing their tails"
    )
    card = open(os.path.join(zephyr_workspace, "runs/zephyr-7b-sft-full/README.md")).read()
    assert "packing tokens dropped: 0" in card and "HuggingFaceH4/ultrachat_200k [train_sft]" in card


@pytest.mark.parametrize("strategy,dropped,sequences", [("bfd", 14, 2), ("bfd_split", 0, 3)])
def test_packing_reports_the_tokens_it_cuts(strategy, dropped, sequences, caplog):
    import logging

    from datasets import Dataset
    from trl.trainer import sft_trainer

    from training.sft import measure_packing

    examples = Dataset.from_dict(
        {"input_ids": [[1] * 10, [2] * 30, [3] * 5], "attention_mask": [[1] * 10, [1] * 30, [1] * 5]}
    )
    stats: dict = {}
    with caplog.at_level(logging.INFO, logger="training.sft"), measure_packing(stats):
        sft_trainer.pack_dataset(examples, 16, strategy)
    assert sft_trainer.pack_dataset.__name__ == "pack_dataset", "TRL's function is restored"
    assert stats["train"]["before"] == 45 and stats["train"]["dropped"] == dropped, stats
    assert stats["train"]["sequences"] == sequences
    assert (f"packing_strategy bfd cut {dropped} tokens" in caplog.text) == (strategy == "bfd")


def test_zephyr_dpo_recipe_on_ultrafeedback_under_the_zero3_config(zephyr_workspace):
    """recipes/accelerate/zero3.yaml itself (2 processes here), the recipe's own columns and prompt cap."""
    from test_zero3 import free_port

    res = run_script(
        [
            ACCELERATE,
            "launch",
            "--config_file",
            "recipes/accelerate/zero3.yaml",
            "--num_processes",
            "2",
            "--main_process_port",
            str(free_port()),
            script("run_dpo.py"),
            "recipes/zephyr-7b-beta/dpo.yaml",
            *SIZES,
            "--max_prompt_length",
            "48",
            "--max_steps",
            "2",
            "--logging_steps",
            "1",
            "--eval_strategy",
            "no",
        ],
        cwd=zephyr_workspace,
        timeout=900,
    )
    assert res.returncode == 0, res.output[-4000:]
    assert (
        "world_size=2 per_device_train_batch_size=2 gradient_accumulation_steps=2 effective_global_batch=8"
        in res.output
    )
    assert logged(res.output, "loss")[0] == pytest.approx(LN2, rel=2e-3)
    cut = re.search(r"\[rank0\] INFO training.dpo: max_prompt_length 48: cut (\d+) of 48 train prompts", res.output)
    assert cut and int(cut.group(1)) > 0, "the long prompts of the fixture are cut, not dropped"
    sample = res.output.split("formatted training sample 0:")[1].split("--- rejected ---")[0]
    assert sample.count("<|user|>") == 1, "the user turn appears once: the shared prefix is the prompt"
    # each node's main process loads the data before the other ranks start
    first_rank1 = res.output.index("[rank1] INFO training.data:")
    assert res.output.index("[rank0] INFO training.data: training examples: 48") < first_rank1


def _lora_a_moved(before: str, after: str) -> tuple[float, str]:
    from safetensors.torch import load_file

    a, b = (
        load_file(os.path.join(before, "adapter_model.safetensors")),
        load_file(os.path.join(after, "adapter_model.safetensors")),
    )
    keys = [k for k in a if "lora_A" in k]
    changed = sum((a[k] != b[k]).sum().item() for k in keys) / sum(a[k].numel() for k in keys)
    return changed, str(a[keys[0]].dtype)


def test_zephyr_dpo_qlora_recipe_moves_lora_a_at_its_learning_rate(zephyr_workspace):
    """lr 5e-6 (the recipe's): adapters held in bf16 would leave almost every lora_A entry unchanged."""
    out = "runs/zephyr-dpo-qlora"
    res = run_script(
        [
            sys.executable,
            script("run_dpo.py"),
            "recipes/zephyr-7b-beta/dpo-qlora.yaml",
            *SIZES,
            "--max_prompt_length",
            "48",
            "--gradient_accumulation_steps",
            "1",
            "--max_steps",
            "3",
            "--save_steps",
            "1",
            "--save_total_limit",
            "3",
            "--eval_strategy",
            "no",
            "--output_dir",
            out,
        ],
        cwd=zephyr_workspace,
    )
    assert res.returncode == 0, res.output[-4000:]
    # lora_B starts at zero, so lora_A first gets a gradient at step 2: compare steps 2 and 3
    changed, dtype = _lora_a_moved(
        os.path.join(zephyr_workspace, out, "checkpoint-2"), os.path.join(zephyr_workspace, out, "checkpoint-3")
    )
    assert dtype == "torch.float32"
    assert changed > 0.9, f"only {changed:.1%} of lora_A entries moved"
    assert "kept 28 trainable adapter tensors in fp32" in res.output


def test_zephyr_sft_qlora_recipe(zephyr_workspace):
    res = run_script(
        [
            sys.executable,
            script("run_sft.py"),
            "recipes/zephyr-7b-beta/sft-qlora.yaml",
            *SIZES,
            "--gradient_accumulation_steps",
            "1",
            "--max_steps",
            "2",
            "--eval_strategy",
            "no",
        ],
        cwd=zephyr_workspace,
    )
    assert res.returncode == 0, res.output[-4000:]
    assert "kept 28 trainable adapter tensors in fp32" in res.output
    assert os.path.exists(os.path.join(zephyr_workspace, "runs/zephyr-7b-sft-qlora/adapter_model.safetensors"))


# ---------------------------------------------------------------------------------------------------------------------
# The preference loader on the published UltraFeedback shape


def _load(zephyr_data, columns, split="train_prefs"):
    from training.columns import PREFERENCE_LAYOUTS
    from training.data import load_mixture
    from training.mixture import parse_mixture

    raw = {"datasets": [{"id": str(zephyr_data / ULTRAFEEDBACK), "split": split, "columns": columns}]}
    train, _ = load_mixture(parse_mixture(raw, "dpo.yaml"), PREFERENCE_LAYOUTS, "DPO")
    return train


def test_ultrafeedback_shared_prefix_becomes_the_prompt(zephyr_data):
    implicit = _load(zephyr_data, ["chosen", "rejected"])
    with_text_prompt = _load(zephyr_data, ["prompt", "chosen", "rejected"])  # the recipes' old selection
    assert implicit.column_names == ["prompt", "chosen", "rejected"] == with_text_prompt.column_names
    assert implicit.to_list() == with_text_prompt.to_list()
    for row in implicit:
        assert row["prompt"][-1]["role"] == "user" and len(row["prompt"]) == 1
        assert [m["role"] for m in row["chosen"]] == ["assistant"] == [m["role"] for m in row["rejected"]]
        assert row["chosen"] != row["rejected"]


def test_render_of_ultrafeedback_rows_has_one_user_turn(zephyr_data, smoke_assets):
    from transformers import AutoTokenizer

    from training.setup import render_preference

    tok = AutoTokenizer.from_pretrained(str(smoke_assets / "runs/smoke/tiny-model"))
    text = render_preference(tok, _load(zephyr_data, ["prompt", "chosen", "rejected"])[0])
    assert text.count("<|user|>") == 2 and text.count("<|assistant|>") == 2  # once in chosen, once in rejected


@pytest.mark.parametrize(
    "rows,message",
    [
        (
            [{"prompt": [{"role": "user", "content": "q"}], "chosen": "a", "rejected": "b"}],
            "message-list 'prompt' but text answers",
        ),
        (
            [{"prompt": "q", "chosen": "a", "rejected": [{"role": "assistant", "content": "b"}]}],
            "text 'chosen' but conversation 'rejected'",
        ),
        (
            [{"prompt": "q", "chosen": 3, "rejected": "b"}],
            "column 'chosen' is neither text nor a list of {role, content}",
        ),
    ],
)
def test_preference_column_shapes_are_checked(tmp_path, rows, message):
    import json

    from distill_core.errors import DataError
    from training.columns import PREFERENCE_LAYOUTS
    from training.data import load_mixture
    from training.mixture import parse_mixture

    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=re.escape(message)) as err:
        load_mixture(parse_mixture({"datasets": [{"id": str(path)}]}, "r.yaml"), PREFERENCE_LAYOUTS, "DPO")
    assert "\n" not in str(err.value)


def test_messages_as_text_is_refused_for_sft(tmp_path):
    import json

    from distill_core.errors import DataError
    from training.columns import SFT_LAYOUTS
    from training.data import load_mixture
    from training.mixture import parse_mixture

    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"messages": "user: hi"}) + "\n")
    with pytest.raises(DataError, match="column 'messages' must be a list of {role, content} messages"):
        load_mixture(parse_mixture({"datasets": [{"id": str(path)}]}, "r.yaml"), SFT_LAYOUTS, "SFT")


def test_ultrachat_extra_columns_never_reach_trl(zephyr_data):
    from training.columns import SFT_LAYOUTS
    from training.data import load_mixture
    from training.mixture import parse_mixture

    raw = {"datasets": [{"id": str(zephyr_data / ULTRACHAT), "split": "train_sft", "test_split": "test_sft"}]}
    train, test = load_mixture(parse_mixture(raw, "sft.yaml"), SFT_LAYOUTS, "SFT")
    assert train.column_names == ["messages"] == test.column_names, (
        "a string 'prompt' beside messages would confuse TRL"
    )
