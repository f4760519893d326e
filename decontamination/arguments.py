"""The decontaminate stage's recipe keys, declared where they are checked."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Optional

from distill_core.errors import RecipeError
from distill_core.recipe import Recipe, check_output_dir

from .benchmarks import parse_benchmarks

Check = Literal["user", "assistant", "both"]
Rule = Literal["ngram", "coverage"]
UnicodeForm = Literal["NFKC", "NFC", "none"]


@dataclass
class DecontaminateArguments:
    dataset: str = field(
        default="",
        metadata={
            "help": "The training data: a hub id, a directory (with train.jsonl) or a .jsonl/.json/.parquet "
            "file, read by the same loader as training's dataset_mixture."
        },  # fmt: skip
    )
    dataset_split: list[str] = field(
        default_factory=lambda: ["train"],
        metadata={
            "help": "Split(s) of the training data to check: one name or a list ([train_sft, test_sft]). Each is "
            "written as clean/<split>.jsonl, so a training mixture reads the clean directory with the same split "
            "names; the gate counts items found in any of them."
        },  # fmt: skip
    )
    dataset_config: Optional[str] = field(default=None, metadata={"help": "Hub config of the training data."})
    benchmarks: list = field(
        default_factory=list,
        metadata={
            "help": "Benchmarks: JSONL paths (field 'text'), or {path, text_field, id_field, name} or "
            "{dataset, split, config, text_field, name} mappings."
        },  # fmt: skip
    )
    output_dir: str = field(default="", metadata={"help": "Where clean/, removed/, manifest.json and README.md go."})
    ngram_size: int = field(default=13, metadata={"help": "Words per n-gram (13 as lm-eval/GPT-3, 8 as "
                            "open-instruct).", "min": 3, "fix": "use 8 or 13"})  # fmt: skip
    check: Check = field(default="both", metadata={"help": "Which turns are checked: user, assistant or both."})
    text_columns: Optional[list[str]] = field(
        default=None, metadata={"help": "Columns to check; omitted: messages, prompt, chosen, rejected, completions."}
    )
    rule: Rule = field(
        default="ngram",
        metadata={
            "help": "ngram: any shared n-gram removes a row (lm-eval); coverage: matched n-grams cover at "
            "least 'threshold' of a benchmark item's words (open-instruct)."
        },  # fmt: skip
    )
    threshold: float = field(
        default=0.5,
        metadata={
            "help": "Coverage rule: fraction of an item's words that must be covered.",
            "exclusive_min": 0,
            "max": 1,
        },  # fmt: skip
    )
    lowercase: bool = field(default=True, metadata={"help": "Lowercase before comparing."})
    strip_punctuation: bool = field(default=True, metadata={"help": "Delete Unicode punctuation before comparing."})
    unicode_form: UnicodeForm = field(default="NFKC", metadata={"help": "Unicode normal form applied first."})
    max_contaminated_fraction: Optional[float] = field(
        default=None,
        metadata={
            "help": "Gate: fail (exit 2) when more than this fraction of a benchmark's items is found in the "
            "training data.",
            "min": 0,
            "max": 1,
            "fix": "omit the key for no gate",
        },  # fmt: skip
    )
    continue_on_contamination: bool = field(
        default=False, metadata={"help": "Report a gate breach but write the clean data and exit 0."}
    )
    workers: int = field(default=2, metadata={"help": "Processes scanning the training data.", "min": 1})
    max_examples: int = field(default=3, metadata={"help": "Removed rows shown per benchmark in the card.", "min": 0})
    show_progress: bool = field(default=True, metadata={"help": "Show a progress bar over the rows (rate, ETA)."})


def check_decontaminate(recipe: Recipe) -> None:
    for key in ("dataset", "output_dir"):
        if not recipe.get(key):
            raise RecipeError(f"{recipe.path}: required key '{key}' is missing")
    check_output_dir(recipe)
    splits = recipe.get("dataset_split", ["train"])
    if not splits or len(set(splits)) != len(splits) or not all(re.fullmatch(r"\w+(\.\w+)*", s) for s in splits):
        raise RecipeError(
            f"{recipe.path}: dataset_split {splits!r} must name one split or a list of distinct split names (letters, "
            f"digits, _); fix the list"
        )
    recipe.parsed["benchmarks"] = parse_benchmarks(recipe.get("benchmarks"), recipe.path)
