"""Bad input gets one line on stderr that names the file, the field and the fix, and a non-zero exit."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import run_script, script


def assert_one_line_error(res, *fragments):
    assert res.returncode == 2, res.output[-2000:]
    assert "Traceback" not in res.output, res.output[-2000:]
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, res.stderr[-2000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def _recipe(workspace, name, text):
    path = workspace / name
    path.write_text(text)
    return name


def _smoke_with(workspace, stage, replace=None, append=""):
    text = (workspace / "recipes" / "smoke" / f"{stage}.yaml").read_text()
    for old, new in (replace or {}).items():
        assert old in text
        text = text.replace(old, new)
    return _recipe(workspace, f"bad-{stage}.yaml", text + append)


def test_unknown_key(workspace):
    name = _smoke_with(workspace, "sft", append="learning_rat: 1.0e-4\n")
    res = run_script([sys.executable, script("run_sft.py"), name], cwd=workspace)
    assert_one_line_error(res, name, "'learning_rat'", "did you mean 'learning_rate'")


def test_unknown_override(workspace):
    res = run_script(
        [sys.executable, script("run_sft.py"), "recipes/smoke/sft.yaml", "--num_epochs", "2"], cwd=workspace
    )
    assert_one_line_error(res, "--num_epochs", "recipes/smoke/sft.yaml", "did you mean 'num_train_epochs'")


def test_wrong_type(workspace):
    name = _smoke_with(workspace, "sft", replace={"num_train_epochs: 3": "num_train_epochs: many"})
    res = run_script([sys.executable, script("run_sft.py"), name], cwd=workspace)
    assert_one_line_error(res, name, "'num_train_epochs' expects float", "'many'")


@pytest.mark.parametrize(
    "stage,key,hint",
    [
        ("dpo", "max_completion_length: 512", "max_length"),
        ("sft", "max_prompt_length: 512", "a DPO key here"),
        ("sft", "max_seq_length: 2048", "renamed to 'max_length'"),
    ],
)
def test_removed_trl_key(workspace, stage, key, hint):
    name = _smoke_with(workspace, stage, append=key + "\n")
    res = run_script([sys.executable, script(f"run_{stage}.py"), name], cwd=workspace)
    assert_one_line_error(res, name, f"'{key.split(':')[0]}'", hint)


def test_missing_dataset_file(workspace):
    name = _smoke_with(workspace, "sft", replace={"id: runs/smoke/data/sft": "id: runs/smoke/data/nowhere.jsonl"})
    res = run_script([sys.executable, script("run_sft.py"), name], cwd=workspace)
    assert_one_line_error(
        res, name, "dataset_mixture.datasets[0].id", "runs/smoke/data/nowhere.jsonl", "does not exist"
    )


def test_missing_recipe_and_bad_yaml(workspace):
    res = run_script([sys.executable, script("run_dpo.py"), "recipes/smoke/nope.yaml"], cwd=workspace)
    assert_one_line_error(res, "recipes/smoke/nope.yaml", "not found")
    name = _recipe(workspace, "broken.yaml", "model_name_or_path: [unclosed\n")
    res = run_script([sys.executable, script("run_dpo.py"), name], cwd=workspace)
    assert_one_line_error(res, name, "line", "fix the YAML syntax")


def _jsonl(workspace, name, rows):
    path = workspace / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return name


def test_sft_dataset_without_needed_columns(workspace):
    data = _jsonl(workspace, "qa.jsonl", [{"question": "hi", "answer": "yo"}] * 4)
    name = _smoke_with(
        workspace,
        "sft",
        replace={
            "id: runs/smoke/data/sft": f"id: {data}",
            "      test_split: test\n": "",
            "columns: [messages]": "weight: 1.0",
        },
    )
    res = run_script([sys.executable, script("run_sft.py"), name], cwd=workspace)
    assert_one_line_error(res, name, "qa.jsonl", "['answer', 'question']", "messages or prompt+completion or text")


def test_dpo_dataset_without_rejected_column(workspace):
    data = _jsonl(
        workspace,
        "half.jsonl",
        [{"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "yo"}]}] * 4,
    )
    name = _smoke_with(
        workspace,
        "dpo",
        replace={
            "id: runs/smoke/data/prefs": f"id: {data}",
            "      test_split: test\n": "",
            "columns: [prompt, chosen, rejected]": "weight: 1.0",
            "model_name_or_path: runs/smoke/sft": "model_name_or_path: runs/smoke/tiny-model",
        },
    )
    res = run_script([sys.executable, script("run_dpo.py"), name], cwd=workspace)
    assert_one_line_error(res, name, "half.jsonl", "prompt+chosen+rejected")


def test_messages_that_are_not_role_content_dicts(workspace):
    data = _jsonl(workspace, "flat.jsonl", [{"messages": ["hi", "yo"]}] * 4)
    name = _smoke_with(
        workspace, "sft", replace={"id: runs/smoke/data/sft": f"id: {data}", "      test_split: test\n": ""}
    )
    res = run_script([sys.executable, script("run_sft.py"), name], cwd=workspace)
    assert_one_line_error(res, name, "flat.jsonl", "row 0", "is neither text nor a list of {role, content} messages")


def test_bad_recipe_under_a_two_process_launch_is_reported_once(workspace):
    import os

    name = _smoke_with(workspace, "sft", append="max_seq_length: 2048\n")
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    res = run_script(
        [
            accelerate,
            "launch",
            "--config_file",
            "recipes/accelerate/zero3_cpu.yaml",
            "--main_process_port",
            "29533",
            script("run_sft.py"),
            name,
        ],
        cwd=workspace,
    )
    assert res.returncode != 0
    ours = [line for line in res.output.splitlines() if line.startswith("error: ")]
    assert len(ours) == 1 and "'max_seq_length'" in ours[0] and name in ours[0]


def test_every_bad_key_of_a_pasted_recipe_is_reported_in_one_run(workspace):
    name = _smoke_with(
        workspace,
        "sft",
        append="preprocessing_num_workers: 12\ntorch_dtype: bfloat16\n"
        "dataset_mixer: {HuggingFaceH4/ultrachat_200k: 1.0}\nlearning_rat: 1.0e-4\n",
    )
    res = run_script([sys.executable, script("run_sft.py"), name, "--max_seq_length", "512"], cwd=workspace)
    assert_one_line_error(
        res,
        f"{name}: 5 keys to fix",
        "write dataset_num_proc: 12",
        "write dtype: bfloat16",
        "'dataset_mixer'",
        "did you mean 'learning_rate'",
        "command line --max_seq_length",
        "write --max_length 512",
    )


@pytest.mark.parametrize(
    "name",
    ["run_sft.py", "run_dpo.py", "run_self_instruct.py", "run_dialogues.py", "run_completions.py", "run_judge.py"],
)
def test_recipe_given_as_trl_config_flag_anywhere(workspace, name):
    stage = name[len("run_") : -len(".py")]
    res = run_script(
        [sys.executable, script(name), "--learning_rat", "1", f"--config=recipes/smoke/{stage}.yaml"], cwd=workspace
    )
    assert_one_line_error(res, f"recipes/smoke/{stage}.yaml", "'learning_rat'")


def test_global_batch_takes_the_recipe_as_config_flag(workspace):
    res = run_script(
        [
            sys.executable,
            script("global_batch.py"),
            "sft",
            "--world-size",
            "4",
            "--config",
            "recipes/smoke/sft.yaml",
            "--gradient_accumulation_steps",
            "3",
        ],
        cwd=workspace,
    )
    assert res.returncode == 0, res.output[-2000:]
    assert (
        "recipes/smoke/sft.yaml: effective global batch 48 = 4 per device x 3 gradient accumulation x 4" in res.stdout
    )


@pytest.mark.parametrize(
    "argv,fragments",
    [
        ([], ["the following arguments are required: stage", "usage: global_batch.py"]),
        (["sft"], ["missing the recipe path"]),
        (["ppo", "recipes/smoke/sft.yaml"], ["unknown stage 'ppo'; use sft or dpo"]),
        (
            ["sft", "recipes/smoke/sft.yaml", "--world-size", "two"],
            ["--world-size", "whole number of processes", "'two'"],
        ),
        (["sft", "recipes/smoke/sft.yaml", "--world-size"], ["--world-size", "expected one argument"]),
        (["sft", "recipes/smoke/sft.yaml", "--world-size", "2", "--world", "3"], ["unknown key 'world'"]),
    ],
)
def test_global_batch_bad_arguments_get_one_line_errors(workspace, argv, fragments):
    res = run_script([sys.executable, script("global_batch.py"), *argv], cwd=workspace)
    assert_one_line_error(res, *fragments)


def test_push_to_hub_offline_fails_before_anything_loads_and_never_shows_the_token(workspace):
    secret = "hf_doNotPrintThis0123456789abcdef"
    res = run_script(
        [
            sys.executable,
            script("run_dpo.py"),
            "--config",
            "recipes/smoke/dpo.yaml",
            "--model_name_or_path",
            "runs/smoke/tiny-model",
            "--push_to_hub",
            "true",
        ],
        cwd=workspace,
        env={"HF_TOKEN": secret},
    )
    assert_one_line_error(
        res, "recipes/smoke/dpo.yaml", "push_to_hub: true needs the Hugging Face Hub", "HF_HUB_OFFLINE"
    )
    assert secret not in res.output
