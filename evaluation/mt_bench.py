"""MT-Bench: the questions, each category's sampling, and the judge conversations for single and pairwise grading.

80 two-turn questions in 8 categories. Answers are sampled at the category's temperature (writing and roleplay 0.7,
stem and humanities 0.1, the rest greedy); turn 2 continues turn 1's conversation. The judge sees a reference
answer only for math, reasoning and coding. Single grading rates each turn 1-10 (turn 2 with the whole conversation
shown); pairwise grading compares two models' answers on a turn, in both orders.

The prompts are our own words, kept as files in evaluation/prompt_templates/mt_bench/ and hashed into the stage's
manifest like the UltraFeedback judge's.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from data_gen.judge.reask import JudgeTask
from data_gen.judge.templates import JudgeTemplates, read_templates
from distill_core.errors import DataError

from .reference_files import read_json_records
from .verdicts import MT_BENCH_RATING, PAIRWISE, read_pairwise, read_rating

CATEGORIES = ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")
TEMPERATURE = {"writing": 0.7, "roleplay": 0.7, "stem": 0.1, "humanities": 0.1}  # every other category: greedy
REFERENCE_CATEGORIES = frozenset({"math", "reasoning", "coding"})
TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prompt_templates", "mt_bench")
CONTRACT = {
    "system.txt": frozenset(),
    "single.txt": frozenset({"reference_note", "question", "reference", "answer"}),
    "single_multi_turn.txt": frozenset(
        {"reference_note", "question_1", "answer_1", "question_2", "reference", "answer_2"}
    ),
    "pairwise.txt": frozenset({"reference_note", "question", "reference", "answer_a", "answer_b"}),
    "pairwise_multi_turn.txt": frozenset(
        {
            "reference_note",
            "question_1",
            "answer_a_1",
            "answer_b_1",
            "question_2",
            "reference",
            "answer_a_2",
            "answer_b_2",
        }
    ),  # fmt: skip
    "reference.txt": frozenset({"reference"}),
    "reference_note.txt": frozenset(),
    "reask.txt": frozenset({"error", "form"}),
}


@dataclass(frozen=True)
class Question:
    question_id: str
    category: str
    turns: tuple[str, str]
    reference: tuple[str, ...] = ()  # the reference answer per turn, for the reference categories only

    @property
    def temperature(self) -> float:
        return TEMPERATURE.get(self.category, 0.0)


@functools.lru_cache(maxsize=None)
def templates() -> JudgeTemplates:
    return read_templates(TEMPLATE_DIR, CONTRACT)


def load_questions(path: str, references_path: str | None) -> list[Question]:
    """The questions, with the reference answers of the math, reasoning and coding questions attached.

    Reference answers come from ``references_path`` (FastChat's reference_answer/*.jsonl: question_id and
    choices[0].turns) or, failing that, from a ``reference`` list in the question itself."""
    references = _read_references(references_path) if references_path else {}
    questions, seen = [], set()
    for index, record in enumerate(read_json_records(path, lines=True), start=1):
        qid, category, turns = record.get("question_id"), record.get("category"), record.get("turns")
        if qid is None or not isinstance(category, str) or not _two_texts(turns):
            raise DataError(f"{path}: line {index} needs question_id, category and turns (two question texts)")
        qid = str(qid)
        if qid in seen:
            raise DataError(f"{path}: question_id {qid} appears twice; ids must be unique")
        seen.add(qid)
        reference: tuple[str, ...] = ()
        if category in REFERENCE_CATEGORIES:
            reference = tuple(references.get(qid) or record.get("reference") or ())
            if not reference:
                raise DataError(
                    f"{path}: {category} question {qid} has no reference answer; give reference_answers "
                    "(e.g. ../shared/data/mt_bench_reference_answers_gpt4.jsonl)"
                )
        questions.append(Question(qid, category, (turns[0], turns[1]), reference))
    if not questions:
        raise DataError(f"{path}: no questions")
    return questions


def _read_references(path: str) -> dict[str, list[str]]:
    found = {}
    for index, record in enumerate(read_json_records(path, lines=True), start=1):
        choices = record.get("choices")
        turns = (
            choices[0].get("turns") if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
        )
        if record.get("question_id") is None or not isinstance(turns, list) or not turns:
            raise DataError(f"{path}: line {index} needs question_id and choices[0].turns (the reference answers)")
        found[str(record["question_id"])] = [str(t) for t in turns]
    return found


def _two_texts(turns) -> bool:
    return isinstance(turns, list) and len(turns) == 2 and all(isinstance(t, str) and t.strip() for t in turns)


def answer_messages(question: Question, turn: int, first_answer: str | None = None) -> list[dict]:
    """The conversation a model under test is asked to continue: turn 2 carries turn 1 and the model's answer."""
    messages = [{"role": "user", "content": question.turns[0]}]
    if turn == 2:
        messages += [
            {"role": "assistant", "content": first_answer or ""},
            {"role": "user", "content": question.turns[1]},
        ]
    return messages


