"""What the generation stages share: recipe keys, seed handling, cost estimates and the stage record."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Optional

from distill_core.jsonl import write_jsonl_atomic
from distill_core.errors import DataError, RecipeError
from distill_core.jsonl import read_jsonl
from distill_core.records import text_sha256, write_atomic, write_manifest
from distill_core.recipe import check_output_dir

from .endpoints import TeacherConfig

logger = logging.getLogger(__name__)


@dataclass
class GenerationArguments:
    """Keys every generation stage accepts."""

    teacher: Any = field(default="local", metadata={"help": "Teacher: a name under recipes/teachers/ (gpt-4, vllm, local), a path to a teacher YAML, or an inline mapping."})
    output_dir: str = field(default="", metadata={"help": "Where the datasets, journal, manifest and card are written."})
    seed: int = field(default=42, metadata={"help": "Seed for every sampling decision; a rerun with the same seed yields the same dataset."})
    max_cost_usd: Optional[float] = field(default=None, metadata={"help": "Stop cleanly, keeping everything done so far, once this much has been spent.", "exclusive_min": 0, "fix": "omit the key for no budget"})
    keep_truncated: bool = field(default=False, metadata={"help": "Keep replies cut by max_tokens (finish_reason=length); they are always flagged."})
    dry_run: bool = field(default=False, metadata={"help": "Estimate requests, tokens and cost, then exit without sending anything."})
    show_progress: bool = field(default=True, metadata={"help": "Show a progress bar with rate, ETA and spend."})


def require_keys(recipe, *keys: str) -> None:
    """Keys a generation stage cannot run without (their defaults are empty so --help can show them)."""
    for key in keys:
        if not recipe.get(key):
            raise RecipeError(f"{recipe.path}: required key '{key}' is missing")


def check_generation(recipe, *required: str) -> None:
    """What every stage's check starts with: its required keys and an output_dir it can write (the value bounds
    of each key are declared on the fields and checked by the recipe loader)."""
    require_keys(recipe, "output_dir", *required)
    check_output_dir(recipe)


def derived_seed(*parts: Any) -> int:
    """A stable 31-bit seed from any parts (Python's hash() is salted per process, so it cannot be used)."""
    return int(hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


def prompt_id(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def templates_hash(*templates: str) -> str:
    return text_sha256("\x00".join(templates))[:16]


def estimate_cost(teacher: TeacherConfig, requests: int, prompt_tokens: int, completion_tokens: int) -> dict:
    """Upper estimate: every completion assumed to use its whole max_tokens."""
    model = teacher.endpoints[0]["model"] if teacher.endpoints else (teacher.local_server or {}).get("model_dir", "local")
    price_in, price_out = teacher.price(model)
    cost = (prompt_tokens * price_in + completion_tokens * price_out) / 1e6
    return {"model": model, "requests": requests, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "cost_usd": round(cost, 4), "priced": model in teacher.prices}


def print_estimate(rows: list[dict]) -> None:
    print(f"{'role':<16}{'model':<28}{'requests':>10}{'prompt tok':>12}{'completion tok':>16}{'cost USD':>11}")
    total = 0.0
    for row in rows:
        total += row["cost_usd"]
        note = "" if row["priced"] else "  (no price in the teacher config: counted as 0)"
        print(f"{row['role']:<16}{row['model'][-27:]:<28}{row['requests']:>10}{row['prompt_tokens']:>12}"
              f"{row['completion_tokens']:>16}{row['cost_usd']:>11.4f}{note}")
    print(f"estimated total (upper bound, every reply at max_tokens): ${total:.4f}")


def write_stage_outputs(out_dir: str, stage: str, recipe, datasets: dict[str, list[dict]], *, roles: dict[str, TeacherConfig],
                        sampling: dict, templates: str, stats: dict, counts: dict, card_lines: list[str]) -> None:
    """Datasets (atomically), manifest.json and a dataset card. API keys never appear: only env var names."""
    for name, rows in datasets.items():
        d = os.path.join(out_dir, name)
        os.makedirs(d, exist_ok=True)
        write_jsonl_atomic(os.path.join(d, "train.jsonl"), rows)
    write_manifest(
        out_dir, stage,
        recipe={"path": recipe.path, "sha256": recipe.sha256, "values": recipe.values, "overrides": recipe.overrides},
        teachers={role: t.public() for role, t in roles.items()},
        sampling=sampling, prompt_templates_sha256=templates, counts=counts, **stats,
    )
    teacher_lines = [f"- {role}: `{t.name}` " + ", ".join(f"{e['model']} at {e['base_url']}" for e in t.public()["endpoints"])
                     + (f"local model {t.local_server.get('model_dir')}" if t.local_server else "")
                     for role, t in roles.items()]
    lines = [
        "---", "tags: [synthetic, distillation]", "---", "",
        f"# {stage}: {os.path.basename(os.path.abspath(out_dir))}", "",
        f"Generated by `{stage}` from the recipe `{recipe.path}` (sha256 `{recipe.sha256[:12]}`).", "",
        "## Teachers", *teacher_lines, "",
        "## Sampling", "", "```json", json.dumps(sampling, indent=2, sort_keys=True), "```",
        f"Prompt templates sha256: `{templates}`", "",
        "## Contents", *[f"- `{name}/train.jsonl`: {len(rows)} rows" for name, rows in datasets.items()],
        *card_lines, "",
        "## Requests and cost",
        f"- total cost: ${stats['cost_usd']:.4f}" + (f" (budget ${stats['max_cost_usd']})" if stats.get("max_cost_usd") else ""),
        *[f"- {role}: {json.dumps(c, sort_keys=True)}" for role, c in stats["requests"].items()],
        f"- wall time: {stats['wall_time_s']} s" + (" — stopped early: max_cost_usd reached" if stats.get("stopped_by_budget") else ""),
    ]
    write_atomic(os.path.join(out_dir, "README.md"), "\n".join(lines) + "\n")


def load_prompts(path: str) -> list[str]:
    """Prompt texts from a prompt dataset (JSONL file or directory with train.jsonl): 'prompt' or the first user turn."""
    if os.path.isdir(path):
        path = os.path.join(path, "train.jsonl")
    prompts = []
    for n, row in read_jsonl(path):
        if isinstance(row.get("prompt"), str) and row["prompt"].strip():
            prompts.append(row["prompt"].strip())
        elif isinstance(row.get("messages"), list):
            user = next((m.get("content") for m in row["messages"] if isinstance(m, dict) and m.get("role") == "user"), None)
            if not user:
                raise DataError(f"{path} line {n}: 'messages' has no user turn")
            prompts.append(user)
        else:
            raise DataError(f"{path} line {n}: a prompt row needs 'prompt' (string) or 'messages'; got keys {sorted(row)}")
    if not prompts:
        raise DataError(f"{path}: no prompts found")
    return prompts
