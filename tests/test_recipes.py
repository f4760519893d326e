"""Every recipe parses through the real loader; the strict rules hold; published values are in place."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

from distill_core.errors import RecipeError
from distill_core.recipe import load_recipe, parse_overrides
from training.arguments import DPO_SECTIONS, SFT_SECTIONS, check_dpo, check_sft

GENERATION_STAGES = ("self_instruct", "dialogues", "completions", "judge")
ALL_RECIPES = sorted(glob.glob(os.path.join(REPO, "recipes", "**", "*.yaml"), recursive=True))
TRAINING_RECIPES = [
    p
    for p in ALL_RECIPES
    if os.path.basename(os.path.dirname(p)) not in ("accelerate", "teachers", "tasks")
    and not os.path.basename(p).startswith(GENERATION_STAGES + ("pipeline", "eval", "merge", "decontaminate"))
]
PIPELINES = [p for p in ALL_RECIPES if os.path.basename(p).startswith("pipeline")]
GENERATION_RECIPES = [p for p in ALL_RECIPES if os.path.basename(p).startswith(GENERATION_STAGES)]
TEACHERS = [p for p in ALL_RECIPES if os.path.basename(os.path.dirname(p)) == "teachers"]
ACCELERATE_CONFIGS = sorted(glob.glob(os.path.join(REPO, "recipes", "accelerate", "*.yaml")))


def _load(path, argv=()):
    is_dpo = "dpo" in os.path.basename(path)
    return load_recipe(path, list(argv), DPO_SECTIONS if is_dpo else SFT_SECTIONS, check_dpo if is_dpo else check_sft)


def test_there_are_recipes_to_check():
    names = {os.path.relpath(p, os.path.join(REPO, "recipes")) for p in TRAINING_RECIPES}
    assert {
        "zephyr-7b-beta/sft.yaml",
        "zephyr-7b-beta/dpo.yaml",
        "zephyr-7b-beta/sft-qlora.yaml",
        "zephyr-7b-beta/dpo-qlora.yaml",
        "smoke/sft.yaml",
        "smoke/dpo.yaml",
    } <= names
    assert {"zero3.yaml", "zero3_offload.yaml", "ddp.yaml", "zero3_cpu.yaml"} <= {
        os.path.basename(p) for p in ACCELERATE_CONFIGS
    }


@pytest.mark.parametrize("path", TRAINING_RECIPES, ids=lambda p: os.path.relpath(p, REPO))
def test_training_recipe_parses_and_builds_trl_configs(path, workspace, monkeypatch):
    monkeypatch.chdir(workspace)  # smoke recipes name local paths relative to the working directory
    # smoke/dpo.yaml starts from smoke/sft.yaml's output, which this test does not train
    argv = (
        ["--model_name_or_path", "runs/smoke/tiny-model"] if path.endswith(os.path.join("smoke", "dpo.yaml")) else []
    )
    recipe = _load(path, argv)
    # Build the real TRL classes too (CPU: precision forced off as the runtime would), so __post_init__ checks run.
    recipe.build("model")
    training = recipe.build("training", bf16=False, fp16=False)
    assert training.output_dir == recipe.get("output_dir")


@pytest.mark.parametrize("path", GENERATION_RECIPES, ids=lambda p: os.path.relpath(p, REPO))
def test_generation_recipe_parses(path, workspace, monkeypatch):
    from conftest import SHARED_DATA

    from data_gen.dialogues import DialogueArguments, check_dialogues
    from data_gen.self_instruct import SelfInstructArguments, check_self_instruct
    from distill_core.recipe import Section

    monkeypatch.chdir(workspace)
    from data_gen.completions import CompletionArguments, check_completions
    from data_gen.judge import JudgeArguments, check_judge

    (workspace / "prompts.jsonl").write_text('{"prompt": "hello"}\n')  # an earlier stage's output in a real run
    name = os.path.basename(path)
    if name.startswith("self_instruct"):
        argv = ["--seed_tasks", os.path.join(SHARED_DATA, "self_instruct_seed_tasks.jsonl")]
        recipe = load_recipe(path, argv, [Section("data", SelfInstructArguments)], check_self_instruct)
    elif name.startswith("dialogues"):
        recipe = load_recipe(
            path, ["--prompts", "prompts.jsonl"], [Section("data", DialogueArguments)], check_dialogues
        )
    elif name.startswith("completions"):
        recipe = load_recipe(
            path, ["--prompts", "prompts.jsonl"], [Section("data", CompletionArguments)], check_completions
        )
        assert [m.name for m in recipe.parsed["models"]] == ["local"]
        recipe.build("data")
        return
    else:
        recipe = load_recipe(path, ["--pool", "prompts.jsonl"], [Section("data", JudgeArguments)], check_judge)
        assert recipe.get("mode") == "logprobs_local"
        recipe.build("data")
        return
    assert recipe.parsed["teacher"].name == "local"
    recipe.build("data")


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: os.path.relpath(p, REPO))
def test_pipeline_recipe_loads_with_every_stage_recipe(path, monkeypatch):
    from distill_core.pipeline import load_pipeline

    monkeypatch.chdir(REPO)
    pipeline = load_pipeline(path)
    generation = ["self_instruct", "dialogues", "decontaminate"]
    if "zephyr" in path:  # both training datasets are checked first, before any GPU time is spent
        generation = ["decontaminate_sft", "decontaminate_prefs"]
    students = ["sft_b", "merge"] if "smoke" in path else []
    preferences = ["completions", "judge"] if "smoke" in path else []
    assert list(pipeline.stages) == [*generation, "sft", *students, *preferences, "dpo", "eval"]
    assert len({s.fingerprint for s in pipeline.stages.values()}) == len(pipeline.stages)
    assert pipeline.stages["eval"].deps == (["dpo", "merge", "sft"] if "smoke" in path else ["dpo", "sft"])


@pytest.mark.parametrize("path", TEACHERS, ids=os.path.basename)
def test_teacher_overlay_loads(path):
    from data_gen.endpoints import load_teacher

    teacher = load_teacher(os.path.splitext(os.path.basename(path))[0], "test")
    assert teacher.endpoints or teacher.local_server
    assert "api_key" not in open(path).read().replace("api_key_env", "")


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=os.path.basename)
def test_accelerate_config_loads_and_points_at_a_deepspeed_json(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(path)
    assert config.use_cpu is False
    if config.distributed_type == "DEEPSPEED":
        ds_file = config.deepspeed_config["deepspeed_config_file"]
        with open(os.path.join(REPO, ds_file)) as f:
            ds = json.load(f)
        assert ds["gradient_accumulation_steps"] == "auto", "accumulation must come from the recipe only"
        assert ds["train_micro_batch_size_per_gpu"] == "auto"
        if ds["zero_optimization"]["stage"] == 3:
            assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


def test_ds_configs_exist_with_auto_values():
    for name in ("zero3.json", "zero3_offload.json", "zero2.json"):
        with open(os.path.join(REPO, "ds_configs", name)) as f:
            ds = json.load(f)
        assert ds["bf16"]["enabled"] == "auto" and ds["train_batch_size"] == "auto"
    with open(os.path.join(REPO, "ds_configs", "zero3_offload.json")) as f:
        assert json.load(f)["zero_optimization"]["offload_param"]["device"] == "cpu"


def _global_batch(recipe, gpus):
    return recipe.get("per_device_train_batch_size") * recipe.get("gradient_accumulation_steps") * gpus


def test_zephyr_recipes_carry_the_published_hyperparameters():
    sft = _load(os.path.join(REPO, "recipes/zephyr-7b-beta/sft.yaml"))
    assert sft.get("learning_rate") == 2e-5 and sft.get("lr_scheduler_type") == "cosine"
    assert sft.get("warmup_steps") == 0.1 and sft.get("num_train_epochs") == 1
    assert sft.get("max_length") == 2048 and sft.get("packing") is True and sft.get("weight_decay") == 0.0
    assert _global_batch(sft, 8) == 128
    dpo = _load(os.path.join(REPO, "recipes/zephyr-7b-beta/dpo.yaml"))
    assert dpo.get("beta") == 0.01 and dpo.get("learning_rate") == 5e-7 and dpo.get("max_length") == 1024
    assert dpo.get("loss_type") == ["sigmoid"] and _global_batch(dpo, 8) == 128
    sft_q = _load(os.path.join(REPO, "recipes/zephyr-7b-beta/sft-qlora.yaml"))
    assert (sft_q.get("lora_r"), sft_q.get("lora_alpha"), sft_q.get("lora_dropout")) == (16, 16, 0.05)
    assert sft_q.get("learning_rate") == 2e-4 and sft_q.get("load_in_4bit") is True
    assert set(sft_q.get("lora_target_modules")) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    dpo_q = _load(os.path.join(REPO, "recipes/zephyr-7b-beta/dpo-qlora.yaml"))
    assert (dpo_q.get("lora_r"), dpo_q.get("lora_alpha"), dpo_q.get("learning_rate")) == (128, 128, 5e-6)
    assert dpo_q.get("optim") == "paged_adamw_32bit" and dpo_q.get("ref_mode") == "adapter"


def test_zephyr_recipes_state_their_global_batch_in_comments():
    for name in ("sft", "dpo", "sft-qlora", "dpo-qlora"):
        path = os.path.join(REPO, f"recipes/zephyr-7b-beta/{name}.yaml")
        text = open(path).read()
        recipe = _load(path)
        stated = (
            f"Global batch = {recipe.get('per_device_train_batch_size')} per device x "
            f"{recipe.get('gradient_accumulation_steps')} gradient accumulation x 8 GPUs = {_global_batch(recipe, 8)}"
        )
        assert stated in text, f"{name}.yaml must state its global batch as '{stated}'"
        assert "Paper" in text or "paper" in text


# --- strictness (in-process; the subprocess versions live in test_bad_input.py) ---------------------------------


def _write(tmp_path, text, name="r.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


BASE = """model_name_or_path: some-org/some-model
output_dir: out
dataset_mixture:
  datasets:
    - id: some-org/some-data
