"""The Zephyr pipeline's decontamination gate on local copies of UltraChat 200k and UltraFeedback binarized in their
published layout: its decontaminate stages write the clean splits under the hub's split names, and the sft and dpo
stages, as the pipeline would launch them, read those splits through the real mixture loader. Then what the gate
finds: one real item of each benchmark planted in the fixtures' rows, checked against the recipe's whole list."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest
import yaml
from conftest import REPO, SHARED_DATA, run_script, script, shared_benchmarks
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


# ---------------------------------------------------------------------------------------------------------------------
# What the gate finds: real benchmark items planted in the fixtures, the recipe's whole benchmark list

# (dataset, split, row, where in the row, benchmark): one item of each benchmark, the first of 25 to 80 words
PLANTS = [
    (ULTRACHAT, "train_sft", 3, "user", "arc_challenge"),
    (ULTRACHAT, "train_sft", 17, "assistant", "gsm8k"),
    (ULTRACHAT, "train_sft", 30, "assistant", "winogrande"),
    (ULTRACHAT, "test_sft", 2, "user", "mt_bench"),
    (ULTRAFEEDBACK, "train_prefs", 4, "prompt", "alpaca_eval"),
    (ULTRAFEEDBACK, "train_prefs", 20, "chosen", "truthfulqa"),
    (ULTRAFEEDBACK, "train_prefs", 31, "rejected", "mmlu"),
    (ULTRAFEEDBACK, "test_prefs", 1, "prompt", "hellaswag"),
]
SPLITS = {ULTRACHAT: ["train_sft", "test_sft"], ULTRAFEEDBACK: ["train_prefs", "test_prefs"]}


def _items_to_plant() -> dict:
    from decontamination.benchmarks import load_benchmark, parse_benchmarks
    from decontamination.normalize import words

    sources = parse_benchmarks(shared_benchmarks(os.path.join(REPO, ZEPHYR, "decontaminate.yaml")), "test")
    return {s.name: next(it for it in load_benchmark(s, "test") if 25 <= len(words(it.text)) <= 80) for s in sources}


def _plant(row: dict, where: str, text: str) -> None:
    """Benchmark text where a user would ask it or a model answer it, keeping the published columns consistent."""
    from zephyr_data import _prompt_id

    question = f"I came across this and wondered about it: {text} What do you think?"
    if where in ("user", "prompt"):
        row["prompt"], row["prompt_id"] = question, _prompt_id(question)
        for column in ("messages", "chosen", "rejected"):
            if column in row:
                row[column] = [{"role": "user", "content": question}, *row[column][1:]]
    else:
        column = {"assistant": "messages", "chosen": "chosen", "rejected": "rejected"}[where]
        row[column] = [*row[column][:1], {"role": "assistant", "content": f"Sure. {text}"}, *row[column][2:]]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    items = _items_to_plant()

    def edit(repo: str, splits: dict) -> None:
        for dataset, split, at, where, benchmark in PLANTS:
            if dataset == repo:
                _plant(splits[split][at], where, items[benchmark].text)

    root = tmp_path_factory.mktemp("zephyr-planted")
    hub = build_zephyr_datasets(str(root / "hub"), edit=edit)
    benchmarks = json.dumps(shared_benchmarks(os.path.join(REPO, ZEPHYR, "decontaminate.yaml")))
    # local copies in one layout share datasets' cache (its key ignores their files): these rows get their own
    env = {"HF_DATASETS_CACHE": str(root / "datasets-cache")}

    def check(repo: str):
        out = root / repo.split("/")[1]
        cmd = [sys.executable, script("run_decontaminate.py"), os.path.join(REPO, ZEPHYR, "decontaminate.yaml"),
               "--dataset", hub[repo], "--dataset_split", json.dumps(SPLITS[repo]), "--benchmarks", benchmarks,
               "--output_dir", str(out), "--continue_on_contamination", "true"]  # fmt: skip
        return out, run_script(cmd, cwd=str(root), env=env)

    runs = {repo: check(repo) for repo in SPLITS}
    for out, res in runs.values():
        assert res.returncode == 0, res.output[-3000:]
    return hub, items, runs


# benchmark -> (items hit, rows removed). MT-Bench question 81 (the Hawaii travel blog) is an AlpacaEval instruction
# too, and a Winogrande item shares its text with its twin: one planted row each, two hits.
FOUND = {
    ULTRACHAT: {"alpaca_eval": (1, 1), "arc_challenge": (1, 1), "gsm8k": (1, 1), "mt_bench": (1, 1),
                "winogrande": (2, 1)},
    ULTRAFEEDBACK: {"alpaca_eval": (1, 1), "hellaswag": (1, 1), "mmlu": (1, 1), "truthfulqa": (1, 1)},
}  # fmt: skip


def test_every_planted_item_is_removed_and_nothing_else(planted):
    hub, items, runs = planted
    for repo, (out, res) in runs.items():
        report = json.loads((out / "report.json").read_text())
        counts = json.loads((out / "manifest.json").read_text())["counts"]
        found = {b: (e["items_hit"], e["rows_removed"]) for b, e in sorted(report.items()) if e["items_hit"]}
        print(f"{repo}: {counts['rows']} rows, {counts['removed']} removed; hit {found}; {res.stdout.strip()}")
        assert found == FOUND[repo] and counts["removed"] == 4
        # one MT-Bench question of 80 is 1.25%: above the recipe's gate of 1% (this run was told to go on)
        breached = "gate breached but continue_on_contamination is set: benchmark 'mt_bench': 1 of 80 items"
        assert (breached in res.stdout) == (repo == ULTRACHAT)
        for split in SPLITS[repo]:
            mine = {at: benchmark for d, s, at, _, benchmark in PLANTS if (d, s) == (repo, split)}
            removed = [json.loads(line) for line in (out / "removed" / f"{split}.jsonl").read_text().splitlines()]
            assert {r["row_index"]: r["split"] for r in removed} == dict.fromkeys(mine, split)
            for r in removed:
                assert items[mine[r["row_index"]]].item_id in {m["item_id"] for m in r["matches"]}
            original = _parquet_rows(hub[repo], split)
            clean = [json.loads(line) for line in (out / "clean" / f"{split}.jsonl").read_text().splitlines()]
            assert clean == [row for i, row in enumerate(original) if i not in mine], "the other rows, as they were"


def test_report_and_card_name_each_benchmark_with_the_matched_span(planted):
    _, items, runs = planted
    for repo, (out, _) in runs.items():
        report = json.loads((out / "report.json").read_text())
        card = (out / "README.md").read_text()
        for _, split, at, _, benchmark in (p for p in PLANTS if p[0] == repo):
            (example,) = report[benchmark]["examples"]
            assert (example["split"], example["row_index"]) == (split, at)
            assert example["item_id"] == items[benchmark].item_id
            before, span, after = example["excerpt"].split("**")
            assert example["excerpt_parts"] == [before, span, after]
            assert len(span.split()) >= 13 and span in items[benchmark].text, "the benchmark text, marked"
            assert f"| {benchmark} | " in card and f"{split} row {at} " in card and items[benchmark].item_id in card
