"""The eval stage's recipe: the models under test, the judge, the benchmark files and how to grade."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from data_gen.endpoints import TeacherConfig, load_teacher
from data_gen.stage import GenerationArguments, check_generation, local_model_name, refuse_duplicates
from distill_core.errors import DataError, RecipeError
from distill_core.recipe import Recipe

from .tasks import parse_tasks

GradingMode = Literal["single", "pairwise", "both"]
Benchmark = Literal["mt_bench", "alpaca_eval", "arena_hard"]
Annotator = Literal["text", "logprob"]
MODEL_FIX = (
    "write each model as a teacher name or YAML path (gpt-4, vllm), a model directory, {model_dir: DIR, name: N}, "
    "{teacher: NAME_OR_MAPPING, name: N} or {answers: FILE, name: N}"
)


@dataclass
class EvalArguments(GenerationArguments):
    models: list = field(
        default_factory=list,
        metadata={"help": "The models under test: teacher overlays, model directories, or answer files. " + MODEL_FIX},
    )
    judge: Any = field(
        default="local",
        metadata={
            "help": "The judge: a teacher overlay name, path or inline mapping (gpt-4 for the published protocol)."
        },
    )
    benchmarks: list[Benchmark] = field(
        default_factory=lambda: ["mt_bench"],
        metadata={"help": "What to run, each once: mt_bench, alpaca_eval, arena_hard.", "fix": "spell each as listed"},
    )
    tasks: list = field(
        default_factory=list,
        metadata={
            "help": (
                "Task metrics (LoRA Land style): each a name under recipes/tasks/, a YAML path or an inline mapping "
                "(dataset, split, template, target, metric, limit)."
            )
        },
    )
    questions: str = field(
        default="", metadata={"help": "MT-Bench questions (JSON lines: question_id, category, turns)."}
    )
    reference_answers: Optional[str] = field(
        default=None,
        metadata={"help": "Reference answers for math, reasoning and coding (FastChat's reference_answer/*.jsonl)."},
    )
    questions_per_category: Optional[int] = field(
        default=None,
        metadata={"help": "Use the first N questions of each category.", "min": 1, "fix": "omit the key for all 80"},
    )
    grading: GradingMode = field(
        default="single",
        metadata={"help": "single: rate each answer 1-10; pairwise: compare models in both orders; both."},
    )
    baseline: Optional[str] = field(
        default=None,
        metadata={"help": "Pairwise: compare every model with this one (by name); omitted: all pairs."},
    )
    answer_max_tokens: int = field(
        default=1024, metadata={"help": "max_tokens of an answer (1024 in MT-Bench).", "min": 1}
    )
    judge_max_tokens: int = field(default=2048, metadata={"help": "max_tokens of a judge reply.", "min": 1})
    judge_temperature: float = field(default=0.0, metadata={"help": "Judge temperature (0 in MT-Bench).", "min": 0})
    max_reasks: int = field(
        default=2, metadata={"help": "Re-asks after a judge reply without a usable verdict.", "min": 0}
    )
    bootstrap_rounds: int = field(
        default=1000, metadata={"help": "Bootstrap rounds of the Bradley-Terry intervals.", "min": 0}
    )
    interval_level: float = field(
        default=0.95,
        metadata={"help": "Level of the Bradley-Terry intervals.", "exclusive_min": 0, "exclusive_max": 1},
    )
    published: dict = field(
        default_factory=dict,
        metadata={
            "help": "Published scores to compare with: {model name: {metric: value}}, e.g. {ddpo: {mt_bench: 7.34}}."
        },
    )
    alpaca_eval_instructions: str = field(
        default="../shared/data/alpaca_eval_instructions.jsonl",
        metadata={"help": "AlpacaEval instructions (JSON lines with instruction; dataset optional)."},
    )
    alpaca_eval_limit: Optional[int] = field(
        default=None,
        metadata={"help": "Use the first N instructions.", "min": 1, "fix": "omit the key for all of them"},
    )
    alpaca_eval_baseline: Optional[str] = field(
        default=None,
        metadata={
            "help": (
                "AlpacaEval baseline: a model under test (by name), or a file of its outputs (JSON list or lines: "
                "instruction, output, generator; or baseline_output, baseline_generator)."
            )
        },
    )
    alpaca_eval_annotator: Annotator = field(
        default="text",
        metadata={"help": "text: a written verdict [[A]]/[[B]]; logprob: preference from the label probabilities."},
    )
    alpaca_eval_difficulty: Optional[str] = field(
        default=None,
        metadata={"help": "Per-instruction difficulty for the length-controlled win rate (JSON {instruction: x})."},
    )
    alpaca_eval_max_tokens: int = field(
        default=2048, metadata={"help": "max_tokens of an AlpacaEval answer (temperature 0).", "min": 1}
    )
    arena_hard_questions: Optional[str] = field(
        default=None,
        metadata={"help": "Arena-Hard questions (JSON lines: question_id and prompt or turns); default: questions."},
    )
    arena_hard_baseline: Optional[str] = field(
        default=None, metadata={"help": "Arena-Hard baseline: a model under test, by name (required)."}
    )
    arena_hard_max_tokens: int = field(
        default=2048, metadata={"help": "max_tokens of an Arena-Hard answer (temperature 0).", "min": 1}
    )
    keep_truncated: bool = field(
        default=True,
        metadata={
            "help": (
                "Judge an answer cut by answer_max_tokens as it is (as MT-Bench does); false counts it unanswered."
            )
        },
    )

    def check(self, where: str) -> None:
        refuse_duplicates(self.benchmarks, where, "benchmarks")
        if not self.benchmarks and not self.tasks:
            raise RecipeError(
                f"{where}: benchmarks and tasks are both empty; list one or more of mt_bench, alpaca_eval, "
                "arena_hard, or name tasks"
            )
        needs_questions = "mt_bench" in self.benchmarks or (
            "arena_hard" in self.benchmarks and not self.arena_hard_questions
        )
        if needs_questions and not os.path.isfile(self.questions):
            raise DataError(
                f"{where}: questions '{self.questions}' is not a file; point it at MT-Bench's question.jsonl"
            )
        if needs_questions and self.reference_answers and not os.path.isfile(self.reference_answers):
            raise DataError(f"{where}: reference_answers '{self.reference_answers}' is not a file")
        if not self.models:
            raise RecipeError(f"{where}: models is empty; {MODEL_FIX}")
        if "mt_bench" in self.benchmarks and self.grading != "single" and len(self.models) < 2:
            raise RecipeError(f"{where}: grading: {self.grading} compares models and needs at least two under models")


@dataclass(frozen=True)
class ModelUnderTest:
    name: str
    teacher: TeacherConfig | None = None  # answers are generated from this endpoint or local model
    answers: str | None = None  # or read from this file


def model_under_test(entry: Any, where: str) -> ModelUnderTest:
    """One entry of ``models``, resolved and checked."""
    if isinstance(entry, str) and os.path.isdir(entry):
        entry = {"model_dir": entry}
    if isinstance(entry, dict) and "answers" in entry:
        unknown = sorted(set(entry) - {"answers", "name"})
        if unknown or not isinstance(entry.get("name"), str) or not os.path.isfile(str(entry["answers"])):
            raise RecipeError(f"{where}: an answers entry needs answers (an existing file) and name only; {MODEL_FIX}")
        return ModelUnderTest(entry["name"], answers=entry["answers"])
    name = (
        entry.pop("name", None) if isinstance(entry, dict) and ("model_dir" in entry or "teacher" in entry) else None
    )
    if isinstance(entry, dict) and "model_dir" in entry:
        entry = {"local_server": {"model_dir": entry.pop("model_dir")}, **entry}
    elif isinstance(entry, dict) and "teacher" in entry:
        if set(entry) != {"teacher"}:
            raise RecipeError(f"{where}: unknown keys {sorted(set(entry) - {'teacher'})}; {MODEL_FIX}")
        entry = entry["teacher"]
    teacher = load_teacher(entry, where)
    return ModelUnderTest(str(name or local_model_name(teacher) or teacher.name), teacher=teacher)


def check_eval(recipe: Recipe) -> None:
    where = recipe.path
    args: EvalArguments = check_generation(recipe, "models")
    models = [model_under_test(_copy(m), f"{where}: models[{i}]") for i, m in enumerate(args.models)]
    names = [m.name for m in models]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise RecipeError(
                f"{where}: models[{names.index(name)}] and models[{i}] are both named '{name}'; give each a distinct "
                "name: (answers, judgments and scores are keyed by it)"
            )
    if args.baseline is not None and args.baseline not in [m.name for m in models]:
        raise RecipeError(f"{where}: baseline '{args.baseline}' is not among the models {[m.name for m in models]}")
    check_benchmark_models(args, models, where)
    recipe.parsed["tasks"] = parse_tasks(args.tasks, f"{where}: tasks")
    recipe.parsed["models"] = models
    recipe.parsed["judge"] = load_teacher(args.judge, f"{where}: judge")


def check_benchmark_models(args: EvalArguments, models: list[ModelUnderTest], where: str) -> None:
    """The baselines and answer sources the AlpacaEval and Arena-Hard runs need, before any request."""
    names = [m.name for m in models]
    benches = [b for b in args.benchmarks if b != "mt_bench"] + (["tasks"] if args.tasks else [])
    for model in models:
        if model.answers and benches:
            raise RecipeError(
                f"{where}: model '{model.name}' gives MT-Bench answers from a file; {', '.join(benches)} needs it "
                "answering from an endpoint or model directory (or drop it from models)"
            )
    if "alpaca_eval" in args.benchmarks:
        base = args.alpaca_eval_baseline
        if base is None:
            raise RecipeError(
                f"{where}: alpaca_eval needs alpaca_eval_baseline: a model name among {names} or a file of the "
                "baseline's outputs (e.g. text-davinci-003's)"
            )
        if base not in names and not os.path.isfile(base):
            raise RecipeError(f"{where}: alpaca_eval_baseline '{base}' is neither a model among {names} nor a file")
    if "arena_hard" in args.benchmarks and args.arena_hard_baseline not in names:
        raise RecipeError(
            f"{where}: arena_hard_baseline {args.arena_hard_baseline!r} is not among the models {names}; name one "
            "of them (every other model is compared with it)"
        )


def _copy(entry: Any) -> Any:
    return dict(entry) if isinstance(entry, dict) else entry