"""


def test_unknown_key_names_key_file_and_closest_valid_key(tmp_path):
    path = _write(tmp_path, BASE + "learning_rat: 1.0e-4\n")
    with pytest.raises(RecipeError) as err:
        _load(path)
    msg = str(err.value)
    assert "'learning_rat'" in msg and path in msg and "did you mean 'learning_rate'" in msg


@pytest.mark.parametrize(
    "key,hint",
    [
        ("max_completion_length", "max_length"),
        ("max_seq_length", "max_length"),
        ("warmup_ratio", "warmup_steps"),
        ("torch_dtype", "dtype"),
    ],
)
def test_removed_keys_say_what_replaced_them(tmp_path, key, hint):
    path = _write(tmp_path, BASE + f"{key}: 512\n", name="dpo.yaml")
    with pytest.raises(RecipeError) as err:
        _load(path)
    msg = str(err.value)
    assert f"'{key}'" in msg and path in msg and hint in msg


def test_wrong_type_names_the_expected_type(tmp_path):
    path = _write(tmp_path, BASE + "num_train_epochs: three\n")
    with pytest.raises(RecipeError, match=r"'num_train_epochs' expects float, got 'three'"):
        _load(path)


def test_enum_typo_suggests_the_member(tmp_path):
    path = _write(tmp_path, BASE + "lr_scheduler_type: cosin\n")
    with pytest.raises(RecipeError, match="did you mean 'cosine'"):
        _load(path)


def test_command_line_overrides_are_typed_and_strict(tmp_path):
    path = _write(tmp_path, BASE + "learning_rate: 1.0e-4\n")
    recipe = _load(path, ["--learning_rate", "5e-7", "--packing", "--max_length=64"])
    assert recipe.get("learning_rate") == 5e-7 and recipe.get("packing") is True and recipe.get("max_length") == 64
    with pytest.raises(RecipeError, match="command line override --beta"):
        _load(path, ["--beta", "0.1"])  # beta is a DPO key, not an SFT one
    assert parse_overrides(["--loss_type", "[sigmoid, hinge]"]) == {"loss_type": ["sigmoid", "hinge"]}


def test_yaml_floats_without_a_dot_are_accepted(tmp_path):
    # YAML 1.1 reads 5e-7 as a string; the loader converts it for float fields
    path = _write(tmp_path, BASE + "learning_rate: 5e-7\n")
    assert _load(path).get("learning_rate") == 5e-7


def test_dpo_reference_rules(tmp_path):
    path = _write(tmp_path, BASE + "ref_mode: adapter\n", name="dpo.yaml")
    with pytest.raises(RecipeError, match="needs use_peft"):
        _load(path)
    path = _write(tmp_path, BASE + "precompute_ref_log_probs: true\n", name="dpo2.yaml")
    with pytest.raises(RecipeError, match="ref_mode: precomputed"):
        _load(path)


def test_mixture_rejects_test_split_used_for_training(tmp_path):
    path = _write(
        tmp_path,
        BASE.replace(
            "- id: some-org/some-data", "- id: some-org/some-data\n      split: test\n      test_split: test"
        ),
    )
    with pytest.raises(RecipeError, match="test data must never enter training"):
        _load(path)


def test_recipe_command_calls_run_with_the_validated_recipe_only(workspace, monkeypatch):
    from distill_core.cli import recipe_command

    monkeypatch.chdir(workspace)
    ran = []
    main = recipe_command("run_sft.py", "test", SFT_SECTIONS, check_sft, run=lambda recipe: ran.append(recipe))
    with pytest.raises(RecipeError, match="learning_rat"):
        main(["recipes/smoke/sft.yaml", "--learning_rat", "1"])
    assert ran == []
    assert main(["recipes/smoke/sft.yaml", "--learning_rate", "1e-3"]) == 0
    assert [(r.path, r.get("learning_rate")) for r in ran] == [("recipes/smoke/sft.yaml", 1e-3)]


RECIPE_SCRIPTS = [
    "run_dpo.py",
    "run_sft.py",
    "run_self_instruct.py",
    "run_dialogues.py",
    "run_completions.py",
    "run_judge.py",
]


def test_validation_and_help_import_no_torch(workspace):
    """Recipes are validated and --help answered before any heavy import (the 2 s budget)."""
    code = f"""
