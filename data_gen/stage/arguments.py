"""The recipe keys every generation stage accepts, and the check each stage's own check starts with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from distill_core.errors import RecipeError
from distill_core.recipe import check_output_dir


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
