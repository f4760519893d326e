"""Judging the AlpacaEval and Arena-Hard answers, and their scores.

AlpacaEval's text annotator goes through the re-ask engine; its logprob annotator asks an endpoint for one token
with top logprobs (as the judge stage's logprob mode does), or, for a judge that is a local model directory,
scores the two position letters in-process with the judge stage's LocalLogprobJudge, since a local
``transformers serve`` ignores ``logprobs``. Arena-Hard's two games per question go through the re-ask engine.
"""

from __future__ import annotations

import math

from data_gen.client import ChatRequest
from data_gen.session import GenerationSession

from . import alpaca_eval, arena_hard
from .arguments import EvalArguments
from .inputs import AlpacaInputs
from .length_controlled import length_controlled
from .mt_bench_judging import ask_judge
from .win_rate import win_rate

LOGPROB_PARAMS = {"temperature": 0.0, "max_tokens": 1, "logprobs": True, "top_logprobs": 20}


def answer_table(answers: list[dict], benchmark: str) -> dict[tuple[str, str], str]:
    """(model, question_id) -> the answer text, for the answered rows of one benchmark."""
    return {
        (r["model"], r["question_id"]): r["answers"][0]
        for r in answers
        if r.get("benchmark") == benchmark and r["answers"][0] is not None
    }


def alpaca_pairs(answers: list[dict], alpaca: AlpacaInputs, args: EvalArguments) -> list[dict]:
    """The pairs to judge: every answered (model, instruction) against the baseline's output, in a drawn order."""
    table = answer_table(answers, "alpaca_eval")
    models = sorted({m for m, _ in table} - {alpaca.baseline})
    pairs = []
    for model in models:
        for item in alpaca.instructions:
            output = table.get((model, item.question_id))
            base = (alpaca.baseline_outputs or {}).get(
                item.instruction, table.get((alpaca.baseline, item.question_id))
            )
            if output is None or base is None:
                continue
            first = alpaca_eval.model_first(args.seed, model, item.question_id)
            task = alpaca_eval.comparison_task(
                model, item, output, base, first, args.alpaca_eval_annotator == "logprob"
            )
            pairs.append({"model": model, "item": item, "output": output, "baseline_output": base, "task": task})
    return pairs


def judge_alpaca_text(gen: GenerationSession, pairs: list[dict], args: EvalArguments) -> list[dict]:
    params = {"temperature": args.judge_temperature, "max_tokens": args.judge_max_tokens}
    tasks = [p["task"] for p in pairs]
    ask_judge(gen, tasks, alpaca_eval.parse_verdict, alpaca_eval.reask, params, args, "AlpacaEval judging")
    rows = []
    for pair in pairs:
        task = pair["task"]
        verdict = None if task.error else task.result
        rows.append(_alpaca_row(pair, verdict, alpaca_eval.preference_from_verdict(verdict, task.order[0] == 1)))
    return rows


def judge_alpaca_endpoint_logprobs(gen: GenerationSession, pairs: list[dict]) -> list[dict]:
    requests = [ChatRequest(p["task"].messages, LOGPROB_PARAMS) for p in pairs]
    results = gen.ask("judge", requests, "AlpacaEval judging (logprobs)")
    rows = []
    for pair, result in zip(pairs, results):
        probs = label_probabilities(result.top_logprobs) if result.usable else {}
        error = None if result.usable else f"request failed: {result.error or result.status}"
        pair["task"].replies.append(result.text if result.usable else "")
        rows.append(_logprob_row(pair, probs, error))
    return rows


def judge_alpaca_local_logprobs(model_dir: str, pairs: list[dict], show_progress: bool) -> list[dict]:
    from tqdm import tqdm

    from data_gen.judge.local_logprobs import LocalLogprobJudge

    judge = LocalLogprobJudge(model_dir, labels={label: label for label in alpaca_eval.LABELS})
    rows = []
    for pair in tqdm(pairs, desc="AlpacaEval judging (local logprobs)", disable=not show_progress):
        rows.append(_logprob_row(pair, judge.probabilities(pair["task"].messages), None))
    return rows


def label_probabilities(top_logprobs: list[dict] | None) -> dict[str, float]:
    """P(A) and P(B) from the first token's top logprobs (a label with or without surrounding space)."""
    probs: dict[str, float] = {}
    for entry in top_logprobs or []:
        token = str(entry.get("token", "")).strip()
        if token in alpaca_eval.LABELS:
            probs[token] = probs.get(token, 0.0) + math.exp(entry["logprob"])
    return probs


def _logprob_row(pair: dict, probs: dict[str, float], error: str | None) -> dict:
    preference = alpaca_eval.preference_from_probabilities(probs, pair["task"].order[0] == 1)
    if preference is None and error is None:
        error = "no probability on either label (A or B) among the top logprobs"
    pair["task"].error = error
    row = _alpaca_row(pair, None, preference)
    row["probabilities"] = dict(sorted(probs.items()))  # unrounded: small label probabilities matter
    return row


