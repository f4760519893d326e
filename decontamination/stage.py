"""The decontaminate stage: load the training data and the benchmarks, remove the rows that hold benchmark text,
and write the clean dataset, the removed rows with what they matched, a manifest and a card.

``dataset_split`` names one split or several (UltraChat's ``[train_sft, test_sft]``): all are checked in one scan,
the gate counts a benchmark's items found in any of them, and each is written under its own name, so a training
mixture reads the clean directory with the split names it read the original with. Outputs: decontamination/outputs.py.

The rows are streamed from the datasets on disk (Arrow, memory-mapped): read once for the scan and once to write
the clean rows; only the removed rows are held, so memory does not grow with the corpus.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

from distill_core.errors import DataError

from .benchmarks import load_benchmark
from .index import BenchmarkIndex
from .normalize import Normalization
from .outputs import write_outputs
from .rows import dataset_rows
from .scan import Options, Result, decontaminate


@dataclass
class SplitResult:
    """One split's share of the scan: its row count, and its rows removed (``row_index`` within the split)."""

    rows: int
    removed: list[dict]

    @property
    def kept(self) -> int:
        return self.rows - len(self.removed)


def run_decontaminate(recipe) -> str:
    args = recipe.build("data")
    started = time.time()
    splits = load_splits(args, recipe.path)
    items = [item for source in recipe.parsed["benchmarks"] for item in load_benchmark(source, recipe.path)]
    how = Normalization(args.lowercase, args.strip_punctuation, args.unicode_form)
    index = BenchmarkIndex.build(items, args.ngram_size, how)
    columns = tuple(args.text_columns) if args.text_columns else None
    options = Options(args.check, columns, args.rule, args.threshold, args.workers, args.max_examples)
    rows = progress((row for part in splits.values() for row in dataset_rows(part)), splits, args.show_progress)
    result = decontaminate(rows, index, options, f"{recipe.path}: dataset '{args.dataset}'")
    by_split = divide(result, {split: len(part) for split, part in splits.items()})
    for source in recipe.parsed["benchmarks"]:  # each benchmark's gate, recorded beside its findings
        own = source.max_contaminated_fraction
        result.report[source.name]["max_contaminated_fraction"] = (
            args.max_contaminated_fraction if own is None else own
        )
    breach = gate_breach(result)
    keep = not breach or args.continue_on_contamination
    warnings = [f"gate breached but continue_on_contamination is set: {breach}"] if breach and keep else []
    write_outputs(recipe, args, result, by_split, splits if keep else None, index, time.time() - started, warnings)
    if not keep:
        raise DataError(f"{recipe.path}: {breach}; see {args.output_dir}/removed/, or set "
                        f"continue_on_contamination: true to keep the clean data and go on")  # fmt: skip
    return "; ".join([f"{result.kept} rows kept, {len(result.removed)} removed ({args.output_dir})", *warnings])


def load_splits(args, source: str) -> dict:
    """Each split as a ``datasets.Dataset``: on disk (Arrow, memory-mapped), read row by row as the scan asks."""
    from training.data import load_split
    from training.mixture import DatasetSpec

    splits = {}
    for split in args.dataset_split:
        spec = DatasetSpec(id=args.dataset, split=split, config=args.dataset_config)
        splits[split] = load_split(spec, split, source)
        if not len(splits[split]):
            raise DataError(f"{source}: dataset '{args.dataset}' split '{split}' is empty; fix the path or the split")
    return splits


def progress(rows: Iterator[dict], splits: dict, show: bool) -> Iterator[dict]:
    """The rows, counted on a progress bar (rows scanned, rate, ETA) when ``show``."""
    if not show:
        return rows
    from tqdm import tqdm

    total = sum(len(part) for part in splits.values())
    return tqdm(rows, total=total, desc="decontaminating", unit="row", unit_scale=True, dynamic_ncols=True)


def divide(result: Result, sizes: dict[str, int]) -> dict[str, SplitResult]:
    """The scan of all splits' rows (in order) told apart again; each removed row and each example of the report
    gains its split and its index within it."""
    bounds, at = [], 0
    for split, size in sizes.items():
        bounds.append((at, at + size, split))
        at += size

    def where(i: int) -> tuple[str, int]:
        lo, split = next((lo, name) for lo, hi, name in bounds if lo <= i < hi)
        return split, i - lo

    out = {split: SplitResult(size, []) for split, size in sizes.items()}
    for entry in result.removed:
        split, local = where(entry["row_index"])
        out[split].removed.append({"split": split, **entry, "row_index": local})
    for entry in result.report.values():
        for example in entry["examples"]:
            example["split"], example["row_index"] = where(example["row_index"])
    return out


def gate_breach(result: Result) -> str:
    """The first benchmark (by name) whose contaminated fraction is above its gate (the report entry's
    ``max_contaminated_fraction``; None: no gate), said in words; '' if none."""
    for name, entry in sorted(result.report.items()):
        limit = entry.get("max_contaminated_fraction")
        if limit is not None and entry["contaminated_fraction"] > limit:
            return (
                f"benchmark '{name}': {entry['items_hit']} of {entry['items'] - entry['too_short']} items "
                f"({entry['contaminated_fraction']:.2%}) found in the training data, above max_contaminated_fraction "
                f"{limit}"
            )
    return ""
