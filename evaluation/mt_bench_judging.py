"""MT-Bench judging: single-answer ratings of each turn and pairwise comparisons in both orders, through the
re-ask engine; a judgment still unusable after the re-asks keeps its error and is counted, never scored."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from data_gen.judge.reask import JudgeTask, ask_until_parsed
from data_gen.session import GenerationSession

from . import mt_bench
from .arguments import EvalArguments


@dataclass
class Judged:
    """Every judgment row of a run, per benchmark and kind, and the task answers a metric scores."""

    single: list[dict] = field(default_factory=list)
    pairwise: list[dict] = field(default_factory=list)
    alpaca_eval: list[dict] = field(default_factory=list)
    arena_hard: list[dict] = field(default_factory=list)
    tasks: list[dict] = field(default_factory=list)  # task answers: scored by their metric, not by the judge


def judge_answers(gen: GenerationSession, answers: list[dict], questions, args: EvalArguments) -> Judged:
    """Single-answer and/or pairwise judgments of the answers, through the re-ask engine."""
    by_id = {q.question_id: q for q in questions}
    params = {"temperature": args.judge_temperature, "max_tokens": args.judge_max_tokens}
    judged = Judged()
    if args.grading in ("single", "both"):
        tasks = [(row, turn, _single(row, turn, by_id)) for row in answers for turn in (1, 2) if _answered(row, turn)]
        ask_judge(
            gen,
            [t for _, _, t in tasks],
            mt_bench.parse_single,
            mt_bench.reask_single,
            params,
            args,
            "MT-Bench single judging",
        )
        judged.single = [_single_row(row, turn, task) for row, turn, task in tasks]
    if args.grading in ("pairwise", "both"):
        pairs = _pairs(answers, by_id, args.baseline)
        tasks = [t for entry in pairs for t in entry[3:]]
        ask_judge(
            gen, tasks, mt_bench.parse_pairwise, mt_bench.reask_pairwise, params, args, "MT-Bench pairwise judging"
        )
        judged.pairwise = [_pairwise_row(*entry) for entry in pairs]
    return judged


def ask_judge(gen, tasks: list[JudgeTask], parse, reask, params: dict, args: EvalArguments, desc: str) -> None:
    """Every task through the re-ask engine at the judge's sampling."""
    # keep_truncated speaks of answers; a judge reply cut by judge_max_tokens is re-asked, never read as a verdict
    ask_until_parsed(
        gen,
        tasks,
        parse,
        reask,
        params=params,
        max_reasks=args.max_reasks,
        keep_truncated=False,
        desc=desc,
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
