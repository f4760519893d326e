"""Arena-Hard-Auto: each model's answer to a question compared with a baseline model's, twice (the baseline shown
first, then second), by a judge that writes its own answer first and ends with one of five verdicts.

Questions are JSON lines with ``question_id`` and the question as ``prompt`` (a string) or ``turns`` (its first
entry: a string, or Arena-Hard's {"content": ...}); MT-Bench's question file works as it is (its first turns).
A "much better" verdict counts as three games, an unparsed judgment as none (counted as ``unjudged``). A model's
score is (wins + ties / 2) / games in percent, with a percentile bootstrap interval over the judgments (resampled
with replacement, seeded), the level and the rounds stated beside it.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np

from data_gen.judge.reask import JudgeTask
from data_gen.judge.templates import JudgeTemplates, read_templates
from distill_core.errors import DataError

from .reference_files import read_json_records
from .verdicts import ARENA, read_arena
from .win_rate import arena_games

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prompt_templates", "arena_hard")
CONTRACT = {
    "system.txt": frozenset(),
    "compare.txt": frozenset({"question", "answer_a", "answer_b"}),
    "reask.txt": frozenset({"error", "form"}),
}


@dataclass(frozen=True)
class ArenaQuestion:
    question_id: str
    prompt: str
    category: str = ""


@functools.lru_cache(maxsize=None)
def templates() -> JudgeTemplates:
    return read_templates(TEMPLATE_DIR, CONTRACT)


def load_questions(path: str) -> list[ArenaQuestion]:
    questions, seen = [], set()
    for index, record in enumerate(read_json_records(path, lines=True), start=1):
        prompt = record.get("prompt")
        turns = record.get("turns")
        if prompt is None and isinstance(turns, list) and turns:
            prompt = turns[0].get("content") if isinstance(turns[0], dict) else turns[0]
        qid = record.get("question_id", record.get("uid"))
        if qid is None or not isinstance(prompt, str) or not prompt.strip():
            raise DataError(
                f"{path}: line {index} needs question_id and prompt (a string) or turns (first: the question)"
            )
        if str(qid) in seen:
            raise DataError(f"{path}: question_id {qid} appears twice; ids must be unique")
        seen.add(str(qid))
        questions.append(ArenaQuestion(str(qid), prompt, str(record.get("category") or "")))
    if not questions:
        raise DataError(f"{path}: no questions")
    return questions


def game_task(model: str, baseline: str, question: ArenaQuestion, answers: dict[str, str], game: int) -> JudgeTask:
    """Game 1 shows the baseline as A, game 2 as B; ``order`` [0, 1] / [1, 0] (0 = the baseline, 1 = the model)."""
    t = templates()
    a, b = (answers[baseline], answers[model]) if game == 1 else (answers[model], answers[baseline])
    content = t.fill("compare.txt", question=question.prompt, answer_a=a, answer_b=b)
    messages = [{"role": "system", "content": t.fill("system.txt")}, {"role": "user", "content": content}]
    return JudgeTask(f"{model}/{question.question_id}", f"game {game}", [0, 1] if game == 1 else [1, 0], messages)


def parse_verdict(task: JudgeTask, reply: str):
    return read_arena(reply)


def reask(task: JudgeTask, error: str) -> str:
    return templates().fill("reask.txt", error=error, form=ARENA.form)


def model_games(row: dict) -> list[float]:
    """The weighted games one judgment row adds for its model (1 win, 0.5 tie, 0 loss)."""
    return arena_games(row["verdict"], model_is_a=row["order"][0] == 1)


def arena_scores(rows: list[dict], *, rounds: int, level: float, seed: int) -> dict[str, dict]:
    """Per model: score, interval, wins/losses/ties (weighted games), unjudged judgments and games, in percent."""
    by_model: dict[str, list[dict]] = {}
    for row in rows:
        by_model.setdefault(row["model"], []).append(row)
    summary = {}
    for model, model_rows in sorted(by_model.items()):
        per_row = [model_games(r) for r in model_rows if r["verdict"] is not None]
        games = [g for row_games in per_row for g in row_games]
        score = 100 * float(np.mean(games)) if games else None
        lower, upper = _bootstrap(per_row, rounds, level, seed)
        summary[model] = {
            "score": _round(score),
            "lower": _round(lower),
            "upper": _round(upper),
            "wins": sum(g == 1.0 for g in games),
            "losses": sum(g == 0.0 for g in games),
            "ties": sum(g == 0.5 for g in games),
            "unjudged": len(model_rows) - len(per_row),
            "games": len(games),
        }
    return summary


def _bootstrap(per_row: list[list[float]], rounds: int, level: float, seed: int) -> tuple[float | None, float | None]:
    if not per_row or rounds < 1:
        return None, None
    sums = np.array([sum(g) for g in per_row])
    counts = np.array([len(g) for g in per_row])
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(per_row), size=(rounds, len(per_row)))
    means = 100 * sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
