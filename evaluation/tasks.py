"""Task evaluation of the models under test (LoRA Land style): a prompt template over a dataset's columns, a target
column, a metric and a fixed held-out slice, answered through the endpoint client and scored per example.

A task, inline in the eval recipe's ``tasks:`` list, or a name of ``recipes/tasks/NAME.yaml``, or a path to such a
file::

    name: gsm8k
    dataset: ../shared/data/benchmarks/gsm8k.jsonl   # a .jsonl/.json/.parquet/.csv file, a saved dataset, a hub id
    split: test                                      # the held-out split
    template: "Question: {fields[question]}\\nAnswer:" # str.format over the row's columns
    target: "fields[answer]"                         # a column, indexed like a template field
    metric: numeric                                  # exact_match | accuracy | rouge_l | numeric
    limit: 1000                                      # the first N rows of the split, in file order
    max_tokens: 256
    system: null                                     # an optional system prompt
    labels: null                                     # accuracy: the allowed answers

The template is Python's ``str.format`` over the row: ``{question}`` is a column, ``{fields[question]}`` a key of a
column holding a mapping, ``{choices[0]}`` an item of a list. Attribute access (``{a.b}``) is refused. One
extension: ``{choices:choices}`` writes a list as lines "A. first", "B. second", ... lettered by ``labels`` when
given, else A, B, C. An integer target with ``labels`` is an index into them (Hugging Face ``ClassLabel`` columns).

Every example of the slice is asked once per model (temperature 0, journaled: a rerun pays for nothing twice) and
every answer row is scored: a failed or empty reply scores 0 and is counted as empty, never dropped.
"""

from __future__ import annotations

import os
import re
import string
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from data_gen.client import ChatRequest
from data_gen.session import GenerationSession
from data_gen.stage import derived_seed
from distill_core.errors import DataError, RecipeError
from distill_core.structs import build_strict, did_you_mean, named_yaml_path, read_yaml_mapping
from training.data import load_split
from training.mixture import DatasetSpec

from .task_metrics import METRICS, label_tokens

if TYPE_CHECKING:  # the recipe's arguments read tasks; tasks only name the model type
    from .arguments import ModelUnderTest

TASKS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes", "tasks")
TASK_FIX = "write each task as a mapping {name, dataset, template, target, metric, ...}, a name or a YAML path"


@dataclass
class Task:
    name: str = field(metadata={"help": "The task's name: answer rows and scores are keyed by it."})
    dataset: str = field(metadata={"help": "A .jsonl/.json/.parquet/.csv file, a saved dataset or a hub id."})
    template: str = field(metadata={"help": "The user prompt: str.format over the row's columns."})
    target: str = field(metadata={"help": "The column holding the expected answer (fields[answer] for a key)."})
    metric: str = field(metadata={"help": "exact_match, accuracy, rouge_l or numeric."})
    split: str = field(default="test", metadata={"help": "The held-out split."})
    config: Optional[str] = field(default=None, metadata={"help": "The hub config name, when the dataset has one."})
    limit: int = field(
        default=1000,
        metadata={"help": "The first N rows of the split.", "min": 1, "fix": "set limit to the rows to use, >= 1"},
    )
    labels: Optional[list[str]] = field(default=None, metadata={"help": "accuracy: the allowed answers."})
    max_tokens: int = field(default=64, metadata={"help": "max_tokens of an answer.", "min": 1})
    system: Optional[str] = field(default=None, metadata={"help": "An optional system prompt."})


def parse_tasks(raw: Any, where: str) -> list[Task]:
    """The ``tasks`` list of a recipe, each entry built strictly and checked (no dataset is read here)."""
    if not isinstance(raw, list):
        raise RecipeError(f"{where}: tasks must be a list; {TASK_FIX}")
    tasks = [parse_task(entry, f"{where}: tasks[{i}]") for i, entry in enumerate(raw)]
    names = [t.name for t in tasks]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise RecipeError(
                f"{where}: tasks[{names.index(name)}] and tasks[{i}] are both named '{name}'; give each its own name"
            )
    return tasks


