"""The per-GPU memory plan before launch: DeepSpeed's model-state numbers, the Zephyr recipes, refusals, offline
use."""

from __future__ import annotations

import json
import os
import sys

import pytest
import yaml
from conftest import REPO, run_script, script

from training.memory_plan import GB, preflight, zero2_model_states, zero3_model_states

# Mistral-7B-v0.1's config.json, the values that matter to the plan as published with the model
MISTRAL_7B = {
    "architectures": ["MistralForCausalLM"],
    "model_type": "mistral",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 32000,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "sliding_window": 4096,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
MISTRAL_PARAMS = 7_241_732_096  # Mistral-7B-v0.1's published parameter count
SFT, DPO = "recipes/zephyr-7b-beta/sft.yaml", "recipes/zephyr-7b-beta/dpo.yaml"
ZERO3, OFFLOAD, DDP = (
    "recipes/accelerate/zero3.yaml",
    "recipes/accelerate/zero3_offload.yaml",
    "recipes/accelerate/ddp.yaml",
)


@pytest.fixture(scope="module")
def mistral_dir(tmp_path_factory):
    """A model directory holding only Mistral-7B's config.json: no weights, no tokenizer."""
    root = tmp_path_factory.mktemp("mistral-7b")
    (root / "config.json").write_text(json.dumps(MISTRAL_7B))
    return str(root)


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # accelerate configs name their DeepSpeed file relative to the repository root


def plan(mistral_dir, recipe=SFT, accelerate=ZERO3, *overrides, gb=80.0, nodes=1, gpus=8, stage=None):
    return preflight(
        recipe,
        ["--model_name_or_path", mistral_dir, *overrides],
        accelerate_config=accelerate,
        gpu_memory_gb=gb,
        nodes=nodes,
        gpus_per_node=gpus,
        stage=stage,
    )


def preflight_cli(cwd, *args, env=None):
    return run_script([sys.executable, script("preflight.py"), *args], cwd=cwd, timeout=120, env=env)


def one_error_line(res) -> str:
    assert res.returncode == 2 and "Traceback" not in res.output, res.output[-2000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    return errors[0]


def write_accelerate(tmp_path, name, zero: dict | None, processes=8) -> str:
    """An accelerate config (DeepSpeed with the given zero_optimization block, or DDP when zero is None)."""
    data = {"distributed_type": "MULTI_GPU", "num_processes": processes, "num_machines": 1}
    if zero is not None:
        ds = tmp_path / f"{name}.json"
        ds.write_text(json.dumps({"zero_optimization": zero, "bf16": {"enabled": "auto"}}))
        data.update(
            distributed_type="DEEPSPEED", deepspeed_config={"deepspeed_config_file": str(ds), "zero3_init_flag": True}
        )
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def model_states(p) -> int:
    names = ("parameters", "gradients", "optimizer states", "ZeRO-3 gather buffer")
    return sum(p.item(n).bytes for n in names if p.item(n) is not None)


# --- DeepSpeed's estimator ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gpus_per_node,nodes", [(1, 1), (8, 1), (8, 2), (4, 3)])
@pytest.mark.parametrize("cpu_offload,cpu_offload_params", [(False, False), (True, False), (True, True)])
def test_model_state_formulas_equal_deepspeeds_estimators(gpus_per_node, nodes, cpu_offload, cpu_offload_params):
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    for total, largest in ((MISTRAL_PARAMS, 131_072_000), (1_234_567, 89_012)):
        for zero_init in (True, False):
            ours = zero3_model_states(total, largest, gpus_per_node, nodes, cpu_offload, cpu_offload_params, zero_init)
            assert ours == estimate_zero3_model_states_mem_needs(
                total, largest, gpus_per_node, nodes, cpu_offload, cpu_offload_params, zero_init
            )
        assert zero2_model_states(total, gpus_per_node, nodes, cpu_offload) == estimate_zero2_model_states_mem_needs(
            total, gpus_per_node, nodes, cpu_offload
        )


def test_plans_model_states_are_deepspeeds_numbers_for_mistral(mistral_dir, in_repo, tmp_path):
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    p = plan(mistral_dir)
    assert p.model.total_params == MISTRAL_PARAMS and p.model.largest_layer == ("embed_tokens", 131_072_000)
    _, gpu, _ = estimate_zero3_model_states_mem_needs(
        MISTRAL_PARAMS, 131_072_000, 8, 1, cpu_offload=False, cpu_offload_params=False
    )
    assert model_states(p) == gpu
    offloaded = plan(mistral_dir, SFT, OFFLOAD)
    assert model_states(offloaded) == estimate_zero3_model_states_mem_needs(MISTRAL_PARAMS, 131_072_000, 8, 1)[1]
    zero2 = plan(mistral_dir, SFT, write_accelerate(tmp_path, "zero2", {"stage": 2}))
    assert model_states(zero2) == estimate_zero2_model_states_mem_needs(MISTRAL_PARAMS, 8, 1, cpu_offload=False)[1]
    assert zero2.item("parameters").bytes == 2 * MISTRAL_PARAMS, "ZeRO-2 keeps the 16-bit weights whole"


# --- the Zephyr recipes on 8 x 80 GB under ZeRO-3 -------------------------------------------------------------------


def test_zephyr_sft_plan_on_8x80gb(mistral_dir, in_repo):
    p = plan(mistral_dir)
    assert p.run.tokens == 16 * 2048 and p.run.checkpointing
    assert p.item("activations (saved)").bytes == 32 * 16 * 2048 * 4096 * 2  # one bf16 input per checkpointed layer
    # 15.7 model states + 1.4 live params + 8.0 checkpoints + 1.0 head input + 8.8 one layer's backward + 2.5 margin
    assert 34 <= p.total_gb <= 40 and p.verdict == "fits"
    # the usual 40-45 GB estimate also counts bf16 logits plus their fp32 upcast, which TRL 1.16 never materialises
    assert p.materialised_logits_bytes == 16 * 2048 * 32000 * (2 + 4)
    assert 40 <= (p.total_bytes + p.materialised_logits_bytes) / GB <= 45


def test_zephyr_dpo_plan_with_frozen_reference_on_8x80gb(mistral_dir, in_repo):
    p = plan(mistral_dir, DPO)  # the stage is read from the recipe's keys (beta, ref_mode, loss_type)
    assert p.run.stage == "dpo" and p.run.tokens == 2 * 8 * 1024  # chosen and rejected concatenated
    assert p.item("reference model").bytes == 2 * MISTRAL_PARAMS // 8, "bf16 copy sharded by ZeRO-3, no grads"
    assert p.item("reference forward") is not None
    assert 27 <= p.total_gb <= 33 and p.verdict == "fits"
    # policy and reference logits (bf16 + fp32 upcast) are what the usual 33-38 GB estimate adds
    assert 33 <= (p.total_bytes + p.materialised_logits_bytes) / GB <= 38
    assert plan(mistral_dir, DPO, ZERO3, "--ref_mode", "precomputed").item("reference model").bytes == 0


def test_activations_without_checkpointing_are_every_layer_in_full(mistral_dir, in_repo):
    on, off = plan(mistral_dir), plan(mistral_dir, SFT, ZERO3, "--activation_checkpointing", "false")
    per_token_layer = 200_840  # measured with saved-tensor hooks on a one-layer bf16 Mistral of real width (sdpa)
    assert off.item("activations (saved)").bytes == 32 * 16 * 2048 * per_token_layer
    assert off.total_gb > 150 > on.total_gb and off.verdict == "does not fit"
    # TRL's older name applies when the new one is unset, as transformers resolves the pair
    legacy = plan(mistral_dir, SFT, ZERO3, "--activation_checkpointing", "null", "--gradient_checkpointing", "false")
    assert legacy.item("activations (saved)").bytes == off.item("activations (saved)").bytes
    assert plan(mistral_dir, SFT, ZERO3, "--gradient_checkpointing", "false").run.checkpointing, "the new name wins"


# --- sharding, replication, offload, LoRA ---------------------------------------------------------------------------


def test_ddp_replicates_model_states_while_zero3_shards_them(mistral_dir, in_repo):
    one, eight = plan(mistral_dir, SFT, DDP, gpus=1), plan(mistral_dir, SFT, DDP, gpus=8)
    for name in ("parameters", "gradients", "optimizer states"):
        assert one.item(name).bytes == eight.item(name).bytes > 0, name
    assert one.item("parameters").bytes == 2 * MISTRAL_PARAMS  # the recipe loads bf16 weights
    assert eight.item("DDP gradient buckets") is not None and one.item("DDP gradient buckets") is None
    z1, z8 = plan(mistral_dir, SFT, ZERO3, gpus=1), plan(mistral_dir, SFT, ZERO3, gpus=8)
    assert z8.item("optimizer states").bytes * 8 == pytest.approx(z1.item("optimizer states").bytes, abs=8)


def test_offload_moves_optimizer_states_off_the_gpu(mistral_dir, in_repo, tmp_path):
    on_gpu, offloaded = plan(mistral_dir), plan(mistral_dir, SFT, OFFLOAD)
    assert on_gpu.item("optimizer states").bytes > 10 * GB
    assert offloaded.item("optimizer states").bytes == offloaded.item("gradients").bytes == 0
    assert offloaded.item("parameters").bytes == 0  # zero3_offload.json offloads the parameters too
    assert offloaded.total_gb < on_gpu.total_gb - 14
    optimizer_only = plan(
        mistral_dir, SFT, write_accelerate(tmp_path, "opt", {"stage": 3, "offload_optimizer": {"device": "cpu"}})
    )
    assert optimizer_only.item("optimizer states").bytes == 0 and optimizer_only.item("parameters").bytes > 0


def test_qlora_counts_adapters_from_rank_and_target_modules(mistral_dir, in_repo):
    p = plan(mistral_dir, "recipes/zephyr-7b-beta/sft-qlora.yaml", DDP, gb=24, gpus=1)
    adapters = (
        32
        * 16
        * sum(
            i + o
            for i, o in (
                (4096, 4096),
                (4096, 1024),
                (4096, 1024),
                (4096, 4096),
                (4096, 14336),
                (4096, 14336),
                (14336, 4096),
            )
        )
    )
    assert adapters == 41_943_040
    assert p.item("parameters").bytes == 4 * adapters  # fp32 adapters only; the base is frozen
    base = p.item("frozen base weights").bytes / MISTRAL_PARAMS
    assert 0.5 < base < 0.65, "4-bit linear weights plus absmax constants; 16-bit embeddings and head"
    assert p.verdict == "fits"
    q_and_v = plan(
        mistral_dir,
        "recipes/zephyr-7b-beta/sft-qlora.yaml",
        DDP,
        "--lora_target_modules",
        "[q_proj, v_proj]",
        gb=24,
        gpus=1,
    )
    assert q_and_v.item("parameters").bytes == 4 * 32 * 16 * (4096 + 4096 + 4096 + 1024)


# --- the command line -----------------------------------------------------------------------------------------------


def test_cli_runs_offline_on_a_directory_holding_only_config_json(mistral_dir):
    assert os.listdir(mistral_dir) == ["config.json"]
    res = preflight_cli(
        REPO,
        SFT,
        "--accelerate_config",
        ZERO3,
        "--nodes",
        "1",
        "--gpus_per_node",
        "8",
        "--gpu_memory_gb",
        "80",
        "--stage",
        "sft",
        "--model_name_or_path",
        mistral_dir,
    )
    assert res.returncode == 0, res.output[-2000:]
    assert "verdict: fits" in res.stdout and "DeepSpeed estimate_zero3_model_states_mem_needs" in res.stdout
    for line in ("parameters", "optimizer states", "activations (saved)", "CUDA context and fragmentation", "total"):
        assert f"  {line}" in res.stdout, line


def test_a_hub_id_reads_the_local_cache_or_says_to_pass_a_directory(tmp_path):
    empty = {"HF_HUB_CACHE": str(tmp_path / "empty")}
    res = preflight_cli(REPO, SFT, "--accelerate_config", ZERO3, "--gpu_memory_gb", "80", env=empty)
    error = one_error_line(res)
    assert "mistralai/Mistral-7B-v0.1" in error and "--model_name_or_path DIR" in error
    snapshot = tmp_path / "hub" / "models--mistralai--Mistral-7B-v0.1"
    (snapshot / "snapshots" / "abc123").mkdir(parents=True)
    (snapshot / "refs").mkdir()
    (snapshot / "refs" / "main").write_text("abc123")
    (snapshot / "snapshots" / "abc123" / "config.json").write_text(json.dumps(MISTRAL_7B))
    res = preflight_cli(
        REPO, SFT, "--accelerate_config", ZERO3, "--gpu_memory_gb", "80", env={"HF_HUB_CACHE": str(tmp_path / "hub")}
    )
    assert res.returncode == 0 and "verdict: fits" in res.stdout, res.output[-2000:]


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--gpu_memory_gb", "24", "--nodes", "1", "--gpus_per_node", "1"], "of 24 GB (biggest: optimizer states"),
        (["--gpu_memory_gb", "80", "--activation_checkpointing", "false"], "enable activation checkpointing"),
    ],
)
def test_a_plan_that_does_not_fit_is_refused_in_one_line(mistral_dir, args, fragment):
    res = preflight_cli(REPO, SFT, "--accelerate_config", ZERO3, "--model_name_or_path", mistral_dir, *args)
    error = one_error_line(res)
    assert error.startswith(f"error: {SFT}: the plan needs ") and fragment in error, error
    assert "verdict: does not fit" in res.stdout


def test_a_tight_plan_passes_with_a_warning(mistral_dir):
    res = preflight_cli(
        REPO, SFT, "--accelerate_config", ZERO3, "--gpu_memory_gb", "40", "--model_name_or_path", mistral_dir
    )
    assert res.returncode == 0 and "verdict: tight" in res.stdout
    assert res.stderr.startswith("warning: tight: ") and "--per_device_train_batch_size 8" in res.stderr


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--accelerate_config", ZERO3], "--gpu_memory_gb is required"),
        (["--accelerate_config", ZERO3, "--gpu_memory_gb", "eighty"], "--gpu_memory_gb expects a number"),
        (
            ["--accelerate_config", "recipes/accelerate/nope.yaml", "--gpu_memory_gb", "80"],
            "'recipes/accelerate/nope.yaml' not found",
        ),
        (["--accelerate_config", "MISSING_DS", "--gpu_memory_gb", "80"], "deepspeed_config_file"),
        (["--accelerate_config", ZERO3, "--gpu_memory_gb", "80", "--nodes", "two"], "--nodes expects a whole number"),
    ],
)
def test_bad_arguments_get_one_line_errors(mistral_dir, tmp_path, args, fragment):
    if "MISSING_DS" in args:
        bad = tmp_path / "bad.yaml"
        bad.write_text(
            yaml.safe_dump(
                {
                    "distributed_type": "DEEPSPEED",
                    "num_processes": 8,
                    "deepspeed_config": {"deepspeed_config_file": "ds_configs/gone.json"},
                }
            )
        )
        args = [str(bad) if a == "MISSING_DS" else a for a in args]
    res = preflight_cli(REPO, SFT, "--model_name_or_path", mistral_dir, *args)
    assert fragment in one_error_line(res)