def _alpaca_row(pair: dict, verdict: str | None, preference: float | None) -> dict:
    task, item = pair["task"], pair["item"]
    return {
        "model": pair["model"],
        "question_id": item.question_id,
        "instruction": item.instruction,
        "dataset": item.dataset,
        "output": pair["output"],
        "baseline_output": pair["baseline_output"],
        "shown_first": "model" if task.order[0] == 1 else "baseline",
        "verdict": verdict,  # the position the judge named (A, B or tie), text annotator only
        "preference": None if preference is None else round(preference, 6),  # 1 baseline, 2 model, 1.5 draw
        "error": task.error if preference is None else None,
        "judge_replies": task.replies,
    }


def alpaca_summary(rows: list[dict], alpaca: AlpacaInputs, args: EvalArguments, names: list[str]) -> dict:
    """Per model (the baseline aside): AlpacaEval's numbers, the length-controlled rate, and ``n_unanswered``, the
    instructions never judged because the model (or a baseline under test) gave no usable answer."""
    by_model: dict[str, list[dict]] = {name: [] for name in names if name != alpaca.baseline}
    for row in rows:
        by_model.setdefault(row["model"], []).append(row)
    lc_rows = {
        m: [
            {"instruction": r["instruction"], "preference": r["preference"], "len_model": len(r["output"]),
             "len_base": len(r["baseline_output"])}
            for r in rs
        ]
        for m, rs in by_model.items()
        if rs
    }  # fmt: skip
    lc = length_controlled(lc_rows, alpaca.difficulty, args.alpaca_eval_difficulty)
    models = {}
    for model, model_rows in sorted(by_model.items()):
        rate = win_rate([r["preference"] for r in model_rows]).as_dict()
        lengths = [len(r["output"]) for r in model_rows]
        models[model] = {
            **{k: _finite(v) for k, v in rate.items()},
            "avg_length": int(sum(lengths) / len(lengths)) if lengths else 0,
            "n_unanswered": len(alpaca.instructions) - len(model_rows),
            **lc.get(
                model,
                {"length_controlled_win_rate": None, "length_controlled": {"method": None, "note": "nothing judged"}},
            ),
        }
    return {
        "baseline": alpaca.baseline,
        "annotator": args.alpaca_eval_annotator,
        "seed": args.seed,
        "instructions": len(alpaca.instructions),
        "models": models,
    }


def _finite(value):
    return (
        None
        if isinstance(value, float) and math.isnan(value)
        else (round(value, 4) if isinstance(value, float) else value)
    )


def arena_tasks(answers: list[dict], questions: list[arena_hard.ArenaQuestion], baseline: str) -> list[tuple]:
    """(model, question, task) for both games of every question the model and the baseline answered."""
    table = answer_table(answers, "arena_hard")
    models = sorted({m for m, _ in table} - {baseline})
    entries = []
    for model in models:
        for q in questions:
            shown = {name: table.get((name, q.question_id)) for name in (model, baseline)}
            if None in shown.values():
                continue
            for game in (1, 2):
                entries.append((model, q, arena_hard.game_task(model, baseline, q, shown, game)))
    return entries


def judge_arena(gen: GenerationSession, answers: list[dict], questions, args: EvalArguments) -> list[dict]:
    entries = arena_tasks(answers, questions, args.arena_hard_baseline)
    params = {"temperature": args.judge_temperature, "max_tokens": args.judge_max_tokens}
    tasks = [task for _, _, task in entries]
    ask_judge(gen, tasks, arena_hard.parse_verdict, arena_hard.reask, params, args, "Arena-Hard judging")
    return [
        {
            "model": model,
            "baseline": args.arena_hard_baseline,
            "question_id": q.question_id,
            "game": int(task.aspect.split()[-1]),
            "order": task.order,  # shown position -> 0 baseline, 1 model
            "verdict": None if task.error else task.result,
            "error": task.error,
            "judge_replies": task.replies,
        }
        for model, q, task in entries
    ]


def arena_summary(rows: list[dict], questions: list, args: EvalArguments, names: list[str]) -> dict:
    """Arena-Hard scores per model (the baseline aside), with ``unanswered``: the questions never judged because
    the model or the baseline gave no usable answer."""
    scores = arena_hard.arena_scores(rows, rounds=args.bootstrap_rounds, level=args.interval_level, seed=args.seed)
    for name in names:
        if name != args.arena_hard_baseline:
            judged = {r["question_id"] for r in rows if r["model"] == name}
            scores.setdefault(name, {"score": None, "lower": None, "upper": None, "wins": 0, "losses": 0, "ties": 0,
                                     "unjudged": 0, "games": 0})  # fmt: skip
            scores[name]["unanswered"] = len(questions) - len(judged)
    return {
        "baseline": args.arena_hard_baseline,
        "level": args.interval_level,
        "bootstrap_rounds": args.bootstrap_rounds,
        "questions": len(questions),
        "models": scores,
    }
