"""Dataset mixtures: which datasets, which splits, how much of each, checked before training.

A recipe names its data like this (the handbook's shape)::

    dataset_mixture:
      datasets:
        - id: HuggingFaceH4/ultrachat_200k   # hub id, a directory, or a .jsonl/.json/.parquet/.csv file
          config: null                      # hub config name, optional
          split: train_sft                  # training split
          test_split: test_sft              # evaluation split, optional; never enters training
          columns: [messages]               # columns kept (others dropped before mixing)
          weight: 1.0                       # fraction of the split used; above 1 repeats examples
      seed: 42                              # sampling and shuffling seed
      test_split_size: null                 # carve this many (or this fraction) of train for eval

Structure and local paths are validated without importing ``datasets``; columns are checked when the
data is loaded, before the model is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from distill_core.errors import DataError, RecipeError

FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
_ENTRY_KEYS = {"id", "config", "split", "test_split", "columns", "weight"}
_MIXTURE_KEYS = {"datasets", "seed", "test_split_size"}


@dataclass
class DatasetSpec:
    id: str
    split: str = "train"
    test_split: str | None = None
    config: str | None = None
    columns: list[str] | None = None
    weight: float = 1.0

    @property
    def is_local(self) -> bool:
        return _looks_local(self.id)


@dataclass
class Mixture:
    datasets: list[DatasetSpec]
    seed: int = 42
    test_split_size: float | int | None = None
    source: str = ""  # the recipe path, for error messages
    extra: dict[str, Any] = field(default_factory=dict)


def _looks_local(ident: str) -> bool:
    return (
        os.path.exists(ident)
        or ident.startswith((".", "/", "~"))
        or os.path.splitext(ident)[1] in FILE_BUILDERS
        or ident.count("/") > 1
    )


def parse_mixture(raw: Any, source: str) -> Mixture:
    """Validate the dataset_mixture block of a recipe (no heavy imports)."""
    where = f"{source}: dataset_mixture"
    if not isinstance(raw, dict):
        raise RecipeError(f"{where} must be a mapping with a 'datasets' list; see recipes/smoke/sft.yaml")
    unknown = set(raw) - _MIXTURE_KEYS
    if unknown:
        raise RecipeError(f"{where}: unknown key '{sorted(unknown)[0]}'; valid keys are {sorted(_MIXTURE_KEYS)}")
    entries = raw.get("datasets")
    if not isinstance(entries, list) or not entries:
        raise RecipeError(f"{where}.datasets must be a non-empty list of {{id, split, columns, weight}} entries")
    specs = []
    for i, entry in enumerate(entries):
        at = f"{where}.datasets[{i}]"
        if not isinstance(entry, dict) or "id" not in entry:
            raise RecipeError(f"{at} must be a mapping with at least an 'id' (hub id or local path)")
        bad = set(entry) - _ENTRY_KEYS
        if bad:
            raise RecipeError(f"{at}: unknown key '{sorted(bad)[0]}'; valid keys are {sorted(_ENTRY_KEYS)}")
        weight = entry.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
            raise RecipeError(f"{at}.weight must be a number > 0 (fraction of the split to use), got {weight!r}")
        columns = entry.get("columns")
        if columns is not None and (not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)):
            raise RecipeError(f"{at}.columns must be a list of column names, got {columns!r}")
        spec = DatasetSpec(
            id=str(entry["id"]),
            split=str(entry.get("split", "train")),
            test_split=entry.get("test_split"),
            config=entry.get("config"),
            columns=columns,
            weight=float(weight),
        )
        if spec.test_split is not None and spec.test_split == spec.split:
            raise RecipeError(
                f"{at}: test_split and split are both '{spec.split}'; test data must never enter training"
            )
        if spec.is_local and not os.path.exists(os.path.expanduser(spec.id)):
            raise DataError(f"{at}.id: dataset path '{spec.id}' does not exist; build it first or fix the path")
        specs.append(spec)
    for spec in specs:
        if spec.test_split and any(
            s.split == spec.test_split for s in specs if (s.id, s.config) == (spec.id, spec.config)
        ):
            raise RecipeError(f"{where}: '{spec.id}' split '{spec.test_split}' is used for both training and test")
    size = raw.get("test_split_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, (int, float)) or size <= 0):
        raise RecipeError(f"{where}.test_split_size must be a positive count or a fraction below 1, got {size!r}")
    seed = raw.get("seed", 42)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise RecipeError(f"{where}.seed must be an integer, got {seed!r}")
    return Mixture(specs, seed, size, source)


def describe_mixture(mixture: Mixture) -> list[str]:
    return [
        f"{s.id} [{s.split}] x{s.weight:g}" + (f" (test: {s.test_split})" if s.test_split else "")
        for s in mixture.datasets
    ]