def parse_task(entry: Any, where: str) -> Task:
    if isinstance(entry, str):
        path = named_yaml_path(entry, TASKS_DIR, "task", where)
        entry, where = read_yaml_mapping(path, "task"), path
    if isinstance(entry, dict) and isinstance(entry.get("name"), str):
        where = f"{where} (task '{entry['name']}')"
    task = build_strict(Task, entry, where)
    if task.metric not in METRICS:
        hint = did_you_mean(task.metric, METRICS, f"use one of {list(METRICS)}")
        raise RecipeError(f"{where}: metric '{task.metric}' is unknown; {hint}")
    if task.labels is not None and task.metric != "accuracy":
        raise RecipeError(f"{where}: labels is read by metric accuracy only; remove labels or set metric: accuracy")
    if task.labels is not None and (not task.labels or not all(label_tokens(str(x)) for x in task.labels)):
        raise RecipeError(f"{where}: labels must be a non-empty list of answers with text, got {task.labels!r}")
    template_columns(task, where)
    _column_of(task.target, where, "target")
    return task


def _column_of(field_name: str, where: str, key: str) -> str:
    """The column a template field or target names: ``fields`` of ``fields[question]``."""
    column = re.match(r"[^.\[]*", field_name).group()
    if not column or column.isdigit() or "." in field_name:
        raise RecipeError(
            f"{where}: {key} field '{{{field_name}}}' must name a column, indexed with [key] if at all "
            "(positional fields and attribute access are refused)"
        )
    return column


def template_columns(task: Task, where: str) -> list[str]:
    """The columns the template names, in order; a template str.format cannot parse is a RecipeError."""
    try:
        parsed = list(string.Formatter().parse(task.template))
    except ValueError as exc:
        raise RecipeError(
            f"{where}: template is not a valid format string ({exc}); write '{{{{' for a brace"
        ) from None
    columns = [_column_of(f, where, "template") for _, f, _, _ in parsed if f is not None]
    if not columns:
        raise RecipeError(f"{where}: template names no column; write e.g. 'Question: {{question}}\\nAnswer:'")
    return list(dict.fromkeys(columns))


class _TemplateFormatter(string.Formatter):
    """str.format plus ``{column:choices}``: a list as lettered lines."""

    def __init__(self, letters: list[str]):
        self.letters = letters

    def format_field(self, value: Any, format_spec: str) -> str:
        if format_spec != "choices":
            return super().format_field(value, format_spec)
        if not isinstance(value, list) or len(value) > len(self.letters):
            raise ValueError(f"':choices' needs a list of at most {len(self.letters)} items")
        return "\n".join(f"{letter}. {item}" for letter, item in zip(self.letters, value))


def load_task_rows(task: Task) -> list[dict]:
    """The task's examples: the first ``limit`` rows of its split, each as {index, prompt, target}, every prompt
    rendered and every target read, so a bad dataset stops here, before any request."""
    where = f"task '{task.name}'"
    at = f"{where}: dataset '{task.dataset}' split '{task.split}'"
    empty = f"{at} is empty; point dataset/split at the held-out examples"
    if os.path.isfile(task.dataset) and _blank(task.dataset):  # the file builders fail on it with no useful message
        raise DataError(empty)
    try:
        dataset = load_split(DatasetSpec(task.dataset, task.split, config=task.config), task.split, where)
    except DataError as exc:  # a file of a header and no rows: datasets says the split "corresponds to no data"
        raise DataError(empty) if "corresponds to no data" in str(exc) else exc from None
    if len(dataset) == 0:
        raise DataError(empty)
    columns = list(dataset.column_names)
    for key, names in (("template", template_columns(task, where)), ("target", [_column_of(task.target, where, "")])):
        for name in names:
            if name not in columns:
                hint = did_you_mean(name, columns, f"it has {sorted(columns)}")
                raise DataError(f"{at} lacks column '{name}' named by {key}; {hint}")
    letters = list(task.labels) if task.labels else list(string.ascii_uppercase)
    formatter = _TemplateFormatter(letters)
    rows = dataset.select(range(min(task.limit, len(dataset)))).to_list()
    return [_example(task, formatter, row, index, at) for index, row in enumerate(rows)]


