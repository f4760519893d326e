"""The decontaminate stage: load the training data and the benchmarks, remove the rows that hold benchmark text,
and write the clean dataset, the removed rows with what they matched, a manifest and a card.

Outputs (``output_dir``): ``clean/train.jsonl`` (the rows kept, in their order and format), ``removed/train.jsonl``
(each removed row with its matches: benchmark, item, matched span, coverage), ``report.json``, ``manifest.json``,
``README.md``. Every file is replaced atomically and the result depends only on the inputs, so a rerun after an
interruption writes the same clean dataset. A gate breach (``max_contaminated_fraction``) writes the report and the
removed rows, withdraws the clean dataset, manifest and card of an earlier run (so no later stage trains on data this
check refused, and the pipeline sees the stage as not complete), and exits 2 naming the benchmark.
"""

from __future__ import annotations

import json
import os
import shutil
import time

from distill_core.errors import DataError
from distill_core.jsonl import write_jsonl_atomic
from distill_core.records import file_sha256, recipe_record, write_atomic, write_card, write_manifest

from .benchmarks import load_benchmark
from .index import BenchmarkIndex
from .normalize import Normalization
from .scan import Options, Result, decontaminate


def run_decontaminate(recipe) -> str:
    args = recipe.build("data")
    started = time.time()
    rows = load_rows(args, recipe.path)
    items = [item for source in recipe.parsed["benchmarks"] for item in load_benchmark(source, recipe.path)]
    how = Normalization(args.lowercase, args.strip_punctuation, args.unicode_form)
    index = BenchmarkIndex.build(items, args.ngram_size, how)
    columns = tuple(args.text_columns) if args.text_columns else None
    options = Options(args.check, columns, args.rule, args.threshold, args.workers, args.max_examples)
    result = decontaminate(rows, index, options, f"{recipe.path}: dataset '{args.dataset}'")
    breach = gate_breach(result, args.max_contaminated_fraction)
    write_outputs(recipe, args, result, index, time.time() - started, write_clean=not breach or
                  args.continue_on_contamination)  # fmt: skip
    if breach and not args.continue_on_contamination:
        raise DataError(f"{recipe.path}: {breach}; see {args.output_dir}/removed/train.jsonl, or set "
                        f"continue_on_contamination: true to keep the clean data and go on")  # fmt: skip
    return f"{len(result.clean)} rows kept, {len(result.removed)} removed ({args.output_dir})" + (
        f"; gate breached but continue_on_contamination is set: {breach}" if breach else ""
    )


def load_rows(args, source: str) -> list[dict]:
    from training.data import load_split
    from training.mixture import DatasetSpec

    spec = DatasetSpec(id=args.dataset, split=args.dataset_split, config=args.dataset_config)
    rows = load_split(spec, args.dataset_split, source).to_list()
    if not rows:
        raise DataError(f"{source}: dataset '{args.dataset}' split '{args.dataset_split}' is empty; fix the path")
    return rows


def gate_breach(result: Result, limit: float | None) -> str:
    """The first benchmark (by name) whose contaminated fraction is above the gate, said in words; '' if none."""
    if limit is None:
        return ""
    for name, entry in sorted(result.report.items()):
        if entry["contaminated_fraction"] > limit:
            return (
                f"benchmark '{name}': {entry['items_hit']} of {entry['items'] - entry['too_short']} items "
                f"({entry['contaminated_fraction']:.2%}) found in the training data, above max_contaminated_fraction "
                f"{limit}"
            )
    return ""


def write_outputs(recipe, args, result: Result, index: BenchmarkIndex, seconds: float, write_clean: bool) -> None:
    out = args.output_dir
    if not write_clean:
        withdraw_clean(out)
    os.makedirs(os.path.join(out, "removed"), exist_ok=True)
    write_jsonl_atomic(os.path.join(out, "removed", "train.jsonl"), result.removed)
    write_atomic(os.path.join(out, "report.json"), json.dumps(result.report, indent=2, ensure_ascii=False) + "\n")
    if not write_clean:
        return
    os.makedirs(os.path.join(out, "clean"), exist_ok=True)
    write_jsonl_atomic(os.path.join(out, "clean", "train.jsonl"), result.clean)
    counts = {"rows": result.rows, "kept": len(result.clean), "removed": len(result.removed),
              "texts_checked": result.texts, "rows_flagged_by_hash": result.candidates,
              "rows_without_text": result.rows_without_text, "benchmark_ngrams": index.ngram_count}  # fmt: skip
    sources = recipe.parsed["benchmarks"]
    write_manifest(
        out,
        "decontaminate",
        recipe=recipe_record(recipe),
        benchmarks={
            s.name: {"path": s.path, "sha256": file_sha256(s.path) if os.path.isfile(s.path) else None}
            for s in sources
        },  # fmt: skip
        normalization=index.how.describe(),
        counts=counts,
        report=result.report,
        wall_time_s=round(seconds, 3),
    )
    from data_gen.stage.record import dataset_card_data

    datasets = {"clean": result.clean, "removed": result.removed}
    write_card(out, dataset_card_data("decontaminate", out, datasets, tags=("decontaminated",)),
               card_body(args, result, index, counts))  # fmt: skip


def withdraw_clean(out: str) -> None:
    """Remove what an earlier passing run left: the manifest first (it marks the stage complete), then the card and
    the clean dataset, whose directory is renamed aside before it is deleted, so no reader sees half of it."""
    for name in ("manifest.json", "README.md"):
        try:
            os.remove(os.path.join(out, name))
        except FileNotFoundError:
            pass
    clean = os.path.join(out, "clean")
    if os.path.isdir(clean):
        aside = f"{clean}.withdrawn-{os.getpid()}"
        os.replace(clean, aside)
        shutil.rmtree(aside)


def card_body(args, result: Result, index: BenchmarkIndex, counts: dict) -> str:
    rule = "any shared n-gram" if args.rule == "ngram" else f"n-gram coverage of an item >= {args.threshold}"
    lines = [
        f"# decontaminate: {os.path.basename(os.path.abspath(args.output_dir))}",
        "",
        f"`{args.dataset}` checked against {len(result.report)} benchmarks: {args.ngram_size}-grams of {args.check} "
        f"turns, {index.how.describe()}; a row is removed on {rule}. Items shorter than {args.ngram_size} words "
        "are not checked (counted as too short).",
        "",
        f"- `clean/train.jsonl`: {counts['kept']} rows kept of {counts['rows']}",
        f"- `removed/train.jsonl`: {counts['removed']} rows removed, each with its benchmark item and matched span",
        "",
        "| benchmark | items | too short | items hit | contaminated fraction | rows removed |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, e in sorted(result.report.items()):
        lines.append(f"| {name} | {e['items']} | {e['too_short']} | {e['items_hit']} | "
                     f"{e['contaminated_fraction']:.4%} | {e['rows_removed']} |")  # fmt: skip
    for name, e in sorted(result.report.items()):
        if e["examples"]:
            lines += ["", f"## {name}: examples", ""]
            lines += [f"- row {x['row_index']} `{x['column']}` ~ `{x['item_id']}`: {x['excerpt']!r}" for x in
                      e["examples"]]  # fmt: skip
    return "\n".join(lines) + "\n"