def test_the_stage_is_inferred_from_the_keys_or_must_be_given(mistral_dir, in_repo, tmp_path):
    assert plan(mistral_dir, SFT).run.stage == "sft" and plan(mistral_dir, DPO).run.stage == "dpo"
    bare = tmp_path / "bare.yaml"
    bare.write_text(
        yaml.safe_dump(
            {
                "model_name_or_path": mistral_dir,
                "output_dir": str(tmp_path / "out"),
                "dataset_mixture": {"datasets": [{"id": "org/data"}]},
            }
        )
    )
    res = preflight_cli(REPO, str(bare), "--accelerate_config", ZERO3, "--gpu_memory_gb", "80")
    assert "pass --stage sft or --stage dpo" in one_error_line(res)
    assert (
        preflight_cli(
            REPO, str(bare), "--accelerate_config", ZERO3, "--gpu_memory_gb", "80", "--stage", "dpo"
        ).returncode
        == 0
    )


# --- the pipeline ---------------------------------------------------------------------------------------------------


def memcheck_pipeline(workspace, gpu_memory_gb) -> str:
    """One smoke SFT stage, a single CPU process for one step, with a memory budget in its launch block."""
    (workspace / "single.yaml").write_text(
        yaml.safe_dump(
            {
                "compute_environment": "LOCAL_MACHINE",
                "distributed_type": "NO",
                "num_processes": 1,
                "num_machines": 1,
                "machine_rank": 0,
                "mixed_precision": "no",
                "use_cpu": True,
            }
        )
    )
    launch = {"accelerate_config": "single.yaml", "num_processes": 1}
    if gpu_memory_gb is not None:
        launch["gpu_memory_gb"] = gpu_memory_gb
    overrides = {"max_steps": 1, "eval_strategy": "no", "save_strategy": "no", "logging_steps": 1, "log_samples": 0}
    data = {
        "name": "memcheck",
        "run_dir": "runs/memcheck",
        "stages": {"sft": {"recipe": "recipes/smoke/sft.yaml", "launch": launch, "overrides": overrides}},
    }
    (workspace / "memcheck.yaml").write_text(yaml.safe_dump(data))
    return "memcheck.yaml"


