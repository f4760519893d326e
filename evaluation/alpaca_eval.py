"""AlpacaEval: the instructions, the baseline's outputs, and the judge conversations comparing a model's output
with the baseline's on one instruction.

The instructions file is JSON lines with ``instruction`` (``dataset`` optional), e.g. the 805 of
../shared/data/alpaca_eval_instructions.jsonl, whose rows also carry the text-davinci-003 output as
``baseline_output``. The baseline is a model under test (by name) or a file of its outputs in AlpacaEval's format
(a JSON list or JSON lines of ``instruction``, ``output``, ``generator``; ``baseline_output`` and
``baseline_generator`` are read too, so the instructions file itself can be the baseline file).

The two outputs are shown in an order drawn per (instruction, model) from the recipe's seed and mapped back, so
a judge that favours a position favours each model equally often. A preference is on AlpacaEval's scale: 1 = the
baseline is better, 2 = the model is, 1.5 a draw; None when the judge never gave a usable verdict.
"""

from __future__ import annotations

import functools
import os
import random
from dataclasses import dataclass

from data_gen.judge.reask import JudgeTask
from data_gen.judge.templates import JudgeTemplates, read_templates
from data_gen.stage import derived_seed
from distill_core.errors import DataError

from .reference_files import read_json_records
from .verdicts import PAIRWISE, read_pairwise

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prompt_templates", "alpaca_eval")
CONTRACT = {
    "system.txt": frozenset(),
    "compare.txt": frozenset({"instruction", "output_a", "output_b"}),
    "compare_logprob.txt": frozenset({"instruction", "output_a", "output_b"}),
    "reask.txt": frozenset({"error", "form"}),
}
LABELS = ("A", "B")  # the positions, and the one-token reply of the logprob annotator


@dataclass(frozen=True)
class Instruction:
    question_id: str  # the instruction's 0-based line number in the instructions file
    instruction: str
    dataset: str = ""


@functools.lru_cache(maxsize=None)
def templates() -> JudgeTemplates:
    return read_templates(TEMPLATE_DIR, CONTRACT)


def load_instructions(path: str, limit: int | None) -> list[Instruction]:
    rows = []
    for index, record in enumerate(read_json_records(path, lines=True), start=1):
        text = record.get("instruction")
        if not isinstance(text, str) or not text.strip():
            raise DataError(
                f"{path}: line {index} has no instruction (a non-empty string); AlpacaEval instructions are JSON "
                "lines with an instruction field"
            )
        rows.append(Instruction(str(index - 1), text, str(record.get("dataset") or "")))
    if not rows:
        raise DataError(f"{path}: no instructions")
    return rows[:limit]


def load_baseline_outputs(path: str, instructions: list[Instruction]) -> tuple[str, dict[str, str]]:
    """(the baseline's name, its output per instruction text) from an AlpacaEval outputs file."""
    records = _records(path)
    outputs, generators = {}, set()
    for index, record in enumerate(records, start=1):
        text = record.get("output", record.get("baseline_output"))
        if not isinstance(record.get("instruction"), str) or not isinstance(text, str):
            raise DataError(f"{path}: record {index} needs instruction and output (strings), AlpacaEval's format")
        outputs[record["instruction"]] = text
        generators.add(str(record.get("generator", record.get("baseline_generator")) or ""))
    missing = [i for i in instructions if i.instruction not in outputs]
    if missing:
        raise DataError(
            f"{path}: no baseline output for {len(missing)} instruction(s) under test, the first: "
            f"{missing[0].instruction[:60]!r}; give an output for every instruction, or lower alpaca_eval_limit"
        )
    name = "/".join(sorted(g for g in generators if g)) or os.path.splitext(os.path.basename(path))[0]
    return name, {i.instruction: outputs[i.instruction] for i in instructions}


def _records(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        head = f.read(1024).lstrip()
    return read_json_records(path, lines=not head.startswith("["))


def model_first(seed: int, model: str, question_id: str) -> bool:
    """Whether the model's output is shown as A (else the baseline's is), drawn once per (instruction, model)."""
    return random.Random(derived_seed(seed, "alpaca_eval", model, question_id)).random() < 0.5


def comparison_task(model: str, item: Instruction, output: str, baseline: str, first: bool, logprob: bool):
    """The judge conversation for one pair; ``order`` [1, 0] shows the model as A, [0, 1] the baseline as A."""
    t = templates()
    a, b = (output, baseline) if first else (baseline, output)
    name = "compare_logprob.txt" if logprob else "compare.txt"
    content = t.fill(name, instruction=item.instruction, output_a=a, output_b=b)
    messages = [{"role": "system", "content": t.fill("system.txt")}, {"role": "user", "content": content}]
    return JudgeTask(f"{model}/{item.question_id}", "alpaca_eval", [1, 0] if first else [0, 1], messages)


def preference_from_verdict(verdict: str | None, model_is_a: bool) -> float | None:
    """AlpacaEval's preference (1 baseline, 2 model, 1.5 draw) from a verdict on the positions."""
    if verdict is None:
        return None
    if verdict == "tie":
        return 1.5
    return 2.0 if (verdict == "A") == model_is_a else 1.0


def preference_from_probabilities(probs: dict[str, float], model_is_a: bool) -> float | None:
    """AlpacaEval 2's continuous preference: 2 - P(baseline label) / (P(baseline label) + P(model label))."""
    p_model, p_base = (probs.get("A", 0.0), probs.get("B", 0.0))[:: 1 if model_is_a else -1]
    if p_model + p_base <= 0:
        return None
    return 2.0 - p_base / (p_model + p_base)


def parse_verdict(task: JudgeTask, reply: str):
    return read_pairwise(reply)


def reask(task: JudgeTask, error: str) -> str:
    return templates().fill("reask.txt", error=error, form=PAIRWISE.form)
