"""The answers of the models under test: generated through the endpoint client (turn 2 continuing turn 1's
conversation, at each category's temperature), or read from a file of existing answers.

An answer row: benchmark, model, question_id, category, turns (the two questions), answers (two texts; None where
the model gave no usable answer) and finish_reasons. A file of answers may be ours (that layout) or FastChat's
model_answer/*.jsonl (question_id, model_id, choices[0].turns); every question under test must be in it, once.
AlpacaEval and Arena-Hard answers are rows of the same shape with one turn (``generate_single_turn``), sampled at
temperature 0 up to the benchmark's max_tokens.
"""

from __future__ import annotations

from data_gen.client import ChatRequest
from data_gen.session import GenerationSession
from data_gen.stage import derived_seed
from distill_core.errors import DataError

from .arguments import EvalArguments, ModelUnderTest
from .mt_bench import Question, answer_messages
from .reference_files import read_json_records


def read_answers(path: str, model: str, questions: list[Question]) -> list[dict]:
    """The answer rows of one model from a file, checked against the questions under test."""
    found: dict[str, list] = {}
    for index, record in enumerate(read_json_records(path, lines=True), start=1):
        qid = record.get("question_id")
        texts = record.get("answers")
        if texts is None and isinstance(record.get("choices"), list) and record["choices"]:
            texts = record["choices"][0].get("turns")  # FastChat's model_answer layout
        if qid is None or not isinstance(texts, list) or not texts:
            raise DataError(
                f"{path}: line {index} needs question_id and answers (a list per turn) or FastChat's choices[0].turns"
            )
        if str(qid) in found:
            raise DataError(
                f"{path}: question_id {qid} is answered twice (line {index}); keep one answer per question"
            )
        found[str(qid)] = list(texts)
    missing = [q.question_id for q in questions if q.question_id not in found]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(
            f"{path}: no answers of {model} to question(s) {shown}; answer every question under test, or narrow them "
            "with questions_per_category"
        )
    return [
        _row(model, q, [_text(t) for t in (found[q.question_id] + [None])[:2]], ["file", "file"]) for q in questions
    ]


def _text(value) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _row(model: str, question: Question, answers: list, finish_reasons: list) -> dict:
    return {
        "benchmark": "mt_bench",
        "model": model,
        "question_id": question.question_id,
        "category": question.category,
        "turns": list(question.turns),
        "answers": answers,
        "finish_reasons": finish_reasons,
    }


def generate_answers(
    gen: GenerationSession, models: list[ModelUnderTest], questions: list[Question], args: EvalArguments
) -> list[dict]:
    """Both turns of every question from every model with an endpoint; a turn without a usable reply is None, and a
    question whose first turn failed is not asked its second."""
    roles = {f"model{i}": m for i, m in enumerate(models) if m.teacher is not None}
    answers = {(role, q.question_id): [None, None] for role in roles for q in questions}
    reasons = {key: [None, None] for key in answers}
    for turn in (1, 2):
        batches: dict[str, list[ChatRequest]] = {}
        asked: dict[str, list[Question]] = {}
        for role in roles:
            todo = [q for q in questions if turn == 1 or answers[role, q.question_id][0] is not None]
            asked[role] = todo
            batches[role] = [
                ChatRequest(answer_messages(q, turn, answers[role, q.question_id][0]), _sampling(q, turn, args))
                for q in todo
            ]
        results = gen.ask_many(batches, f"MT-Bench answers, turn {turn}")
        for role, role_results in results.items():
            for question, result in zip(asked[role], role_results):
                key = (role, question.question_id)
                reasons[key][turn - 1] = result.finish_reason or result.status
                if result.kept(args.keep_truncated):
                    answers[key][turn - 1] = result.text
    return [
        _row(model.name, q, answers[role, q.question_id], reasons[role, q.question_id])
        for role, model in roles.items()
        for q in questions
    ]


def _sampling(question: Question, turn: int, args: EvalArguments) -> dict:
    return {
        "temperature": question.temperature,
        "max_tokens": args.answer_max_tokens,
        "seed": derived_seed(args.seed, "mt_bench", question.question_id, turn),
    }


def generate_single_turn(
    gen: GenerationSession,
    models: list[ModelUnderTest],
    items: list,
    benchmark: str,
    max_tokens: int,
    args: EvalArguments,
) -> list[dict]:
    """One answer per (model, item) for a one-turn benchmark; items have question_id, a prompt and a category."""
    roles = {f"model{i}": m for i, m in enumerate(models) if m.teacher is not None}
    batches = {
        role: [
            ChatRequest(
                [{"role": "user", "content": _prompt(item)}],
                {
                    "temperature": 0.0,
                    "max_tokens": max_tokens,
                    "seed": derived_seed(args.seed, benchmark, item.question_id),
                },
            )
            for item in items
        ]
        for role in roles
    }
    results = gen.ask_many(batches, f"{benchmark} answers")
    rows = []
    for role, model in roles.items():
        for item, result in zip(items, results[role]):
            rows.append({
                "benchmark": benchmark,
                "model": model.name,
                "question_id": item.question_id,
                "category": getattr(item, "category", None) or getattr(item, "dataset", ""),
                "turns": [_prompt(item)],
                "answers": [result.text if result.kept(args.keep_truncated) else None],
                "finish_reasons": [result.finish_reason or result.status],
            })  # fmt: skip
    return rows


def _prompt(item) -> str:
    return item.instruction if hasattr(item, "instruction") else item.prompt
