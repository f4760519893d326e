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

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any

from distill_core.errors import DataError, RecipeError, first_line

logger = logging.getLogger(__name__)

_FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
_ENTRY_KEYS = {"id", "config", "split", "test_split", "columns", "weight"}
_MIXTURE_KEYS = {"datasets", "seed", "test_split_size"}

# What each stage needs; each tuple is one accepted layout (TRL's formats).
SFT_LAYOUTS = (("messages",), ("prompt", "completion"), ("text",))
PREFERENCE_LAYOUTS = (("prompt", "chosen", "rejected"), ("chosen", "rejected"))
CHAT_ROLES = ("system", "user", "assistant")  # the roles the Zephyr template (and TRL's formats) render


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
        or os.path.splitext(ident)[1] in _FILE_BUILDERS
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


def _load_split(spec: DatasetSpec, split: str, source: str):
    import datasets

    path = os.path.expanduser(spec.id)
    try:
        if spec.is_local:
            if os.path.isdir(path) and os.path.exists(os.path.join(path, "dataset_dict.json")):
                return datasets.load_from_disk(path)[split]
            if os.path.isdir(path) and os.path.exists(os.path.join(path, "dataset_info.json")):
                return datasets.load_from_disk(path)
            if os.path.isfile(path):
                builder = _FILE_BUILDERS.get(os.path.splitext(path)[1])
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


def check_columns(
    ds, spec: DatasetSpec, layouts: tuple[tuple[str, ...], ...], source: str, stage: str
) -> tuple[str, ...]:
    """The first accepted layout the dataset's columns hold; a one-line error naming the layouts otherwise."""
    cols = set(ds.column_names)
    for layout in layouts:
        if set(layout) <= cols:
            return layout
    wanted = " or ".join("+".join(layout) for layout in layouts)
    raise DataError(
        f"{source}: dataset '{spec.id}' split '{spec.split}' has columns {sorted(cols)} but {stage} needs {wanted}; "
        f"map your data to one of these layouts or set 'columns' in the dataset_mixture entry"
    )


def column_shape(ds, spec: DatasetSpec, column: str, source: str) -> str:
    """'text' (a string) or 'conversation' (a list of {role, content}); checked on the first rows."""
    shapes = set()
    for i in range(min(len(ds), 8)):
        value = ds[i][column]
        if isinstance(value, str):
            shapes.add("text")
        elif (
            isinstance(value, list)
            and value
            and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in value)
        ):
            shapes.add("conversation")
        else:
            raise DataError(
                f"{source}: dataset '{spec.id}' row {i} column '{column}' is neither text nor a list of "
                f"{{role, content}} "
                f"messages (got {str(value)[:80]!r}); fix the data"
            )
    if len(shapes) > 1:
        raise DataError(f"{source}: dataset '{spec.id}' column '{column}' mixes text and message lists; use one shape")
    if shapes == {"conversation"}:
        check_roles(ds, spec, column, source)
    return shapes.pop() if shapes else "text"


def check_roles(ds, spec: DatasetSpec, column: str, source: str) -> None:
    """Every message of every row has a role the chat templates know; found in Arrow, without a Python loop per row.

    ShareGPT-style data says human/gpt: the chat template would fail on it mid-tokenization with a traceback
    (or, with a lenient template, render it silently wrong), so it is refused before the model loads.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    messages = ds.with_format("arrow")[:][column]
    if (
        not (pa.types.is_list(messages.type) or pa.types.is_large_list(messages.type))
        or not pa.types.is_struct(messages.type.value_type)
        or messages.type.value_type.get_field_index("role") < 0
    ):
        return  # not a uniform list of structs: column_shape judged the rows it looked at
    flat = pc.list_flatten(messages)
    roles = pc.struct_field(flat, "role")
    known = pc.is_in(roles, value_set=pa.array(CHAT_ROLES, type=roles.type))
    first = pc.index(known, False).as_py()
    if first < 0:
        return
    row, role = pc.list_parent_indices(messages)[first].as_py(), roles[first].as_py()
    found = "a message without a role" if role is None else f"a message with role {role!r}"
    raise DataError(
        f"{source}: dataset '{spec.id}' split '{spec.split}' row {row} column '{column}' has {found}; valid "
        f"roles are {', '.join(CHAT_ROLES)}; rename the roles (ShareGPT's human -> user, gpt -> assistant)"
    )


def prepare_sft_columns(ds, spec: DatasetSpec, layout: tuple[str, ...], source: str):
    """Keep only the layout's columns and check their shapes (TRL reads any extra column as a format hint)."""
    ds = ds.select_columns(list(layout))
    shapes = {c: column_shape(ds, spec, c, source) for c in layout}
    if layout == ("messages",) and shapes["messages"] != "conversation":
        raise DataError(
            f"{source}: dataset '{spec.id}' column 'messages' must be a list of {{role, content}} messages, "
            f"not text; put plain text in a 'text' column instead"
        )
    if layout == ("prompt", "completion") and shapes["prompt"] != shapes["completion"]:
        raise DataError(
            f"{source}: dataset '{spec.id}' has a {shapes['prompt']} 'prompt' but a {shapes['completion']} "
            f"'completion'; give both the same shape"
        )
    if layout == ("text",) and shapes["text"] != "text":
        raise DataError(f"{source}: dataset '{spec.id}' column 'text' holds messages; name that column 'messages'")
    return ds