import os, runpy, sys
sys.path[:0] = [{REPO!r}, {os.path.join(REPO, "scripts")!r}]
for name in {RECIPE_SCRIPTS!r}:
    sys.argv = [name, '--help']
    try:
        runpy.run_path(os.path.join({os.path.join(REPO, "scripts")!r}, name), run_name='__main__')
    except SystemExit as e:
        assert e.code == 0, (name, e.code)
from distill_core.recipe import load_recipe
from training.arguments import SFT_SECTIONS, check_sft
load_recipe('recipes/smoke/sft.yaml', ['--learning_rate', '1e-3'], SFT_SECTIONS, check_sft)
print('HEAVY', [m for m in ('torch', 'transformers', 'trl.trainer.dpo_trainer', 'datasets') if m in sys.modules])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=workspace, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--beta" in out.stdout and "--ref_mode" in out.stdout and "--model_name_or_path" in out.stdout
    assert "HEAVY []" in out.stdout


# --- values TRL accepts by annotation but not at run time; hub pushes; all bad keys at once -------------------------


@pytest.mark.parametrize(
    "written,argv",
    [
        ("report_to: none\n", []),
        ("report_to: [tensorboard]\n", ["--report_to", "none"]),
        ("report_to: null\n", []),
        ("report_to: [none]\n", []),
    ],
)
def test_report_to_none_reaches_trl_as_no_integrations(tmp_path, written, argv):
    from transformers.integrations import get_reporting_integration_callbacks

    recipe = _load(_write(tmp_path, BASE + written), argv)
    assert recipe.get("report_to") == "none"
    training = recipe.build("training", bf16=False, fp16=False)
    assert training.report_to == [] and get_reporting_integration_callbacks(training.report_to) == []


