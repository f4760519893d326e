"""Cards and run records: standard hub metadata, stage directories that load as dataset configs, no path of this
machine in any dataset row, and imports that form layers."""

from __future__ import annotations

import ast
import graphlib
import json
import os
import sys

import pytest
import yaml
from conftest import REPO, SHARED_DATA, run_script, script
from openai_fault_server import MODEL_ID, ScriptedOpenAIServer

KEY_ENV = {"DISTILL_TEST_KEY": "sk-test-cards"}


def scripted_teacher(base_url: str) -> dict:
    return {
        "endpoints": [{"base_url": base_url, "model": MODEL_ID, "api_key_env": "DISTILL_TEST_KEY"}],
        "max_concurrency": 8,
        "timeout_s": 5.0,
        "max_retries": 2,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.02,
    }


def card_metadata(path) -> dict:
    from huggingface_hub import RepoCard

    return RepoCard.load(str(path)).data.to_dict()


def jsonl_rows(path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_a_stage_directory_loads_each_of_its_datasets_as_a_config(tmp_path):
    """self_instruct writes prompts/, sft/ and instructions/; its card names each as a config of the directory."""
    import datasets

    with ScriptedOpenAIServer() as server:
        (tmp_path / "si.yaml").write_text(
            yaml.safe_dump(
                {
                    "teacher": scripted_teacher(server.base_url),
                    "seed_tasks": os.path.join(SHARED_DATA, "self_instruct_seed_tasks.jsonl"),
                    "output_dir": "runs/si",
                    "num_instructions": 6,
                    "requests_per_round": 2,
                    "max_rounds": 4,
                    "max_tokens": 64,
                    "min_words": 1,
                    "show_progress": False,
                }
            )
        )
        res = run_script(
            [sys.executable, script("run_self_instruct.py"), "si.yaml", "--seed", "7"], cwd=tmp_path, env=KEY_ENV
        )
    assert res.returncode == 0, res.output[-3000:]
    stage = tmp_path / "runs/si"
    meta = card_metadata(stage / "README.md")
    assert [c["config_name"] for c in meta["configs"]] == ["prompts", "sft", "instructions"]
    assert meta["tags"] == ["synthetic", "distillation"] and meta["task_categories"] == ["text-generation"]
    assert "license" not in meta, "a generated dataset's license is not guessed"
    for name in ("prompts", "sft", "instructions"):
        loaded = datasets.load_dataset(str(stage), name, split="train", cache_dir=str(tmp_path / "hf-cache"))
        assert loaded.to_list() == jsonl_rows(stage / name / "train.jsonl") and len(loaded) > 0, name
    manifest = json.loads((stage / "manifest.json").read_text())
    assert manifest["recipe"]["overrides"] == ["--seed", "7"] and manifest["recipe"]["values"]["seed"] == 7
    assert not [p for p in os.listdir(stage) if ".tmp-" in p], "cards and manifests are written atomically"


def machine_paths(value, roots: tuple[str, ...]) -> list[str]:
    """Every string inside a row (keys too) that holds a path under one of ``roots``."""
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in machine_paths(key, roots) + machine_paths(item, roots)]
    if isinstance(value, list):
        return [s for item in value for s in machine_paths(item, roots)]
    return [value] if isinstance(value, str) and any(root in value for root in roots) else []


