"""Loading a dataset mixture: each split loaded, its columns checked and brought into TRL's format, subsampled by
weight and mixed, with the evaluation split kept apart. training/mixture.py describes and validates the recipe's
dataset_mixture block.
"""

from __future__ import annotations

import logging
import math
import os

from distill_core.errors import DataError, first_line

from .columns import check_columns, prepare_sft_columns
from .mixture import FILE_BUILDERS, DatasetSpec, Mixture
from .preference_prompts import prepare_preference_columns

logger = logging.getLogger(__name__)


def split_file(directory: str, split: str) -> str | None:
    """``<directory>/<split>.jsonl`` (or .json, .parquet, .csv) when it exists: the layout the data stages write
    (a decontaminate stage's ``clean/train_sft.jsonl``)."""
    for extension in FILE_BUILDERS:
        path = os.path.join(directory, split + extension)
        if os.path.isfile(path):
            return path
    return None


def load_split(spec: DatasetSpec, split: str, source: str):
    """One split of a hub dataset, a local dataset directory or a data file.

    A directory holding ``<split>.jsonl`` is read from that file alone: any split name works (``datasets`` infers
    only train, test and validation from file names, and would read train_sft.jsonl as part of train), and the cache
    is keyed by the file and its modification time, so a rewritten file is read anew.
    """
    import datasets

    path = os.path.expanduser(spec.id)
    try:
        if spec.is_local:
            if os.path.isdir(path) and os.path.exists(os.path.join(path, "dataset_dict.json")):
                return datasets.load_from_disk(path)[split]
            if os.path.isdir(path) and os.path.exists(os.path.join(path, "dataset_info.json")):
                return datasets.load_from_disk(path)
            if os.path.isdir(path):
                path = split_file(path, split) or path
            if os.path.isfile(path):
                builder = FILE_BUILDERS.get(os.path.splitext(path)[1])
                if builder is None:
                    raise DataError(
                        f"{source}: dataset file '{spec.id}' has an unsupported extension; use .jsonl, .json, "
                        ".parquet or .csv"
                    )
                return datasets.load_dataset(builder, data_files={split: path}, split=split)
            return datasets.load_dataset(path, spec.config, split=split)
        return datasets.load_dataset(spec.id, spec.config, split=split)
    except DataError:
        raise
    except (KeyError, ValueError) as exc:
        if "split" in str(exc).lower() or isinstance(exc, KeyError):
            raise DataError(
                f"{source}: dataset '{spec.id}' has no split '{split}' ({first_line(exc)[:300]}); fix split/test_split"
            ) from None
        raise DataError(
            f"{source}: could not load dataset '{spec.id}' split '{split}': {first_line(exc)[:300]}"
        ) from None
    except Exception as exc:  # hub, network and format errors all get the same one-line treatment
        raise DataError(
            f"{source}: could not load dataset '{spec.id}' split '{split}': {first_line(exc)[:300]}"
        ) from None


def load_mixture(mixture: Mixture, layouts: tuple[tuple[str, ...], ...], stage: str):
    """Load, check, subsample and mix. Returns (train, eval or None)."""
    import datasets

    trains, tests = [], []
    for spec in mixture.datasets:
        ds = load_split(spec, spec.split, mixture.source)
        if spec.columns:
            missing = [c for c in spec.columns if c not in ds.column_names]
            if missing:
                raise DataError(
                    f"{mixture.source}: dataset '{spec.id}' split '{spec.split}' lacks column '{missing[0]}' listed "
                    "in "
                    f"dataset_mixture columns; it has {sorted(ds.column_names)}"
                )
            ds = ds.select_columns(spec.columns)
        if len(ds) == 0:
            raise DataError(f"{mixture.source}: dataset '{spec.id}' split '{spec.split}' is empty")
        layout = check_columns(ds, spec, layouts, mixture.source, stage)
        prepare = prepare_preference_columns if "chosen" in layout else prepare_sft_columns
        trains.append(_apply_weight(prepare(ds, spec, layout, mixture.source), spec.weight, mixture.seed))
        if spec.test_split:
            test = load_split(spec, spec.test_split, mixture.source)
            test_spec = DatasetSpec(spec.id, spec.test_split, None, spec.config, spec.columns, spec.weight)
            tests.append(
                prepare(
                    test, test_spec, check_columns(test, test_spec, (layout,), mixture.source, stage), mixture.source
                )
            )

    try:
        train = datasets.concatenate_datasets(trains).shuffle(seed=mixture.seed)
        test = datasets.concatenate_datasets(tests) if tests else None
    except ValueError as exc:
        raise DataError(
            f"{mixture.source}: the datasets in dataset_mixture cannot be mixed ({first_line(exc)[:300]}); "
            f"give them the same columns and types via 'columns'"
        ) from None
    if mixture.test_split_size:
        size = mixture.test_split_size
        split = train.train_test_split(test_size=size if size < 1 else int(size), seed=mixture.seed)
        train = split["train"]
        test = split["test"] if test is None else datasets.concatenate_datasets([test, split["test"]])
    logger.info(
        "training examples: %d%s", len(train), f", evaluation examples: {len(test)}" if test is not None else ""
    )
    return train, test


def _apply_weight(ds, weight: float, seed: int):
    if weight == 1.0:
        return ds
    n = max(1, int(math.floor(len(ds) * weight)))
    if weight < 1.0:
        return ds.shuffle(seed=seed).select(range(n))
    return ds.select([i % len(ds) for i in range(n)])