def test_report_to_names_are_checked_against_the_installed_integrations(tmp_path):
    assert _load(_write(tmp_path, BASE + "report_to: tensorboard\n")).get("report_to") == ["tensorboard"]
    assert _load(_write(tmp_path, BASE + "report_to: all\n")).get("report_to") == "all"
    with pytest.raises(RecipeError, match=r"'wandbb' is not a reporting integration; did you mean 'wandb'\?"):
        _load(_write(tmp_path, BASE + "report_to: [tensorboard, wandbb]\n"))


HANDBOOK_SFT = """# as the alignment-handbook wrote its recipes
model_name_or_path: mistralai/Mistral-7B-v0.1
torch_dtype: bfloat16
use_flash_attention_2: true
dataset_mixer:
  HuggingFaceH4/ultrachat_200k: 1.0
dataset_splits: [train_sft, test_sft]
dataset_configs: [default]
preprocessing_num_workers: 12
truncation_side: left
auto_insert_empty_system_msg: true
max_seq_length: 2048
learning_rat: 2.0e-5
output_dir: data/zephyr-7b-sft-full
num_train_epochs: one
"""


def test_every_bad_key_is_reported_in_one_line(tmp_path):
    path = _write(tmp_path, HANDBOOK_SFT)
    with pytest.raises(RecipeError) as err:
        _load(path, ["--lerning_rate", "1e-5"])
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{path}: 13 keys to fix: ")
    for key in (
        "torch_dtype",
        "use_flash_attention_2",
        "dataset_mixer",
        "dataset_splits",
        "dataset_configs",
        "preprocessing_num_workers",
        "truncation_side",
        "auto_insert_empty_system_msg",
        "max_seq_length",
        "learning_rat",
        "num_train_epochs",
    ):
        assert f"'{key}'" in msg, key
    assert "write dtype: bfloat16" in msg and "write max_length: 2048" in msg and "write dataset_num_proc: 12" in msg
    assert "command line --lerning_rate: unknown key 'lerning_rate' (did you mean 'learning_rate'?)" in msg
    assert "required key 'dataset_mixture' is missing" in msg


