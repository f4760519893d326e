"""Benchmark items to check against: JSON lines with a text field, or any dataset and column the mixture loader
reads. A field holding a list of strings (MT-Bench's ``turns``) is one item whose parts are joined by newlines."""

from __future__ import annotations

import os
from dataclasses import dataclass

from distill_core.errors import DataError, RecipeError
from distill_core.jsonl import read_jsonl

_KEYS = {"name", "path", "text_field", "id_field", "dataset", "config", "split", "max_contaminated_fraction"}


@dataclass(frozen=True)
class BenchmarkItem:
    benchmark: str
    item_id: str
    text: str


@dataclass(frozen=True)
class BenchmarkSource:
    name: str
    path: str  # a JSONL file, or a dataset id / directory when ``is_dataset``
    text_field: str = "text"
    id_field: str = "id"
    is_dataset: bool = False
    config: str | None = None
    split: str = "test"
    max_contaminated_fraction: float | None = None  # this benchmark's gate, in place of the stage's


def parse_benchmarks(raw, where: str) -> list[BenchmarkSource]:
    """``benchmarks:`` entries: a JSONL path, or a mapping {path|dataset, name, text_field, id_field, split,
    max_contaminated_fraction}."""
    if not isinstance(raw, list) or not raw:
        raise RecipeError(f"{where}: 'benchmarks' must be a non-empty list of JSONL paths or {{path, text_field}}")
    sources = []
    for i, entry in enumerate(raw):
        at = f"{where}: benchmarks[{i}]"
        entry = {"path": entry} if isinstance(entry, str) else entry
        if not isinstance(entry, dict) or bool(entry.get("path")) == bool(entry.get("dataset")):
            raise RecipeError(f"{at} must be a JSONL path or a mapping with one of 'path' or 'dataset'")
        if set(entry) - _KEYS:
            raise RecipeError(f"{at}: unknown key '{sorted(set(entry) - _KEYS)[0]}'; valid keys are {sorted(_KEYS)}")
        path = str(entry.get("path") or entry.get("dataset"))
        if entry.get("path") and not os.path.isfile(path):
            raise DataError(f"{at}: benchmark file '{path}' not found; fix the path")
        name = str(entry.get("name") or os.path.splitext(os.path.basename(path.rstrip("/")))[0])
        gate = entry.get("max_contaminated_fraction")
        if gate is not None and (isinstance(gate, bool) or not isinstance(gate, (int, float)) or not 0 <= gate <= 1):
            raise RecipeError(
                f"{at}: max_contaminated_fraction {gate!r} must be a fraction in [0, 1] (0.05 lets 5% of "
                f"'{name}' items through); omit it to use the stage's"
            )
        sources.append(
            BenchmarkSource(
                name,
                path,
                str(entry.get("text_field", "text")),
                str(entry.get("id_field", "id")),
                bool(entry.get("dataset")),
                entry.get("config"),
                str(entry.get("split", "test")),
                None if gate is None else float(gate),
            )  # fmt: skip
        )
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise RecipeError(f"{where}: two benchmarks are named '{dup}'; give one a 'name'")
    return sources


def load_benchmark(source: BenchmarkSource, where: str) -> list[BenchmarkItem]:
    """The items of one benchmark; a missing text field or an empty benchmark is a one-line DataError."""
    if source.is_dataset:
        from training.data import load_split
        from training.mixture import DatasetSpec

        spec = DatasetSpec(id=source.path, split=source.split, config=source.config)
        rows = enumerate(load_split(spec, source.split, where).to_list(), 1)
    else:
        rows = read_jsonl(source.path)
    items = []
    for line, row in rows:
        value = row.get(source.text_field)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = "\n".join(value)
        if not isinstance(value, str):
            raise DataError(
                f"{source.path} row {line}: no text field '{source.text_field}' (it has {sorted(row)[:8]}); set "
                f"text_field for benchmark '{source.name}'"
            )
        item_id = row.get(source.id_field)
        items.append(BenchmarkItem(source.name, str(item_id if item_id is not None else line), value))
    if not items:
        raise DataError(f"{source.path}: benchmark '{source.name}' has no items; fix the path or remove it")
    return items
