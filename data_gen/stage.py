"""What the generation stages share: recipe keys, seed handling, cost estimates and the stage record."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

from distill_core import locks
from distill_core.errors import DataError, RecipeError, UserError
from distill_core.jsonl import read_jsonl, write_jsonl_atomic
from distill_core.recipe import check_output_dir
from distill_core.records import recipe_record, text_sha256, write_card, write_manifest

from .client import request_cost_usd
from .endpoints import TeacherConfig

logger = logging.getLogger(__name__)


@dataclass
class GenerationArguments:
    """Keys every generation stage accepts."""

    teacher: Any = field(
        default="local",
        metadata={
            "help": (
                "Teacher: a name under recipes/teachers/ (gpt-4, vllm, local), a path to a teacher YAML, or an "
                "inline mapping."
            )
        },
    )
    output_dir: str = field(
        default="", metadata={"help": "Where the datasets, journal, manifest and card are written."}
    )
    seed: int = field(
        default=42,
        metadata={"help": "Seed for every sampling decision; a rerun with the same seed yields the same dataset."},
    )
    max_cost_usd: Optional[float] = field(
        default=None,
        metadata={
            "help": "Stop cleanly, keeping everything done so far, once this much has been spent.",
            "exclusive_min": 0,
            "fix": "omit the key for no budget",
        },
    )
    keep_truncated: bool = field(
        default=False,
        metadata={"help": "Keep replies cut by max_tokens (finish_reason=length); they are always flagged."},
    )
    dry_run: bool = field(
        default=False, metadata={"help": "Estimate requests, tokens and cost, then exit without sending anything."}
    )
    show_progress: bool = field(default=True, metadata={"help": "Show a progress bar with rate, ETA and spend."})
    max_failure_rate: float = field(
        default=0.1,
        metadata={
            "help": (
                "Fail the stage (exit 2, nothing written, journal kept) when more than this fraction of its "
                "requests failed."
            ),
            "min": 0,
            "max": 1,
        },
    )
    replace_smaller_output: bool = field(
        default=False,
        metadata={"help": "Allow replacing a dataset from an earlier run of the same recipe with one of fewer rows."},
    )


def require_keys(recipe, *keys: str) -> None:
    """Keys a generation stage cannot run without (their defaults are empty so --help can show them)."""
    for key in keys:
        if not recipe.get(key):
            raise RecipeError(f"{recipe.path}: required key '{key}' is missing")


def check_generation(recipe, *required: str):
    """What every stage's check starts with: its required keys, an output_dir it can write, then its arguments built
    and their cross-key rules checked (``check(where)`` beside the fields; the bounds of each key are declared on
    the fields and checked by the recipe loader). Returns the built arguments."""
    require_keys(recipe, "output_dir", *required)
    check_output_dir(recipe)
    args = recipe.build("data")
    args.check(recipe.path)
    return args


def derived_seed(*parts: Any) -> int:
    """A stable 31-bit seed from any parts (Python's hash() is salted per process, so it cannot be used)."""
    return int(hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


def prompt_id(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def templates_hash(*templates: str) -> str:
    return text_sha256("\x00".join(templates))[:16]


def estimate_cost(teacher: TeacherConfig, requests: int, prompt_tokens: int, completion_tokens: int) -> dict:
    """Upper estimate: every completion assumed to use its whole max_tokens."""
    model = (
        teacher.endpoints[0]["model"] if teacher.endpoints else (teacher.local_server or {}).get("model_dir", "local")
    )
    cost = request_cost_usd(teacher.price(model), prompt_tokens, completion_tokens)
    return {
        "model": model,
        "requests": requests,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "cost_usd": round(cost, 4),
        "priced": model in teacher.prices,
    }


def print_estimate(rows: list[dict]) -> None:
    print(f"{'role':<16}{'model':<28}{'requests':>10}{'prompt tok':>12}{'completion tok':>16}{'cost USD':>11}")
    total = 0.0
    for row in rows:
        total += row["cost_usd"]
        note = "" if row["priced"] else "  (no price in the teacher config: counted as 0)"
        print(
            f"{row['role']:<16}{row['model'][-27:]:<28}{row['requests']:>10}{row['prompt_tokens']:>12}"
            f"{row['completion_tokens']:>16}{row['cost_usd']:>11.4f}{note}"
        )
    print(f"estimated total (upper bound, every reply at max_tokens): ${total:.4f}")


class StageFailed(UserError):
    """The stage ran but its result is not one to keep: nothing was written, the journal keeps what was paid for."""


# Keys that change how a run goes, not which rows it produces: two runs differing only in these are the same recipe
# when deciding whether a new dataset may replace an existing one.
_RUN_ONLY_KEYS = frozenset(
    {"output_dir", "show_progress", "dry_run", "max_cost_usd", "max_failure_rate", "replace_smaller_output"}
)


def stage_lock(out_dir: str) -> locks.DirectoryLock:
    """Hold ``out_dir`` for the whole run (``with stage_lock(dir):``); a second run on it stops at once."""
    return locks.acquire(out_dir)


def output_fingerprint(recipe) -> str:
    """What identifies the rows a recipe produces: its values, less the keys that only steer the run."""
    values = {k: v for k, v in recipe.values.items() if k not in _RUN_ONLY_KEYS}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def request_failures(gen) -> dict:
    """This run's requests and how many of them failed after every retry, with the most common error."""
    failed = requests = 0
    for counts in gen.stats()["requests"].values():
        failed += counts.get("failed", 0)
        requests += sum(counts.get(k, 0) for k in ("ok", "truncated", "failed", "cached"))
    errors = Counter(
        r.get("error") or "unknown error"
        for r in gen.journal.records.values()
        if r.get("status") == "failed" and r.get("time", 0) >= gen.started_at
    )
    top = errors.most_common(1)
    return {
        "requests": requests,
        "failed": failed,
        "journal": gen.journal.path,
        "most_common_error": {"error": top[0][0], "count": top[0][1]} if top else None,
    }


def _existing_rows(path: str) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def check_outcome(
    out_dir: str,
    stage: str,
    recipe,
    args: GenerationArguments,
    datasets: dict[str, list[dict]],
    stats: dict,
    failures: dict | None,
    detail: str = "",
) -> None:
    """Raise StageFailed when this run's datasets must not be written.

    A stage whose requests mostly failed, or that produced no rows at all, used to finish with exit 0 and empty
    datasets, and a pipeline then recorded it as complete and skipped it on every rerun. Now it exits 2 with one
    line, writes neither datasets nor manifest (so the next run is not skipped) and keeps its journal, so a rerun
    pays only for the requests that failed. A budget stop is not a failure: it stays a partial, resumable result.
    An existing dataset from the same recipe is never replaced by a smaller one unless replace_smaller_output is set.
    """
    failures = failures or {
        "requests": 0,
        "failed": 0,
        "journal": os.path.join(out_dir, "journal.jsonl"),
        "most_common_error": None,
    }
    failed, requests = failures["failed"], failures["requests"]
    rows = sum(len(r) for r in datasets.values())
    top = failures.get("most_common_error")
    common = f"; most common error: {top['error']!r} ({top['count']} times)" if top else ""
    keep = f"nothing was written and the journal {failures['journal']} is kept"
    retry = "only the failed requests are sent again"
    if not stats.get("stopped_by_budget"):
        if requests and failed / requests > args.max_failure_rate:
            raise StageFailed(
                f"{stage}: {failed} of {requests} requests failed (above max_failure_rate {args.max_failure_rate})"
                f"{common}; {keep}; fix the endpoint and rerun the same command: {retry} (or set max_failure_rate to "
                f"accept a partial dataset)"
            )
        if rows == 0:
            what = (
                f"{failed} of {requests} requests failed{common}"
                if failed
                else (detail or "every reply was filtered out")
            )
            raise StageFailed(
                f"{stage}: produced no rows ({what}); {keep}; fix the endpoint or the inputs and rerun the "
                f"same command: {retry}"
            )
    if args.replace_smaller_output:
        return
    try:
        with open(os.path.join(out_dir, "manifest.json"), encoding="utf-8") as f:
            previous = json.load(f)
    except (OSError, ValueError):
        return
    same = (
        previous.get("output_fingerprint") == output_fingerprint(recipe)
        if previous.get("output_fingerprint")
        else (previous.get("recipe") or {}).get("sha256") == recipe.sha256
    )
    if not same:
        return
    for name, new_rows in datasets.items():
        path = os.path.join(out_dir, name, "train.jsonl")
        if os.path.isfile(path) and len(new_rows) < (old := _existing_rows(path)):
            why = f" ({failed} of {requests} requests failed{common})" if failed else ""
            raise StageFailed(
                f"{path} has {old} rows from an earlier run of the same recipe but this run produced {len(new_rows)}"
                f"{why}; {keep}, the earlier dataset untouched; rerun the same command to retry ({retry}), or set "
                f"replace_smaller_output: true to replace it"
            )


def write_stage_outputs(
    out_dir: str,
    stage: str,
    recipe,
    datasets: dict[str, list[dict]],
    *,
    roles: dict[str, TeacherConfig],
    sampling: dict,
    templates: str,
    stats: dict,
    counts: dict,
    card_lines: list[str],
    failures: dict | None = None,
    detail: str = "",
) -> None:
    """Datasets (atomically), manifest.json and a dataset card. API keys never appear: only env var names.

    Refuses (StageFailed, nothing written) a run that must not replace what is there: see check_outcome.
    """
    args = recipe.build("data")
    check_outcome(out_dir, stage, recipe, args, datasets, stats, failures, detail)
    for name, rows in datasets.items():
        d = os.path.join(out_dir, name)
        os.makedirs(d, exist_ok=True)
        write_jsonl_atomic(os.path.join(d, "train.jsonl"), rows)
    write_manifest(
        out_dir,
        stage,
        recipe=recipe_record(recipe),
        output_fingerprint=output_fingerprint(recipe),
        teachers={role: t.public() for role, t in roles.items()},
        sampling=sampling,
        prompt_templates_sha256=templates,
        counts=counts,
        **({"failures": failures} if failures else {}),
        **stats,
    )
    write_card(
        out_dir,
        dataset_card_data(stage, out_dir, datasets),
        dataset_card_body(
            out_dir,
            stage,
            recipe,
            datasets,
            roles=roles,
            sampling=sampling,
            templates=templates,
            stats=stats,
            card_lines=card_lines,
        ),
    )


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


def dataset_card_data(stage: str, out_dir: str, datasets: dict[str, list[dict]], tags: tuple | list = ()):
    """Standard dataset-card metadata: one config per dataset of the stage, so ``datasets.load_dataset(out_dir,
    name)`` reads ``<name>/train.jsonl`` (and not the journal or the manifest beside it). An empty dataset gets no
    config: ``datasets`` cannot read a schema from an empty file, and fails without saying so.

    No license is stated: a generated dataset's terms follow its teachers' terms of use and its prompts' sources,
    which no recipe records, so the hub shows it as unknown rather than a guess.
    """
    from huggingface_hub import DatasetCardData

    return DatasetCardData(
        pretty_name=f"{stage}: {os.path.basename(os.path.abspath(out_dir))}",
        task_categories=["text-generation"],
        tags=["synthetic", "distillation", *tags],
        configs=[
            {"config_name": name, "data_files": [{"split": "train", "path": f"{name}/train.jsonl"}]}
            for name, rows in datasets.items()
            if rows
        ],
    )


def dataset_card_body(
    out_dir: str,
    stage: str,
    recipe,
    datasets: dict[str, list[dict]],
    *,
    roles: dict[str, TeacherConfig],
    sampling: dict,
    templates: str,
    stats: dict,
    card_lines: list[str],
) -> str:
    """The card's Markdown: teachers (a local model by its local_model_name), sampling, contents, requests and cost."""
    local_names = {role: local_model_name(t) for role, t in roles.items()}
    teacher_lines = [
        f"- {role}: `{t.name}` "
        + ", ".join(f"{e['model']} at {e['base_url']}" for e in t.public()["endpoints"])
        + (f"local model {local_names[role]}" if t.local_server else "")
        for role, t in roles.items()
    ]
    requests = {role: {**c, "model": local_names.get(role) or c.get("model")} for role, c in stats["requests"].items()}
    lines = [
        f"# {stage}: {os.path.basename(os.path.abspath(out_dir))}",
        "",
        f"Generated by `{stage}` from the recipe `{recipe.path}` (sha256 `{recipe.sha256[:12]}`).",
        "",
        "## Teachers",
        *teacher_lines,
        "",
        "## Sampling",
        "",
        "```json",
        json.dumps(sampling, indent=2, sort_keys=True),
        "```",
        f"Prompt templates sha256: `{templates}`",
        "",
        "## Contents",
        *[f"- `{name}/train.jsonl`: {len(rows)} rows" for name, rows in datasets.items()],
        *card_lines,
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


def load_prompts(path: str) -> list[str]:
    """Prompt texts from a prompt dataset (a JSONL file or a directory with train.jsonl): 'prompt' or the first
    user turn."""
    if os.path.isdir(path):
        path = os.path.join(path, "train.jsonl")
    prompts = []
    for n, row in read_jsonl(path):
        if isinstance(row.get("prompt"), str) and row["prompt"].strip():
            prompts.append(row["prompt"].strip())
        elif isinstance(row.get("messages"), list):
            user = next(
                (m.get("content") for m in row["messages"] if isinstance(m, dict) and m.get("role") == "user"), None
            )
            if not user:
                raise DataError(f"{path} line {n}: 'messages' has no user turn")
            prompts.append(user)
        else:
            raise DataError(
                f"{path} line {n}: a prompt row needs 'prompt' (string) or 'messages'; got keys {sorted(row)}"
            )
    if not prompts:
        raise DataError(f"{path}: no prompts found")
    return prompts


# -- duplicates in a stage's inputs, found before the first request is paid for ------------------------------------


def refuse_duplicates(items: list, where: str, name: str) -> None:
    """RecipeError naming the first entry of a recipe list that repeats an earlier one."""
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        key = json.dumps(item, sort_keys=True, default=str)
        if key in seen:
            raise RecipeError(f"{where}: {name}[{i}] repeats {name}[{seen[key]}] ({item!r}); list each one once")
        seen[key] = i


def dedupe_prompts(prompts: list[str], source: str) -> list[str]:
    """The prompts in first-seen order, each once: a repeated prompt would be paid for twice and, downstream, give
    two rows with one prompt_id, which binarization refuses."""
    unique = list(dict.fromkeys(prompts))
    if len(unique) < len(prompts):
        logger.warning(
            "%s: %d duplicate prompt(s) dropped; %d distinct prompts are used",
            source,
            len(prompts) - len(unique),
            len(unique),
        )
    return unique


def refuse_duplicate_rows(path: str, key_of, what: str, fix: str, limit: int | None = None) -> None:
    """DataError naming both line numbers of the first two rows of a JSONL file (or directory's train.jsonl) that share
    ``key_of(row)``; only the first ``limit`` rows are read."""
    if os.path.isdir(path):
        path = os.path.join(path, "train.jsonl")
    seen: dict[Any, int] = {}
    for count, (n, row) in enumerate(read_jsonl(path)):
        if limit is not None and count >= limit:
            return
        key = key_of(row)
        if key in seen:
            raise DataError(f"{path} lines {seen[key]} and {n}: both hold {what} {key!r}; {fix}")
        seen[key] = n