def _blank(path: str) -> bool:
    with open(path, "rb") as f:
        while chunk := f.read(1 << 16):
            if chunk.strip():
                return False
    return True


def _example(task: Task, formatter: _TemplateFormatter, row: dict, index: int, at: str) -> dict:
    try:
        prompt = formatter.format(task.template, **row)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise DataError(f"{at}: row {index} does not fill the template ({type(exc).__name__}: {exc}); fix template")
    try:
        value = formatter.get_field(task.target, (), row)[0]
    except (KeyError, IndexError, TypeError) as exc:
        raise DataError(f"{at}: row {index} has no target '{task.target}' ({type(exc).__name__}: {exc}); fix target")
    return {"index": index, "prompt": prompt, "target": _target_text(task, value, f"{at}: row {index}")}


def _target_text(task: Task, value: Any, at: str) -> str:
    labels = task.labels
    if labels and isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < len(labels):
            raise DataError(f"{at}: target index {value} is outside labels {labels}; list every label")
        return str(labels[value])
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not str(value).strip():
        raise DataError(
            f"{at}: target '{task.target}' is {value!r}, not a text or a number; fix the dataset or target"
        )
    text = str(value)
    if labels and label_tokens(text) not in {label_tokens(str(label)) for label in labels}:
        raise DataError(f"{at}: target {text!r} is not among labels {labels}; add it to labels or fix target")
    return text


def build_task_requests(task: Task, rows: list[dict], seed: int | None = None) -> list[ChatRequest]:
    """One chat request per example: the optional system prompt, then the rendered template; greedy, and seeded
    per example when ``seed`` is given."""
    system = [{"role": "system", "content": task.system}] if task.system else []
    requests = []
    for row in rows:
        params: dict[str, Any] = {"temperature": 0.0, "max_tokens": task.max_tokens}
        if seed is not None:
            params["seed"] = derived_seed(seed, "task", task.name, row["index"])
        requests.append(ChatRequest(system + [{"role": "user", "content": row["prompt"]}], params))
    return requests


def generate_task_answers(
    gen: GenerationSession,
    models: list[ModelUnderTest],
    tasks: list[Task],
    *,
    seed: int,
    keep_truncated: bool = True,
    rows: dict[str, list[dict]] | None = None,
) -> list[dict]:
    """Every example of every task from every model with an endpoint (roles ``model{i}``, as for MT-Bench answers).

    Answer rows: model, task, index, prompt, target, response (None when the model gave no usable reply) and
    finish_reason. ``rows`` holds each task's examples when already loaded (``load_task_rows``)."""
    rows = {t.name: rows[t.name] if rows and t.name in rows else load_task_rows(t) for t in tasks}
    roles = {f"model{i}": m for i, m in enumerate(models) if m.teacher is not None}
    requests = []
    for task in tasks:
        for row, request in zip(rows[task.name], build_task_requests(task, rows[task.name], seed)):
            requests.append((task, row, request))
    results = gen.ask_many({role: [r for _, _, r in requests] for role in roles}, "task answers")
    answers = []
    for role, model in roles.items():
        for (task, row, _), result in zip(requests, results[role]):
            answers.append(
                {
                    "model": model.name,
                    "task": task.name,
                    "index": row["index"],
                    "prompt": row["prompt"],
                    "target": row["target"],
                    "response": result.text if result.kept(keep_truncated) else None,
                    "finish_reason": result.finish_reason or result.status,
                }
            )
    return answers