def prepare_preference_columns(ds, spec: DatasetSpec, layout: tuple[str, ...], source: str):
    """Bring a preference dataset into one of TRL's two explicit-prompt formats, checking the column shapes.

    Accepted shapes:
    - text prompt, text chosen/rejected (TRL's standard format): kept as is;
    - message-list prompt, message-list chosen/rejected holding only the answer (TRL's conversational format);
    - chosen/rejected that are whole conversations, with no prompt or with a text prompt beside them, as in
      ``HuggingFaceH4/ultrafeedback_binarized``: the messages both share become the prompt and the rest the
      answers, so the user turn is never fed twice. Rows whose answers are identical or missing are dropped.
    """
    ds = ds.select_columns(list(layout))
    chosen, rejected = column_shape(ds, spec, "chosen", source), column_shape(ds, spec, "rejected", source)
    prompt = column_shape(ds, spec, "prompt", source) if "prompt" in layout else None
    where = f"{source}: dataset '{spec.id}' split '{spec.split}'"
    if chosen != rejected:
        raise DataError(f"{where} has {chosen} 'chosen' but {rejected} 'rejected'; give both the same shape")
    if chosen == "text":
        if prompt == "conversation":
            raise DataError(
                f"{where} has a message-list 'prompt' but text answers; make 'chosen' and 'rejected' "
                f"message lists too, or render the prompt as text"
            )
        return ds
    first = ds[0]
    if prompt == "conversation" and first["chosen"][0]["role"] == "assistant":
        return ds  # TRL's conversational format as it is
    ds = ds.map(
        _split_shared_prefix,
        remove_columns=list(layout),
        desc="taking the shared prefix of chosen/rejected as the prompt",
    )
    kept = ds.filter(lambda row: row["_usable"])
    dropped = len(ds) - len(kept)
    mismatched = sum(kept["_prompt_mismatch"]) if prompt == "text" else 0
    kept = kept.remove_columns(["_usable", "_prompt_mismatch"]).select_columns(["prompt", "chosen", "rejected"])
    logger.info(
        "%s: chosen/rejected hold whole conversations; their shared prefix is the prompt%s (%d rows, %d dropped "
        "with identical or missing answers)",
        spec.id,
        " and the 'prompt' column is not used" if prompt else "",
        len(kept),
        dropped,
    )
    if mismatched:
        logger.warning(
            "%s: in %d rows the text 'prompt' differs from the last user turn of the shared prefix; the "
            "conversation's own turns are used",
            spec.id,
            mismatched,
        )
    if len(kept) == 0:
        raise DataError(
            f"{where}: no row has distinct chosen and rejected answers after the shared prompt; check the data"
        )
    return kept


def _split_shared_prefix(row: dict) -> dict:
    chosen, rejected = row["chosen"], row["rejected"]
    k = 0
    while k < min(len(chosen), len(rejected)) and chosen[k] == rejected[k]:
        k += 1
    while k > 0 and chosen[k - 1]["role"] == "assistant" and (k == len(chosen) or k == len(rejected)):
        k -= 1  # an answer both sides share is still an answer: the prompt ends before it
    while k > 0 and chosen[k - 1]["role"] == "assistant" and chosen[k]["role"] == "assistant":
        k -= 1
    prompt, good, bad = chosen[:k], chosen[k:], rejected[k:]
    usable = (
        bool(prompt)
        and bool(good)
        and bool(bad)
        and good != bad
        and good[0]["role"] == "assistant"
        and bad[0]["role"] == "assistant"
    )
    users = [m["content"] for m in prompt if m["role"] == "user"]
    text = row.get("prompt")
    mismatch = isinstance(text, str) and bool(users) and text.strip() != users[-1].strip()
    return {"prompt": prompt, "chosen": good, "rejected": bad, "_usable": usable, "_prompt_mismatch": mismatch}


def load_mixture(mixture: Mixture, layouts: tuple[tuple[str, ...], ...], stage: str):
    """Load, check, subsample and mix. Returns (train, eval or None)."""
    import datasets

    trains, tests = [], []
    for spec in mixture.datasets:
        ds = _load_split(spec, spec.split, mixture.source)
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
            test = _load_split(spec, spec.test_split, mixture.source)
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


def describe_mixture(mixture: Mixture) -> list[str]:
    return [
        f"{s.id} [{s.split}] x{s.weight:g}" + (f" (test: {s.test_split})" if s.test_split else "")
        for s in mixture.datasets
    ]