def test_no_row_of_a_stage_output_holds_an_absolute_path(workspace):
    """A pool answered by an endpoint, the `local` overlay (model_dir relative) and an inline local teacher whose
    model_dir is absolute: the local server answers to the absolute path, yet the rows name each model as the user
    did (the relative path as written, or the directory's name)."""
    prompts = workspace / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Name a colour, number {i}."}) + "\n" for i in range(3)))
    absolute_local = {"local_server": {"model_dir": str(workspace / "runs/smoke/tiny-model")}, "max_retries": 1}
    with ScriptedOpenAIServer() as server:
        (workspace / "pool.yaml").write_text(
            yaml.safe_dump(
                {
                    "prompts": str(prompts),
                    "models": [scripted_teacher(server.base_url), "local", absolute_local],
                    "completions_per_prompt": 3,
                    "max_tokens": 8,
                    "keep_truncated": True,
                    "output_dir": "runs/pool",
                    "show_progress": False,
                }
            )
        )
        res = run_script([sys.executable, script("run_completions.py"), "pool.yaml"], cwd=workspace, env=KEY_ENV)
    assert res.returncode == 0, res.output[-3000:]
    rows = {
        str(p.relative_to(workspace)): jsonl_rows(p)
        for p in workspace.joinpath("runs").rglob("train.jsonl")
        if "smoke" not in p.parts
    }
    assert list(rows) == ["runs/pool/pool/train.jsonl"] and len(rows["runs/pool/pool/train.jsonl"]) == 3
    model_dir = workspace / "runs/smoke/tiny-model"
    roots = (str(workspace), os.path.realpath(workspace), str(model_dir), os.path.realpath(model_dir), REPO)
    for path, dataset in rows.items():
        for n, row in enumerate(dataset, 1):
            assert not machine_paths(row, roots), f"{path} row {n} holds a path of this machine"
    models = {c["model"] for row in rows["runs/pool/pool/train.jsonl"] for c in row["completions"]}
    assert models == {MODEL_ID, "runs/smoke/tiny-model", "tiny-model"}
    card = (workspace / "runs/pool/README.md").read_text()
    assert str(workspace) not in card, "the card names local models as the rows do"


def test_model_card_metadata_names_only_hub_ids_and_inherits_the_base_license(tmp_path, monkeypatch):
    from training.card import model_card_data

    monkeypatch.chdir(tmp_path)
    os.makedirs("data/sft")
    from_hub = model_card_data(
        "mistralai/Mistral-7B-v0.1",
        adapter=True,
        tags=["trl", "sft"],
        datasets=[
            "HuggingFaceH4/ultrachat_200k",
            "data/sft",
            str(tmp_path / "data/sft"),
            "HuggingFaceH4/ultrachat_200k",
        ],
    ).to_dict()
    assert from_hub == {
        "base_model": "mistralai/Mistral-7B-v0.1",
        "datasets": ["HuggingFaceH4/ultrachat_200k"],
        "library_name": "peft",
        "pipeline_tag": "text-generation",
        "tags": ["trl", "sft"],
    }

    os.makedirs("runs/sft-model")
    with open("runs/sft-model/README.md", "w", encoding="utf-8") as f:
        f.write("---\nlicense: apache-2.0\nbase_model: mistralai/Mistral-7B-v0.1\n---\n\n# sft-model\n")
    for base in ("runs/sft-model", str(tmp_path / "runs/sft-model")):
        local = model_card_data(base, adapter=False, datasets=["data/sft"], tags=["trl", "dpo"]).to_dict()
        assert local == {
            "license": "apache-2.0",
            "library_name": "transformers",
            "pipeline_tag": "text-generation",
            "tags": ["trl", "dpo"],
        }, "a local base is not a base_model id; its license carries on"


def test_card_values_are_quoted_by_the_card_writer(tmp_path):
    from huggingface_hub import DatasetCardData

    from distill_core.records import write_card

    tricky = "a: b # not a comment\n---\nc"
    path = write_card(str(tmp_path), DatasetCardData(pretty_name=tricky, tags=["x"]), "# body\n")
    assert card_metadata(path) == {"pretty_name": tricky, "tags": ["x"]}
    assert os.listdir(tmp_path) == ["README.md"]


def test_an_empty_dataset_gets_no_config():
    from data_gen.stage import dataset_card_data

    data = dataset_card_data("self_instruct", "runs/si", {"prompts": [{"prompt": "x"}], "sft": []}).to_dict()
    assert data["configs"] == [
        {"config_name": "prompts", "data_files": [{"split": "train", "path": "prompts/train.jsonl"}]}
    ]


def _imports_of(path: str, module: str, known: set[str]) -> set[str]:
    """The repository modules a module imports anywhere in its body (function-level imports too)."""
    package = module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found.update(c for c in candidates if c in known and c != module)
    return found


@pytest.mark.parametrize("package", ["training", "data_gen", "distill_core"])
def test_imports_form_layers(package):
    """No module of the package imports one that imports it back, even through function-level imports."""
    modules = {
        f"{package}.{name[:-3]}": os.path.join(REPO, package, name)
        for name in sorted(os.listdir(os.path.join(REPO, package)))
        if name.endswith(".py")
    }
    graph = {module: _imports_of(path, module, set(modules)) for module, path in modules.items()}
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")
