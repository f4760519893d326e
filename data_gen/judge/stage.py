"""The judge stage: rate a completion pool, binarize the ratings into preference pairs, and write the run record.

Phases: ``run_judge`` reads the pool (or prints a cost estimate and stops); ``_judge`` rates it in the recipe's
mode, plus the optional critique pass, inside one generation session; ``_write`` binarizes and writes the
datasets, the manifest and the card. A budget stop writes only the manifest: a partial judgement would bias the
pairs, and the journal keeps every paid reply for the rerun.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter

from distill_core.errors import DataError
from distill_core.jsonl import read_jsonl, write_jsonl_atomic
from distill_core.recipe import Recipe
from distill_core.records import recipe_record, write_card, write_manifest

from ..client import BudgetExceeded, estimate_tokens
from ..session import GenerationSession
from ..stage import (
    StageFailed,
    check_outcome,
    dataset_card_data,
    estimate_cost,
    output_fingerprint,
    print_estimate,
    prompt_id,
    refuse_duplicate_rows,
    request_failures,
    stage_lock,
)
from .arguments import JudgeArguments
from .aspect_ratings import rate_aspects
from .critique import critique_completions
from .logprobs import rate_by_endpoint_logprobs
from .templates import judge_templates

logger = logging.getLogger(__name__)


def load_pool(path: str) -> list[dict]:
    if os.path.isdir(path):
        path = os.path.join(path, "train.jsonl")
    rows = []
    for n, row in read_jsonl(path):
        comps = row.get("completions")
        if not isinstance(row.get("prompt"), str) or not isinstance(comps, list) or len(comps) < 2:
            raise DataError(
                f"{path} line {n}: a pool row needs 'prompt' (string) and 'completions' (a list of at least 2)"
            )
        for j, c in enumerate(comps):
            if not isinstance(c, dict) or not isinstance(c.get("text"), str) or not c.get("model"):
                raise DataError(f"{path} line {n}: completions[{j}] needs 'model' and 'text'")
        row.setdefault("prompt_id", prompt_id(row["prompt"]))
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: the pool is empty")
    return rows


def run_judge(recipe: Recipe) -> str:
    args: JudgeArguments = recipe.build("data")
    rows = load_pool(args.pool)[: args.num_prompts]
    # a repeated pool row would be judged in full before binarization refuses it
    refuse_duplicate_rows(
        args.pool,
        lambda r: r["prompt_id"] if "prompt_id" in r else prompt_id(r["prompt"]),
        "prompt_id",
        "remove or merge one of the two rows, then rerun",
        limit=args.num_prompts,
    )
    started = time.monotonic()
    judge = recipe.parsed.get("judge")
    if args.dry_run:
        _print_estimate(rows, args, judge)
        return "dry run: nothing sent"
    with stage_lock(args.output_dir):  # the whole run, outputs included: a second run on this directory stops at once
        counts, stats, failures, stopped = _judge(rows, args, judge)
        stats["wall_time_s"] = round(time.monotonic() - started, 2)
        if stopped:  # a partial judgement would bias the pairs: write nothing but the record
            write_manifest(args.output_dir, "judge", recipe=recipe_record(recipe), counts=counts, **stats)
        else:
            _write(recipe, args, rows, judge, counts, stats, failures)
    return args.output_dir


def _print_estimate(rows: list[dict], args: JudgeArguments, judge) -> None:
    k = sum(len(r["completions"]) for r in rows)
    n = len(rows) * len(args.aspects) if args.mode == "text" else k * len(args.aspects)
    tokens = sum(
        estimate_tokens(
            [
                {"role": "user", "content": r["prompt"]},
                *({"role": "user", "content": c["text"]} for c in r["completions"]),
            ]
        )
        for r in rows
    )
    print_estimate(
        [
            {
                "role": "judge",
                **estimate_cost(
                    judge, n, tokens * len(args.aspects) + n * 300, n * (args.max_tokens if args.mode == "text" else 1)
                ),
            }
        ]
    )


def _judge(rows: list[dict], args: JudgeArguments, judge) -> tuple[dict, dict, dict | None, bool]:
    """Ratings (and critiques) written into rows; (counts, request stats, request failures, stopped by budget)."""
    if args.mode == "logprobs_local":
        from .local_logprobs import rate_by_local_logprobs

        counts = rate_by_local_logprobs(rows, args)
        return counts, {"requests": {}, "cost_usd": 0.0, "max_cost_usd": None, "stopped_by_budget": False}, None, False
    stopped = False
    with GenerationSession.for_stage(args, {"judge": judge}) as gen:
        try:
            counts = (rate_aspects if args.mode == "text" else rate_by_endpoint_logprobs)(gen, rows, args)
            if args.critique:
                counts.update(critique_completions(gen, rows, args))
        except BudgetExceeded:
            logger.warning(
                "max_cost_usd reached: nothing is lost (the journal keeps every reply); rerun with a "
                "higher budget to finish judging"
            )
            stopped = True
            counts = {}
        return counts, gen.stats(), request_failures(gen), stopped


def _refuse_all_ratings_failed(rows: list[dict], args: JudgeArguments, counts: dict, failures: dict | None) -> None:
    """A judge whose every rating failed (replies that never parse, or no digit probabilities) judged nothing: that
    is a failed stage, not a dataset of unscored rows. Ties are different: every rating given, no pair to draw."""
    rated = sum(len(r["completions"]) for r in rows) * len(args.aspects)
    if not rated or counts.get("failed_ratings", 0) < rated:
        return
    errors = Counter(
        entry.get("error") or "no rating"
        for r in rows
        for c in r["completions"]
        for entry in (c.get("ratings") or {}).values()
    )
    error, times = errors.most_common(1)[0]
    journal = (failures or {}).get("journal")
    kept = f"nothing was written and the journal {journal} is kept" if journal else "nothing was written"
    raise StageFailed(
        f"judge: all {rated} ratings failed (most common error: {error!r}, {times} times); {kept}; check "
        f"the judge's raw replies in the journal, fix the judge (or json_mode, max_tokens, max_reasks) and "
        f"rerun the same command"
    )


def _write(
    recipe: Recipe, args: JudgeArguments, rows: list[dict], judge, counts: dict, stats: dict, failures: dict | None
) -> None:
    from ..binarize import binarize
    from ..preference_figure import plot_preference_statistics
    from ..preference_stats import card_lines, preference_statistics

    pairs, dropped = binarize(
        rows, score=args.score, strategy=args.strategy, min_margin=args.min_margin, seed=args.seed
    )
    _refuse_all_ratings_failed(rows, args, counts, failures)
    check_outcome(args.output_dir, "judge", recipe, args, {"judged": rows, "prefs": pairs}, stats, failures)
    pstats = preference_statistics(rows, pairs, judge_cost_usd=stats["cost_usd"])
    for name, data in (("judged", rows), ("prefs", pairs)):
        os.makedirs(os.path.join(args.output_dir, name), exist_ok=True)
        write_jsonl_atomic(os.path.join(args.output_dir, name, "train.jsonl"), data)
    figure = plot_preference_statistics(pstats, os.path.join(args.output_dir, "preference_stats.png"))
    write_manifest(
        args.output_dir,
        "judge",
        recipe=recipe_record(recipe),
        output_fingerprint=output_fingerprint(recipe),
        judge=judge.public() if judge else {"local_model": args.judge_model_dir, "mode": args.mode},
        prompt_templates_sha256=judge_templates().sha256,
        counts={**counts, "pairs": len(pairs), "binarize": dropped},
        statistics=pstats,
        **({"failures": failures} if failures else {}),
        **stats,
    )
    datasets = {"judged": rows, "prefs": pairs}
    write_card(
        args.output_dir,
        dataset_card_data("judge", args.output_dir, datasets, tags=["preferences", "dpo"]),
        _card(recipe, args, judge, len(pairs), os.path.basename(figure), card_lines(pstats)),
    )
    logger.info(
        "judge: %d prompts judged, %d pairs, %d failed ratings, $%.4f",
        len(rows),
        len(pairs),
        counts.get("failed_ratings", 0),
        stats["cost_usd"],
    )


def _card(recipe: Recipe, args: JudgeArguments, judge, pairs: int, figure: str, statistics: list[str]) -> str:
    lines = [
        f"# Preference data: {os.path.basename(os.path.abspath(args.output_dir))}",
        "",
        f"Judged by `{judge.name if judge else args.judge_model_dir}` in {args.mode} mode over aspects "
        f"{', '.join(args.aspects)}; binarized with score `{args.score}`, strategy `{args.strategy}`, "
        f"min margin {args.min_margin}, seed {args.seed}. Recipe `{recipe.path}`.",
        "",
        f"- `prefs/train.jsonl`: {pairs} (prompt, chosen, rejected) pairs in TRL's conversational format",
        "- `judged/train.jsonl`: every rating with its rationale and the judge's raw replies",
        "",
        f"![preference statistics]({figure})",
        "",
        *statistics,
    ]
    return "\n".join(lines) + "\n"
