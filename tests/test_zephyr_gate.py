"""The Zephyr pipeline's decontamination gate on local copies of UltraChat 200k and UltraFeedback binarized in their
published layout: its decontaminate stages write the clean splits under the hub's split names, and the sft and dpo
stages, as the pipeline would launch them, read those splits through the real mixture loader."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest
import yaml
from conftest import REPO, SHARED_DATA, run_script, script
from zephyr_data import ULTRACHAT, ULTRAFEEDBACK, build_zephyr_datasets

ZEPHYR = "recipes/zephyr-7b-beta"
RUN_DIR = "runs/zephyr-7b-beta"
# the wiring under test needs no more than a few sets (the whole list is exercised in the planted-items test)
FEW_BENCHMARKS = [
    os.path.join(SHARED_DATA, "benchmarks", "gsm8k.jsonl"),
    {"path": os.path.join(SHARED_DATA, "mt_bench_questions.jsonl"), "name": "mt_bench", "text_field": "turns",
     "id_field": "question_id"},
]  # fmt: skip


def _parquet_rows(repo: str, split: str) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(os.path.join(repo, "data", f"{split}-00000-of-00001.parquet")).to_pylist()


@pytest.fixture(scope="module")
def gated_run(tmp_path_factory):
    """The Zephyr pipeline's two decontaminate stages run on the local copies (dataset ids overridden to them)."""
    root = tmp_path_factory.mktemp("zephyr-gate")
    hub = build_zephyr_datasets(str(root / "hub"))
    shutil.copytree(os.path.join(REPO, "recipes"), root / "recipes")
    data = yaml.safe_load((root / ZEPHYR / "pipeline.yaml").read_text())
    stages = data["stages"]
    stages["decontaminate_sft"].setdefault("overrides", {}).update(dataset=hub[ULTRACHAT], benchmarks=FEW_BENCHMARKS)
    stages["decontaminate_prefs"]["overrides"].update(dataset=hub[ULTRAFEEDBACK], benchmarks=FEW_BENCHMARKS)
    (root / "zephyr.yaml").write_text(yaml.safe_dump(data))
    only = ["--only", "decontaminate_sft", "decontaminate_prefs"]
    res = run_script([sys.executable, script("run_pipeline.py"), "zephyr.yaml", *only], cwd=str(root))
    assert res.returncode == 0, res.output[-3000:]
    return root, hub


@pytest.mark.parametrize(
    "stage,repo,splits",
    [
        ("decontaminate_sft", ULTRACHAT, ("train_sft", "test_sft")),
        ("decontaminate_prefs", ULTRAFEEDBACK, ("train_prefs", "test_prefs")),
    ],
)
def test_decontaminate_stages_write_each_split_in_the_published_schema(gated_run, stage, repo, splits):
    import pyarrow.parquet as pq
    from datasets import Features

    from training.data import load_split
    from training.mixture import DatasetSpec

    root, hub = gated_run
    out = root / RUN_DIR / stage
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["pipeline"]["status"] == "complete"
    assert list(manifest["counts"]["splits"]) == list(splits)
    assert sorted(p.name for p in (out / "clean").iterdir()) == sorted(f"{s}.jsonl" for s in splits)
    for split in splits:  # nothing in the fixture is benchmark text: every row is kept, as it was
        clean = load_split(DatasetSpec(str(out / "clean")), split, "test")
        assert clean.to_list() == _parquet_rows(hub[repo], split)
        published = pq.read_schema(os.path.join(hub[repo], "data", f"{split}-00000-of-00001.parquet"))
        assert clean.features == Features.from_arrow_schema(published), "the hub dataset's columns and types"


def _stage_recipe(root, stage: str):
    """The stage's recipe as the pipeline launches it (the arguments --print-commands shows), validated."""
    from distill_core.pipeline import load_pipeline
    from distill_core.pipeline.commands import script_args
    from distill_core.recipe import load_recipe
    from training.arguments import DPO_SECTIONS, SFT_SECTIONS, check_dpo, check_sft

    pipeline = load_pipeline("zephyr.yaml")
    recipe, *overrides = script_args(pipeline, pipeline.stages[stage])
    if stage == "dpo":  # it starts from the sft stage's model, which this test does not train
        overrides += ["--model_name_or_path", "mistralai/Mistral-7B-v0.1"]
        return pipeline, load_recipe(recipe, overrides, DPO_SECTIONS, check_dpo)
    return pipeline, load_recipe(recipe, overrides, SFT_SECTIONS, check_sft)


@pytest.mark.parametrize(
    "stage,gate,split,test_split,columns",
    [
        ("sft", "decontaminate_sft", "train_sft", "test_sft", ["messages"]),
        ("dpo", "decontaminate_prefs", "train_prefs", "test_prefs", ["prompt", "chosen", "rejected"]),
    ],
)
def test_training_stages_read_the_clean_splits_through_the_mixture_loader(
    gated_run, monkeypatch, stage, gate, split, test_split, columns
):
    from training.columns import PREFERENCE_LAYOUTS, SFT_LAYOUTS
    from training.data import load_mixture

    root, _ = gated_run
    monkeypatch.chdir(root)
    pipeline, recipe = _stage_recipe(root, stage)
    assert gate in pipeline.stages[stage].deps, "the training stage runs after its gate, and reruns when it does"
    (spec,) = recipe.parsed["mixture"].datasets
    assert (spec.id, spec.split, spec.test_split) == (f"{RUN_DIR}/{gate}/clean", split, test_split)
    layouts = SFT_LAYOUTS if stage == "sft" else PREFERENCE_LAYOUTS
    train, test = load_mixture(recipe.parsed["mixture"], layouts, stage.upper())
    counts = json.loads((root / RUN_DIR / gate / "manifest.json").read_text())["counts"]["splits"]
    assert (len(train), len(test)) == (counts[split]["kept"], counts[test_split]["kept"]) == (48, 8)
    assert train.column_names == columns == test.column_names

