"""Every benchmark file a run reads, loaded and checked before any request: MT-Bench's questions, AlpacaEval's
instructions, baseline outputs and difficulties, Arena-Hard's questions, and each task's held-out examples."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import alpaca_eval, arena_hard, mt_bench
from .arguments import EvalArguments
from .length_controlled import read_difficulty
from .tasks import Task, load_task_rows


@dataclass
class AlpacaInputs:
    instructions: list[alpaca_eval.Instruction]
    baseline: str  # a model under test, or the generator named in the baseline outputs file
    baseline_outputs: dict[str, str] | None = None  # instruction -> output, when the baseline is a file
    difficulty: dict[str, float] | None = None  # instruction -> difficulty, for the length-controlled fit


@dataclass
class Inputs:
    questions: list[mt_bench.Question] = field(default_factory=list)  # MT-Bench, empty when not run
    alpaca: AlpacaInputs | None = None
    arena: list[arena_hard.ArenaQuestion] | None = None
    tasks: list[Task] = field(default_factory=list)
    model_names: list[str] = field(default_factory=list)  # every model under test, answered or not
    task_rows: dict[str, list[dict]] = field(default_factory=dict)  # task name -> its examples


def load_inputs(args: EvalArguments, model_names: list[str], tasks: list[Task]) -> Inputs:
    inputs = Inputs(tasks=tasks, task_rows={t.name: load_task_rows(t) for t in tasks}, model_names=list(model_names))
    if "mt_bench" in args.benchmarks:
        inputs.questions = select_questions(
            mt_bench.load_questions(args.questions, args.reference_answers), args.questions_per_category
        )
    if "alpaca_eval" in args.benchmarks:
        items = alpaca_eval.load_instructions(args.alpaca_eval_instructions, args.alpaca_eval_limit)
        base, outputs = args.alpaca_eval_baseline, None
        if base not in model_names:
            base, outputs = alpaca_eval.load_baseline_outputs(base, items)
        texts = [i.instruction for i in items]
        difficulty = read_difficulty(args.alpaca_eval_difficulty, texts) if args.alpaca_eval_difficulty else None
        inputs.alpaca = AlpacaInputs(items, base, outputs, difficulty)
    if "arena_hard" in args.benchmarks:
        if args.arena_hard_questions:
            inputs.arena = arena_hard.load_questions(args.arena_hard_questions)
        else:
            mt = inputs.questions or select_questions(
                mt_bench.load_questions(args.questions, args.reference_answers), args.questions_per_category
            )
            inputs.arena = [arena_hard.ArenaQuestion(q.question_id, q.turns[0], q.category) for q in mt]
    return inputs


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