def test_pipeline_refuses_a_training_stage_whose_plan_does_not_fit_and_proceeds_when_told(workspace):
    recipe = memcheck_pipeline(workspace, 0.5)  # below the 2.5 GB margin alone
    res = run_script([sys.executable, script("run_pipeline.py"), recipe], cwd=workspace, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.output, res.output[-3000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "stage 'sft' refused by its memory plan" in errors[0], res.stderr
    assert "recipes/smoke/sft.yaml: the plan needs" in errors[0] and "--ignore-memory-plan" in errors[0]
    assert not (workspace / "runs/memcheck/sft").exists(), "refused before the stage started"

    res = run_script(
        [sys.executable, script("run_pipeline.py"), recipe, "--ignore-memory-plan"], cwd=workspace, timeout=600
    )
    assert res.returncode == 0, res.output[-3000:]
    assert "[sft] memory plan not checked (--ignore-memory-plan)" in res.stdout
    manifest = json.loads((workspace / "runs/memcheck/sft/manifest.json").read_text())
    assert manifest["pipeline"]["status"] == "complete"


def test_pipeline_checks_a_plan_that_fits_and_skips_without_a_gpu_size(workspace, monkeypatch):
    from distill_core.pipeline import check_memory_plan, load_pipeline

    monkeypatch.chdir(workspace)
    lines = []
    fits = load_pipeline(memcheck_pipeline(workspace, 80))
    check_memory_plan(fits, fits.stages["sft"], lines.append)
    assert lines == ["[sft] memory plan verdict: fits (2.5 of 80 GB; tight above 90%)"]
    unset = load_pipeline(memcheck_pipeline(workspace, None))
    check_memory_plan(unset, unset.stages["sft"], lines.append)
    assert lines[-1].startswith("[sft] memory plan skipped: launch.gpu_memory_gb is not set")
