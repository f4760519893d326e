"""run_eval: MT-Bench answers from every model under test, judged single-answer and/or pairwise, scored, ranked
and recorded like every other stage (datasets, scores.json, manifest, card; journaled, resumable, budgeted).

The models under test are served and asked first, in one session; their local servers stop before the judge's
session starts, so a GPU node never holds the models under test and a local judge at once.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from dataclasses import dataclass

from data_gen.client import BudgetExceeded
from data_gen.judge.reask import JudgeTask, ask_until_parsed
from data_gen.session import GenerationSession
from data_gen.stage import estimate_cost, print_estimate, request_failures, stage_lock
from data_gen.stage.record import StageOutputs, write_stage_outputs
from distill_core.recipe import Recipe
from distill_core.records import write_atomic

from . import mt_bench
from .answers import generate_answers, read_answers
from .arguments import EvalArguments, ModelUnderTest
from .bradley_terry import count_battles, rank_models
from .scores import mt_bench_scores, pairwise_battles, pairwise_summary

logger = logging.getLogger(__name__)


@dataclass
class Judged:
    single: list[dict]
    pairwise: list[dict]


def run_eval(recipe: Recipe) -> str:
    args: EvalArguments = recipe.build("data")
    models: list[ModelUnderTest] = recipe.parsed["models"]
    questions = select_questions(
        mt_bench.load_questions(args.questions, args.reference_answers), args.questions_per_category
    )
    from_files = [row for m in models if m.answers for row in read_answers(m.answers, m.name, questions)]
    if args.dry_run:
        print_estimate(_estimate(args, models, questions, recipe.parsed["judge"]))
        return "dry run: nothing sent"
    with stage_lock(args.output_dir):
        return _run(recipe, args, models, questions, from_files)


def select_questions(questions: list[mt_bench.Question], per_category: int | None) -> list[mt_bench.Question]:
    """The first ``per_category`` questions of each category, in file order (all of them when None)."""
    if per_category is None:
        return questions
    taken: dict[str, int] = {}
    chosen = []
    for q in questions:
        if taken.get(q.category, 0) < per_category:
            taken[q.category] = taken.get(q.category, 0) + 1
            chosen.append(q)
    return chosen


def _run(recipe, args: EvalArguments, models, questions, from_files: list[dict]) -> str:
    answer_roles = {f"model{i}": m.teacher for i, m in enumerate(models) if m.teacher is not None}
    judge_role = {"judge": recipe.parsed["judge"]}
    stats, failures = {}, {}
    answers, judged = list(from_files), Judged([], [])
    try:
        if answer_roles:
            with GenerationSession.for_stage(args, answer_roles) as gen:
                try:
                    answers += generate_answers(gen, models, questions, args)
                finally:
                    stats["answers"], failures["answers"] = gen.stats(), request_failures(gen)
        with GenerationSession.for_stage(args, judge_role) as gen:
            try:
                judged = judge_answers(gen, answers, questions, args)
            finally:
                stats["judge"], failures["judge"] = gen.stats(), request_failures(gen)
    except BudgetExceeded:
        logger.warning("max_cost_usd reached: writing the answers and judgments done so far")
    scores = summarise(judged, args)
    write_atomic(os.path.join(args.output_dir, "scores.json"), _json(scores))
    _write_record(recipe, args, answer_roles | judge_role, answers, judged, scores, stats, failures)
    _log_scores(scores)
    return args.output_dir


def judge_answers(gen: GenerationSession, answers: list[dict], questions, args: EvalArguments) -> Judged:
    """Single-answer and/or pairwise judgments of the answers, through the re-ask engine."""
    by_id = {q.question_id: q for q in questions}
    params = {"temperature": args.judge_temperature, "max_tokens": args.judge_max_tokens}
    judged = Judged([], [])
    if args.grading in ("single", "both"):
        tasks = [(row, turn, _single(row, turn, by_id)) for row in answers for turn in (1, 2) if _answered(row, turn)]
        _ask(gen, [t for _, _, t in tasks], mt_bench.parse_single, mt_bench.reask_single, params, args, "single")
        judged.single = [_single_row(row, turn, task) for row, turn, task in tasks]
    if args.grading in ("pairwise", "both"):
        pairs = _pairs(answers, by_id, args.baseline)
        tasks = [t for entry in pairs for t in entry[3:]]
        _ask(gen, tasks, mt_bench.parse_pairwise, mt_bench.reask_pairwise, params, args, "pairwise")
        judged.pairwise = [_pairwise_row(*entry) for entry in pairs]
    return judged


def _ask(gen, tasks: list[JudgeTask], parse, reask, params: dict, args: EvalArguments, kind: str) -> None:
    # keep_truncated speaks of answers; a judge reply cut by judge_max_tokens is re-asked, never read as a verdict
    ask_until_parsed(
        gen,
        tasks,
        parse,
        reask,
        params=params,
        max_reasks=args.max_reasks,
        keep_truncated=False,
        desc=f"MT-Bench {kind} judging",
    )


def _answered(row: dict, turn: int) -> bool:
    return all(a is not None for a in row["answers"][:turn])


def _single(row: dict, turn: int, by_id: dict) -> JudgeTask:
    return mt_bench.single_task(row["model"], by_id[row["question_id"]], turn, tuple(row["answers"]))


def _single_row(row: dict, turn: int, task: JudgeTask) -> dict:
    return {
        "model": row["model"],
        "question_id": row["question_id"],
        "category": row["category"],
        "turn": turn,
        "rating": None if task.error else task.result,
        "error": task.error,
        "judge_replies": task.replies,
    }


def _pairs(answers: list[dict], by_id: dict, baseline: str | None) -> list[tuple]:
    """(row 1, row 2, turn, task in order, task swapped) for every pair of models, question and turn both answered."""
    rows = {(r["model"], r["question_id"]): r for r in answers}
    names = sorted({r["model"] for r in answers})
    if baseline is not None:
        pairs = [(name, baseline) for name in names if name != baseline]
    else:
        pairs = list(itertools.combinations(names, 2))
    entries = []
    for (m1, m2), question in itertools.product(pairs, by_id.values()):
        r1, r2 = rows.get((m1, question.question_id)), rows.get((m2, question.question_id))
        for turn in (1, 2):
            if r1 and r2 and _answered(r1, turn) and _answered(r2, turn):
                shown = (tuple(r1["answers"]), tuple(r2["answers"]))
                first = mt_bench.pairwise_task((m1, m2), question, turn, shown, swapped=False)
                second = mt_bench.pairwise_task((m1, m2), question, turn, shown[::-1], swapped=True)
                entries.append((r1, r2, turn, first, second))
    return entries


def _pairwise_row(r1: dict, r2: dict, turn: int, first: JudgeTask, second: JudgeTask) -> dict:
    return {
        "model_1": r1["model"],
        "model_2": r2["model"],
        "question_id": r1["question_id"],
        "category": r1["category"],
        "turn": turn,
        "verdict_first": None if first.error else first.result,  # model_1 shown as A
        "verdict_second": None if second.error else second.result,  # model_1 shown as B
        "errors": [first.error, second.error],
        "judge_replies": [first.replies, second.replies],
    }


def summarise(judged: Judged, args: EvalArguments) -> dict:
    scores: dict = {"mt_bench": mt_bench_scores(judged.single)} if judged.single else {}
    if args.published:
        scores["published"] = args.published
    if judged.pairwise:
        scores["pairwise"] = pairwise_summary(judged.pairwise)
        battles = pairwise_battles(judged.pairwise)
        if battles:
            ranking = rank_models(
                count_battles(battles),
                rounds=args.bootstrap_rounds,
                level=args.interval_level,
                seed=args.seed,
                l2=0.01,
            )
            scores["bradley_terry"] = {
                "ratings": ranking.as_rows(),
                "level": ranking.level,
                "bootstrap_rounds": ranking.rounds,
                "degenerate_rounds": ranking.degenerate_rounds,
                "prior_l2": 0.01,
            }
    return scores


def _json(value) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def _write_record(recipe, args, roles, answers, judged: Judged, scores, stats, failures) -> None:
    datasets = {"answers": answers}
    if judged.single:
        datasets["judgments_single"] = judged.single
    if judged.pairwise:
        datasets["judgments_pairwise"] = judged.pairwise
    failed_single = sum(1 for r in judged.single if r["rating"] is None)
    unjudged_pairs = sum(1 for r in judged.pairwise if r["verdict_first"] is None or r["verdict_second"] is None)
    counts = {
        "answers": len(answers),
        "single_judgments": len(judged.single),
        "single_failed": failed_single,
        "pairwise_judgments": len(judged.pairwise),
        "pairwise_unjudged": unjudged_pairs,
    }
    lines = [f"- {model}: MT-Bench {s['score']} ({s['failed']} judgments failed)"
             for model, s in scores.get("mt_bench", {}).items()]  # fmt: skip
    write_stage_outputs(
        StageOutputs(
            out_dir=args.output_dir,
            stage="eval",
            recipe=recipe,
            datasets=datasets,
            roles=roles,
            sampling={
                "answers": {"temperature": mt_bench.TEMPERATURE, "max_tokens": args.answer_max_tokens},
                "judge": {"temperature": args.judge_temperature, "max_tokens": args.judge_max_tokens},
            },
            templates=mt_bench.templates().sha256,
            stats=_merge_stats(stats),
            counts=counts,
            card_lines=lines,
            failures=_merge_failures(failures),
        )
    )


def _merge_stats(stats: dict) -> dict:
    merged = {"requests": {}, "cost_usd": 0.0, "wall_time_s": 0.0, "stopped_by_budget": False}
    for part in stats.values():
        merged["requests"].update(part["requests"])
        merged["cost_usd"] = round(merged["cost_usd"] + part["cost_usd"], 6)
        merged["wall_time_s"] = round(merged["wall_time_s"] + part["wall_time_s"], 2)
        merged["stopped_by_budget"] |= part["stopped_by_budget"]
        merged["max_cost_usd"] = part["max_cost_usd"]
    return merged


def _merge_failures(failures: dict) -> dict | None:
    if not failures:
        return None
    parts = list(failures.values())
    top = [p["most_common_error"] for p in parts if p["most_common_error"]]
    return {
        "requests": sum(p["requests"] for p in parts),
        "failed": sum(p["failed"] for p in parts),
        "journal": parts[0]["journal"],
        "most_common_error": max(top, key=lambda t: t["count"]) if top else None,
    }


def _estimate(args: EvalArguments, models, questions, judge) -> list[dict]:
    rows = []
    for i, model in enumerate(models):
        if model.teacher is not None:
            n = 2 * len(questions)
            rows.append({"role": model.name, **estimate_cost(model.teacher, n, n * 300, n * args.answer_max_tokens)})
    n_models = len(models)
    single = 2 * len(questions) * n_models if args.grading != "pairwise" else 0
    pairs = (n_models - 1) if args.baseline else n_models * (n_models - 1) // 2
    pairwise = 4 * len(questions) * pairs if args.grading != "single" else 0
    n = single + pairwise
    rows.append({"role": "judge", **estimate_cost(judge, n, n * (600 + 2 * args.answer_max_tokens), n * 300)})
    return rows


def _log_scores(scores: dict) -> None:
    for model, s in scores.get("mt_bench", {}).items():
        logger.info("MT-Bench %s: %s (turn 1 %s, turn 2 %s; %d judged, %d failed)", model, s["score"],
                    s["per_turn"].get("1"), s["per_turn"].get("2"), s["judged"], s["failed"])  # fmt: skip
    for model, published in scores.get("published", {}).items():
        ours = scores.get("mt_bench", {}).get(model, {}).get("score")
        if "mt_bench" in published and ours is not None:
            logger.info("MT-Bench %s: %s here, %s published", model, ours, published["mt_bench"])
    rate = scores.get("pairwise", {}).get("position_disagreement_rate")
    if rate is not None:
        logger.info("pairwise: the two orders disagreed on %.1f%% of pairs", 100 * rate)
