"""The stage record: its datasets, manifest.json and dataset card, written only when check_outcome allows."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from distill_core.jsonl import write_jsonl_atomic
from distill_core.recipe import Recipe
from distill_core.records import recipe_record, write_card, write_manifest

from ..endpoints import TeacherConfig
from .outcome import check_outcome, output_fingerprint


@dataclass
class StageOutputs:
    """What a generation stage writes: its datasets, and what its manifest and card say about the run."""

    out_dir: str
    stage: str
    recipe: Recipe
    datasets: dict[str, list[dict]]
    roles: dict[str, TeacherConfig]
    sampling: dict
    templates: str  # templates_hash of the stage's prompt templates
    stats: dict  # GenerationSession.stats()
    counts: dict
    card_lines: list[str]
    failures: dict | None = None  # request_failures(session)
    detail: str = ""  # why a run with no rows has none, when its requests did not fail


def write_stage_outputs(outputs: StageOutputs) -> None:
    """Datasets (atomically), manifest.json and a dataset card. API keys never appear: only env var names.

    Refuses (StageFailed, nothing written) a run that must not replace what is there: see check_outcome.
    """
    out_dir, stage, recipe = outputs.out_dir, outputs.stage, outputs.recipe
    args = recipe.build("data")
    check_outcome(out_dir, stage, recipe, args, outputs.datasets, outputs.stats, outputs.failures, outputs.detail)
    for name, rows in outputs.datasets.items():
        d = os.path.join(out_dir, name)
        os.makedirs(d, exist_ok=True)
        write_jsonl_atomic(os.path.join(d, "train.jsonl"), rows)
    write_manifest(
        out_dir,
        stage,
        recipe=recipe_record(recipe),
        output_fingerprint=output_fingerprint(recipe),
        teachers={role: t.public() for role, t in outputs.roles.items()},
        sampling=outputs.sampling,
        prompt_templates_sha256=outputs.templates,
        counts=outputs.counts,
        **({"failures": outputs.failures} if outputs.failures else {}),
        **outputs.stats,
    )
    write_card(out_dir, dataset_card_data(stage, out_dir, outputs.datasets), dataset_card_body(outputs))


def local_model_name(teacher: TeacherConfig) -> str | None:
    """How rows and cards name a teacher's local model; None for a teacher at endpoints, which is named by the model
    id its endpoints serve.

    A local server answers to the absolute path of its model directory. Written into rows, that path would carry
    this machine's layout into every dataset made from them (pool, ratings, preferences). The model is named by
    ``model_dir`` as the teacher file wrote it when that is relative (``runs/smoke/tiny-model``), else by the
    directory's own name.
    """
    if not teacher.local_server:
        return None
    written = os.path.normpath(str(teacher.local_server.get("model_dir", "")))
    return os.path.basename(written) if os.path.isabs(os.path.expanduser(written)) else written


def dataset_card_data(
    stage: str, out_dir: str, datasets: dict[str, list[dict] | dict[str, list[dict] | int]], tags: tuple | list = ()
):
    """Standard dataset-card metadata: one config per dataset of the stage, so ``datasets.load_dataset(out_dir,
    name)`` reads ``<name>/train.jsonl`` (and not the journal or the manifest beside it); a dataset given as
    {split: rows} (or {split: row count}) is read as ``<name>/<split>.jsonl`` per split. An empty split gets no
    entry, nor a dataset with no rows: ``datasets`` cannot read a schema from an empty file, and fails without saying
    so.

    No license is stated: a generated dataset's terms follow its teachers' terms of use and its prompts' sources,
    which no recipe records, so the hub shows it as unknown rather than a guess.
    """
    from huggingface_hub import DatasetCardData

    configs = []
    for name, rows in datasets.items():
        splits = rows if isinstance(rows, dict) else {"train": rows}
        files = [{"split": split, "path": f"{name}/{split}.jsonl"} for split, part in splits.items() if part]
        if files:
            configs.append({"config_name": name, "data_files": files})
    return DatasetCardData(
        pretty_name=f"{stage}: {os.path.basename(os.path.abspath(out_dir))}",
        task_categories=["text-generation"],
        tags=["synthetic", "distillation", *tags],
        configs=configs,
    )


def dataset_card_body(outputs: StageOutputs) -> str:
    """The card's Markdown: teachers (a local model by its local_model_name), sampling, contents, requests and cost."""
    stats = outputs.stats
    local_names = {role: local_model_name(t) for role, t in outputs.roles.items()}
    teacher_lines = [
        f"- {role}: `{t.name}` "
        + ", ".join(f"{e['model']} at {e['base_url']}" for e in t.public()["endpoints"])
        + (f"local model {local_names[role]}" if t.local_server else "")
        for role, t in outputs.roles.items()
    ]
    requests = {role: {**c, "model": local_names.get(role) or c.get("model")} for role, c in stats["requests"].items()}
    lines = [
        f"# {outputs.stage}: {os.path.basename(os.path.abspath(outputs.out_dir))}",
        "",
        f"Generated by `{outputs.stage}` from the recipe `{outputs.recipe.path}` "
        f"(sha256 `{outputs.recipe.sha256[:12]}`).",
        "",
        "## Teachers",
        *teacher_lines,
        "",
        "## Sampling",
        "",
        "```json",
        json.dumps(outputs.sampling, indent=2, sort_keys=True),
        "```",
        f"Prompt templates sha256: `{outputs.templates}`",
        "",
        "## Contents",
        *[f"- `{name}/train.jsonl`: {len(rows)} rows" for name, rows in outputs.datasets.items()],
        *outputs.card_lines,
        "",
        'Each dataset is a config of this directory: `datasets.load_dataset(<this directory>, "<name>")`.',
        "",
        "## Requests and cost",
        f"- total cost: ${stats['cost_usd']:.4f}"
        + (f" (budget ${stats['max_cost_usd']})" if stats.get("max_cost_usd") else ""),
        *[f"- {role}: {json.dumps(c, sort_keys=True)}" for role, c in requests.items()],
        f"- wall time: {stats['wall_time_s']} s"
        + (" — stopped early: max_cost_usd reached" if stats.get("stopped_by_budget") else ""),
    ]
    return "\n".join(lines) + "\n"