def _reference_values(question: Question, turn: int) -> dict[str, str]:
    if not question.reference:
        return {"reference_note": "", "reference": ""}
    t = templates()
    shown = question.reference[turn - 1] if len(question.reference) >= turn else question.reference[-1]
    return {"reference_note": t.fill("reference_note.txt"), "reference": t.fill("reference.txt", reference=shown)}


def single_task(model: str, question: Question, turn: int, answers: tuple[str, str]) -> JudgeTask:
    """One single-answer grading of one model's answer on one turn."""
    t = templates()
    values = _reference_values(question, turn)
    if turn == 1:
        content = t.fill("single.txt", question=question.turns[0], answer=answers[0], **values)
    else:
        content = t.fill(
            "single_multi_turn.txt",
            question_1=question.turns[0],
            answer_1=answers[0],
            question_2=question.turns[1],
            answer_2=answers[1],
            **values,
        )
    messages = [{"role": "system", "content": t.fill("system.txt")}, {"role": "user", "content": content}]
    return JudgeTask(prompt_id=f"{model}/{question.question_id}", aspect=f"turn {turn}", order=[], messages=messages)


def pairwise_task(
    pair: tuple[str, str], question: Question, turn: int, shown: tuple[tuple[str, str], tuple[str, str]], swapped: bool
) -> JudgeTask:
    """One pairwise comparison on one turn; ``shown`` holds the answers of the model shown as A, then as B.
    ``order`` records which model of ``pair`` is shown first: [0, 1], or [1, 0] when swapped."""
    t = templates()
    values = _reference_values(question, turn)
    (a1, a2), (b1, b2) = shown
    if turn == 1:
        content = t.fill("pairwise.txt", question=question.turns[0], answer_a=a1, answer_b=b1, **values)
    else:
        content = t.fill(
            "pairwise_multi_turn.txt",
            question_1=question.turns[0],
            answer_a_1=a1,
            answer_b_1=b1,
            question_2=question.turns[1],
            answer_a_2=a2,
            answer_b_2=b2,
            **values,
        )
    messages = [{"role": "system", "content": t.fill("system.txt")}, {"role": "user", "content": content}]
    return JudgeTask(
        prompt_id=f"{pair[0]} vs {pair[1]}/{question.question_id}",
        aspect=f"turn {turn}",
        order=[1, 0] if swapped else [0, 1],
        messages=messages,
    )


def parse_single(task: JudgeTask, reply: str):
    return read_rating(reply)


def parse_pairwise(task: JudgeTask, reply: str):
    return read_pairwise(reply)


def reask_single(task: JudgeTask, error: str) -> str:
    return templates().fill("reask.txt", error=error, form=f'"{MT_BENCH_RATING.form}"')


def reask_pairwise(task: JudgeTask, error: str) -> str:
    return templates().fill("reask.txt", error=error, form=PAIRWISE.form)