@pytest.mark.parametrize(
    "key,value,replacement",
    [
        ("preprocessing_num_workers", "12", "write dataset_num_proc: 12"),
        ("text_column", "text", "write dataset_text_field: text"),
        ("hub_model_revision", "main", "write hub_revision: main"),
        ("use_liger", "true", "write use_liger_kernel: true"),
        ("dataset_configs", "[default]", "config on each dataset_mixture entry"),
        ("dataset_name", "HuggingFaceH4/ultrachat_200k", "dataset_mixture: {datasets: [{id: NAME"),
        ("truncation_side", "left", "truncation_mode"),
        ("use_flash_attention_2", "true", "attn_implementation: flash_attention_2"),
    ],
)
def test_alignment_handbook_keys_point_at_their_replacement(tmp_path, key, value, replacement):
    path = _write(tmp_path, BASE + f"{key}: {value}\n")
    with pytest.raises(RecipeError) as err:
        _load(path)
    assert f"'{key}'" in str(err.value) and replacement in str(err.value) and "dataloader" not in str(err.value)


def test_renamed_keys_point_at_keys_the_installed_trl_has():
    from distill_core.legacy_keys import RENAMED_KEYS
    from distill_core.schema import fields_of

    known = {name for section in SFT_SECTIONS + DPO_SECTIONS for name in fields_of(section.cls)}
    assert {new for new, _ in RENAMED_KEYS.values()} <= known
    assert not set(RENAMED_KEYS) & known, "a renamed key that is valid again must leave the table"


def test_dataset_kwargs_that_trl_would_ignore_are_refused(tmp_path):
    path = _write(tmp_path, BASE + "dataset_kwargs: {add_special_tokens: false, append_concat_token: false}\n")
    with pytest.raises(RecipeError, match="reads only skip_prepare_dataset"):
        _load(path)
    assert _load(_write(tmp_path, BASE + "dataset_kwargs: {skip_prepare_dataset: true}\n")).get("dataset_kwargs")


@pytest.fixture
def hub_env(monkeypatch, tmp_path):
    """Online, no token anywhere: no environment variable and an empty token file location."""
    import huggingface_hub.constants

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    token_file = tmp_path / "hf-home" / "token"
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(token_file))
    return token_file


HUB_SECRET = "hf_test0123456789notarealtokenxyz"


def test_push_to_hub_without_a_token_fails_at_validation(tmp_path, hub_env):
    path = _write(tmp_path, BASE + "push_to_hub: true\nhub_model_id: my-org/zephyr-7b-sft\n")
    with pytest.raises(RecipeError, match="needs a Hugging Face token and none was found; export HF_TOKEN"):
        _load(path)
    with pytest.raises(RecipeError, match="needs a Hugging Face token"):
        _load(_write(tmp_path, BASE + "push_to_hub: true\n", name="dpo.yaml"))  # DPO recipes too


