"""What the decontaminate stage writes in ``output_dir``:

- ``clean/<split>.jsonl``: each checked split's rows kept, in their order and format (the default split, train, is
  ``clean/train.jsonl``); a training mixture reads ``{id: <output_dir>/clean, split: train_sft}`` by the same split
  names as the original (training.data.load_split reads a directory's ``<split>.jsonl``). No header maps the names in
  ``clean/`` itself: ``datasets`` keys its cache of such a directory by the header alone, and would serve a rerun's
  training the rows of an earlier clean dataset;
- ``removed/<split>.jsonl``: each removed row with its matches (benchmark, item, matched span, coverage);
- ``report.json`` (per benchmark: items, items hit, contaminated fraction, gate, rows removed, examples),
  ``manifest.json`` and the card, ``README.md``.

Each file is replaced atomically, and ``clean/`` and ``removed/`` as a whole (built beside, then swapped in: no file
of an earlier run with other splits stays); the result depends only on the inputs, so a rerun after an interruption
writes the same bytes. A gate breach writes the report and the removed rows, and withdraws the clean dataset, the
manifest and the card of an earlier run: no later stage trains on data the check refused, and a pipeline sees the
stage as not complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil

from distill_core.jsonl import write_jsonl_atomic
from distill_core.records import file_sha256, recipe_record, write_atomic, write_card, write_manifest

from .index import BenchmarkIndex
from .rows import dataset_rows
from .scan import Result, clean_rows


def write_outputs(recipe, args, result: Result, by_split: dict, splits: dict | None, index: BenchmarkIndex,
                  seconds: float, warnings: list[str]) -> None:  # fmt: skip
    """``splits`` (split -> dataset) to write the clean data from, read again as it is written; None after a gate
    breach: the clean data, manifest and card of an earlier run are withdrawn instead. ``warnings`` (a breach let
    through) go into the manifest, where a pipeline shows them, and the card."""
    out = args.output_dir
    os.makedirs(out, exist_ok=True)
    if splits is None:
        withdraw_clean(out)
    with replaced_dir(os.path.join(out, "removed")) as removed:
        for split, part in by_split.items():
            write_jsonl_atomic(os.path.join(removed, f"{split}.jsonl"), part.removed)
    write_atomic(os.path.join(out, "report.json"), json.dumps(result.report, indent=2, ensure_ascii=False) + "\n")
    if splits is not None:
        with replaced_dir(os.path.join(out, "clean")) as clean:
            for split, part in by_split.items():
                rows = clean_rows(dataset_rows(splits[split]), part.removed)
                write_jsonl_atomic(os.path.join(clean, f"{split}.jsonl"), rows)
        write_record(recipe, args, result, by_split, index, seconds, warnings)


def write_record(recipe, args, result: Result, by_split: dict, index: BenchmarkIndex, seconds: float,
                 warnings: list[str]) -> None:  # fmt: skip
    """The manifest (the stage's completion mark, written after the data) and the card."""
    out = args.output_dir
    counts = {"rows": result.rows, "kept": result.kept, "removed": len(result.removed),
              "texts_checked": result.texts, "rows_flagged_by_hash": result.candidates,
              "rows_without_text": result.rows_without_text, "benchmark_ngrams": index.ngram_count,
              "splits": {s: {"rows": p.rows, "kept": p.kept, "removed": len(p.removed)}
                         for s, p in by_split.items()}}  # fmt: skip
    write_manifest(
        out,
        "decontaminate",
        recipe=recipe_record(recipe),
        benchmarks={
            s.name: {"path": s.path, "sha256": file_sha256(s.path) if os.path.isfile(s.path) else None}
            for s in recipe.parsed["benchmarks"]
        },  # fmt: skip
        normalization=index.how.describe(),
        counts=counts,
        report=result.report,
        warnings=warnings,
        wall_time_s=round(seconds, 3),
    )
    from data_gen.stage.record import dataset_card_data

    datasets = {
        "clean": {s: p.kept for s, p in by_split.items()},
        "removed": {s: p.removed for s, p in by_split.items()},
    }
    write_card(out, dataset_card_data("decontaminate", out, datasets, tags=("decontaminated",)),
               card_body(args, result, index, counts, warnings))  # fmt: skip


@contextlib.contextmanager
def replaced_dir(path: str):
    """Yield a fresh directory beside ``path``; once written, it replaces ``path`` whole."""
    tmp = f"{path}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    yield tmp
    _remove_dir(path)
    os.replace(tmp, path)


def _remove_dir(path: str) -> None:
    """Renamed aside, then deleted: no reader sees half of it."""
    if os.path.isdir(path):
        aside = f"{path}.old-{os.getpid()}"
        os.replace(path, aside)
        shutil.rmtree(aside)


def withdraw_clean(out: str) -> None:
    """Remove what an earlier passing run left: the manifest first (it marks the stage complete), then the card and
    the clean dataset."""
    for name in ("manifest.json", "README.md"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(out, name))
    _remove_dir(os.path.join(out, "clean"))


def card_body(args, result: Result, index: BenchmarkIndex, counts: dict, warnings: list[str]) -> str:
    rule = "any shared n-gram" if args.rule == "ngram" else f"n-gram coverage of an item >= {args.threshold}"
    lines = [
        f"# decontaminate: {os.path.basename(os.path.abspath(args.output_dir))}",
        "",
        f"`{args.dataset}` ({', '.join(args.dataset_split)}) checked against {len(result.report)} benchmarks: "
        f"{args.ngram_size}-grams of {args.check} turns, {index.how.describe()}; a row is removed on {rule}. Items "
        f"shorter than {args.ngram_size} words are not checked (counted as too short).",
        "",
        *[f"**Warning: {w}.**\n" for w in warnings],
    ]
    for split, c in counts["splits"].items():
        lines += [f"- `clean/{split}.jsonl`: {c['kept']} rows kept of {c['rows']}; `removed/{split}.jsonl`: "
                  f"{c['removed']} rows removed, each with its benchmark item and matched span"]  # fmt: skip
    lines += [
        "",
        "| benchmark | items | too short | items hit | contaminated fraction | gate | rows removed |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, e in sorted(result.report.items()):
        gate = "none" if e.get("max_contaminated_fraction") is None else f"{e['max_contaminated_fraction']:.2%}"
        lines.append(f"| {name} | {e['items']} | {e['too_short']} | {e['items_hit']} | "
                     f"{e['contaminated_fraction']:.4%} | {gate} | {e['rows_removed']} |")  # fmt: skip
    for name, e in sorted(result.report.items()):
        if e["examples"]:
            lines += ["", f"## {name}: examples", ""]
            lines += [f"- {x['split']} row {x['row_index']} `{x['column']}` ~ `{x['item_id']}`: {x['excerpt']!r}"
                      for x in e["examples"]]  # fmt: skip
    return "\n".join(lines) + "\n"
