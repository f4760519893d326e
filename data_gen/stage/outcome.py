"""Whether a run's datasets may be written: its failures counted, and the refusals of a failed or shrunken run."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter

from distill_core.errors import UserError

from .arguments import GenerationArguments


class StageFailed(UserError):
    """The stage ran but its result is not one to keep: nothing was written, the journal keeps what was paid for."""


# Keys that change how a run goes, not which rows it produces: two runs differing only in these are the same recipe
# when deciding whether a new dataset may replace an existing one.
_RUN_ONLY_KEYS = frozenset(
    {"output_dir", "show_progress", "dry_run", "max_cost_usd", "max_failure_rate", "replace_smaller_output"}
)
_RETRY = "only the failed requests are sent again"


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
    if not stats.get("stopped_by_budget"):
        _refuse_failed_run(stage, args, sum(len(r) for r in datasets.values()), failures, detail)
    if not args.replace_smaller_output and _same_recipe_wrote(out_dir, recipe):
        _refuse_smaller_datasets(out_dir, datasets, failures)


def _refuse_failed_run(stage: str, args: GenerationArguments, rows: int, failures: dict, detail: str) -> None:
    failed, requests = failures["failed"], failures["requests"]
    if requests and failed / requests > args.max_failure_rate:
        raise StageFailed(
            f"{stage}: {failed} of {requests} requests failed (above max_failure_rate {args.max_failure_rate})"
            f"{_most_common(failures)}; {_nothing_written(failures)}; fix the endpoint and rerun the same command: "
            f"{_RETRY} (or set max_failure_rate to accept a partial dataset)"
        )
    if rows == 0:
        what = (
            f"{failed} of {requests} requests failed{_most_common(failures)}"
            if failed
            else (detail or "every reply was filtered out")
        )
        raise StageFailed(
            f"{stage}: produced no rows ({what}); {_nothing_written(failures)}; fix the endpoint or the inputs and "
            f"rerun the same command: {_RETRY}"
        )


def _same_recipe_wrote(out_dir: str, recipe) -> bool:
    """Whether the manifest in ``out_dir`` is from a run of this recipe (the same rows, however the run went)."""
    try:
        with open(os.path.join(out_dir, "manifest.json"), encoding="utf-8") as f:
            previous = json.load(f)
    except (OSError, ValueError):
        return False
    if previous.get("output_fingerprint"):
        return previous.get("output_fingerprint") == output_fingerprint(recipe)
    return (previous.get("recipe") or {}).get("sha256") == recipe.sha256


def _refuse_smaller_datasets(out_dir: str, datasets: dict[str, list[dict]], failures: dict) -> None:
    failed, requests = failures["failed"], failures["requests"]
    for name, new_rows in datasets.items():
        path = os.path.join(out_dir, name, "train.jsonl")
        if os.path.isfile(path) and len(new_rows) < (old := _existing_rows(path)):
            why = f" ({failed} of {requests} requests failed{_most_common(failures)})" if failed else ""
            raise StageFailed(
                f"{path} has {old} rows from an earlier run of the same recipe but this run produced {len(new_rows)}"
                f"{why}; {_nothing_written(failures)}, the earlier dataset untouched; rerun the same command to "
                f"retry ({_RETRY}), or set replace_smaller_output: true to replace it"
            )


def _most_common(failures: dict) -> str:
    top = failures.get("most_common_error")
    return f"; most common error: {top['error']!r} ({top['count']} times)" if top else ""


def _nothing_written(failures: dict) -> str:
    return f"nothing was written and the journal {failures['journal']} is kept"


def _existing_rows(path: str) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())