@pytest.mark.parametrize("source", ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "token_file"])
def test_push_to_hub_finds_a_token_wherever_huggingface_hub_does(tmp_path, hub_env, monkeypatch, source):
    if source == "token_file":
        hub_env.parent.mkdir(parents=True)
        hub_env.write_text(HUB_SECRET)
    else:
        monkeypatch.setenv(source, HUB_SECRET)
    recipe = _load(_write(tmp_path, BASE + "push_to_hub: true\nhub_model_id: my-org/zephyr-7b-sft\n"))
    assert recipe.get("push_to_hub") is True


@pytest.mark.parametrize("written,argv", [(f"hub_token: {HUB_SECRET}\n", []), ("", ["--hub_token", HUB_SECRET])])
def test_a_token_in_the_recipe_is_refused_without_echoing_it(tmp_path, hub_env, written, argv):
    # recipes and their overrides are copied into manifests and model cards
    with pytest.raises(RecipeError) as err:
        _load(_write(tmp_path, BASE + "push_to_hub: true\n" + written), argv)
    assert "'hub_token' would copy a secret" in str(err.value) and "export HF_TOKEN" in str(err.value)
    assert HUB_SECRET not in str(err.value)


@pytest.mark.parametrize(
    "extra,fragment",
    [
        (
            "hub_model_id: my org/zephyr 7b\n",
            "'my org/zephyr 7b' (hub_model_id), which is not a valid hub repository id",
        ),
        ("hub_model_id: a/b/c\n", "set hub_model_id: NAMESPACE/NAME"),
        ("output_dir: runs/zephyr--sft\n", "'zephyr--sft' (the last part of output_dir 'runs/zephyr--sft')"),
    ],
)
def test_push_to_hub_with_an_invalid_repo_id_fails_at_validation(tmp_path, hub_env, monkeypatch, extra, fragment):
    monkeypatch.setenv("HF_TOKEN", HUB_SECRET)
    with pytest.raises(RecipeError) as err:
        _load(
            _write(
                tmp_path,
                BASE.replace("output_dir: out\n", "")
                + ("" if "output_dir" in extra else "output_dir: out\n")
                + "push_to_hub: true\n"
                + extra,
            )
        )
    assert fragment in str(err.value) and HUB_SECRET not in str(err.value)


def test_push_to_hub_offline_says_it_needs_the_hub(tmp_path, hub_env, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_TOKEN", HUB_SECRET)
    with pytest.raises(RecipeError) as err:
        _load(_write(tmp_path, BASE + "push_to_hub: true\nhub_model_id: my-org/m\n"))
    assert "needs the Hugging Face Hub, but HF_HUB_OFFLINE is set" in str(err.value) and HUB_SECRET not in str(
        err.value
    )
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert _load(_write(tmp_path, BASE + "push_to_hub: false\n")).get("push_to_hub") is False


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["r.yaml", "--max_steps", "5"], ("r.yaml", ["--max_steps", "5"])),
        (["--config", "r.yaml", "--max_steps", "5"], ("r.yaml", ["--max_steps", "5"])),
        (["--max_steps", "5", "--config", "r.yaml"], ("r.yaml", ["--max_steps", "5"])),
        (["--packing", "--config=r.yaml", "--max_steps=5"], ("r.yaml", ["--packing", "--max_steps=5"])),
    ],
)
def test_recipe_path_positional_or_as_trl_config(argv, expected):
    from distill_core.cli import split_recipe_argv

    assert split_recipe_argv(argv, "run_sft.py") == expected


@pytest.mark.parametrize(
    "argv,fragment",
    [
        ([], "missing the recipe path"),
        (["--config"], "--config needs the recipe path"),
        (["a.yaml", "--config", "b.yaml"], "2 recipes given (a.yaml, b.yaml)"),
    ],
)
def test_recipe_path_mistakes(argv, fragment):
    from distill_core.cli import split_recipe_argv

    with pytest.raises(RecipeError) as err:
        split_recipe_argv(argv, "run_sft.py")
    assert fragment in str(err.value)
