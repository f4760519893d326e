"""Per-example metrics of task evaluation (LoRA Land style), each mapping (response, target) to a score in [0, 1],
and their summary per task and model (``task_scores``).

A response that is None or only whitespace scores 0 under every metric; it is counted, never skipped (LoRA Land
skips responses with no text, which inflates scores). Text is read after Unicode NFKC normalisation (full-width
letters and digits become their plain forms) and ``casefold`` (lowercasing that also folds "ß" to "ss").

- ``exact_match``: SQuAD-style normalisation of both sides, then string equality: NFKC, casefold, every punctuation
  character deleted (Unicode categories P*, plus the ASCII symbols of ``string.punctuation``), the English articles
  "a", "an", "the" removed as whole words, whitespace collapsed. Equality, not containment: "0 or 1" does not match
  "1" (LoRA Land's substring test gives it credit).
- ``accuracy``: for classification and multiple choice. The response is split on whitespace and each token stripped
  of the punctuation around it (so "(B)", "B.", "**B**" read as "B"); no article removal, since "A" may be a label.
  With ``labels``, the answer is the first label found scanning the tokens from the start (a label of several words
  matches as a run of tokens; at one position the longest label wins); without ``labels``, the response must begin
  with the target's tokens. Score 1 iff that answer is the target. "0 or 1" against target "1" scores 0.
- ``rouge_l``: ROUGE-L F1 of the longest common subsequence of tokens, with ``data_gen.rouge``'s LCS and F1 (the
  operations of ``rouge_score``). Tokens: the maximal runs of letters and digits of the casefolded text, no
  stemming; on ASCII text exactly ``rouge_score``'s default tokenizer, and unlike it, non-ASCII words are kept
  whole ("café" is one token, not "caf"; its tokenizer scores every non-Latin text 0). A script written without
  spaces (Chinese, Japanese) becomes one token per run.
- ``numeric`` (GSM8K): the answer is the number after the last "####" when the text has one, else the last number in
  the text; a target is read the same way (a GSM8K solution ends "#### 72"). "$" is ignored; a comma counts as a
  thousands separator only between a digit and exactly three digits ("$1,234.50" is 1234.5, while "1,2" is two
  numbers: LoRA Land deletes every comma and reads 12). Compared as numbers ("18.00" equals "18"), with a relative
  tolerance of 1e-9.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from statistics import mean, stdev
from typing import Any, Callable, Sequence

from data_gen.rouge import rouge_l_f1

METRICS = ("exact_match", "accuracy", "rouge_l", "numeric")

_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_ASCII_PUNCTUATION = frozenset(string.punctuation)
_WORD = re.compile(r"[^\W_]+")  # runs of letters and digits: [a-z0-9]+ on ASCII, as rouge_score's tokenizer
# a run of digits and commas that starts and ends with a digit, an optional decimal part, an optional minus sign
_NUMBER = re.compile(r"(?:(?<!\w)-)?\d(?:[\d,]*\d)?(?:\.\d+)?")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def is_empty(response: str | None) -> bool:
    """Whether a response gave no text (None, empty or only whitespace)."""
    return response is None or not response.strip()


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _is_punctuation(char: str) -> bool:
    return char in _ASCII_PUNCTUATION or unicodedata.category(char).startswith("P")


def normalize_answer(text: str) -> str:
    """The exact-match form of a text: NFKC, casefold, punctuation deleted, articles removed, whitespace collapsed."""
    text = "".join(c for c in _fold(text) if not _is_punctuation(c))
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(response: str | None, target: str) -> float:
    if is_empty(response):
        return 0.0
    answer = normalize_answer(response)
    return float(bool(answer) and answer == normalize_answer(target))


def label_tokens(text: str) -> tuple[str, ...]:
    """Whitespace tokens of the folded text, each stripped of the punctuation around it; empty ones dropped."""
    tokens = []
    for token in _fold(text).split():
        start, end = 0, len(token)
        while start < end and _is_punctuation(token[start]):
            start += 1
        while end > start and _is_punctuation(token[end - 1]):
            end -= 1
        if start < end:
            tokens.append(token[start:end])
    return tuple(tokens)


def first_label(response: str, labels: Sequence[str]) -> tuple[str, ...] | None:
    """The first of ``labels`` (as label tokens) found scanning the response's tokens from the start; None if none."""
    candidates = sorted({label_tokens(label) for label in labels} - {()}, key=len, reverse=True)
    tokens = label_tokens(response)
    for start in range(len(tokens)):
        for label in candidates:
            if tokens[start : start + len(label)] == label:
                return label
    return None


def accuracy(response: str | None, target: str, labels: Sequence[str] | None = None) -> float:
    if is_empty(response):
        return 0.0
    wanted = label_tokens(target)
    if not wanted:
        return 0.0
    if labels:
        return float(first_label(response, labels) == wanted)
    return float(label_tokens(response)[: len(wanted)] == wanted)


def rouge_tokens(text: str) -> list[str]:
    return _WORD.findall(_fold(text))


def rouge_l(response: str | None, target: str) -> float:
    if is_empty(response):
        return 0.0
    return rouge_l_f1(rouge_tokens(target), rouge_tokens(response))


def numbers_in(text: str) -> list[float]:
    """Every number in the text, in order; a comma is a thousands separator only in groups of three digits."""
    found = []
    for match in _NUMBER.finditer(unicodedata.normalize("NFKC", text)):
        piece = match.group()
        if "," not in piece or _THOUSANDS.fullmatch(piece):
            found.append(float(piece.replace(",", "")))
        else:  # "1,2,3" is a list of numbers, not 123
            found.extend(float(part) for part in piece.split(",") if part.strip("-"))
    return found


def final_number(text: str) -> float | None:
    """The number after the last "####" when there is one, else the last number of the text; None if there is none."""
    head, marker, tail = text.rpartition("####")
    if marker:
        after = numbers_in(tail)
        if after:
            return after[0]
    found = numbers_in(text)
    return found[-1] if found else None


def numeric(response: str | None, target: str) -> float:
    if is_empty(response):
        return 0.0
    answer, wanted = final_number(response), final_number(target)
    if answer is None or wanted is None:
        return 0.0
    return float(math.isclose(answer, wanted, rel_tol=1e-9, abs_tol=1e-9))


def score_example(metric: str, response: str | None, target: str, labels: Sequence[str] | None = None) -> float:
    """The score in [0, 1] of one response under the named metric (``labels`` is read by accuracy only)."""
    if metric == "accuracy":
        return accuracy(response, target, labels)
    return _BY_NAME[metric](response, target)


_BY_NAME: dict[str, Callable[[str | None, str], float]] = {
    "exact_match": exact_match,
    "rouge_l": rouge_l,
    "numeric": numeric,
}


def score_rows(rows: list[dict], tasks: Sequence[Any]) -> list[dict]:
    """The answer rows (evaluation.tasks.generate_task_answers), each with its score in [0, 1] under its task's
    metric; ``tasks`` are evaluation.tasks.Task (name, metric, labels)."""
    by_name = {t.name: t for t in tasks}
    scored = []
    for row in rows:
        task = by_name[row["task"]]
        scored.append({**row, "score": score_example(task.metric, row["response"], row["target"], task.labels)})
    return scored


def task_scores(rows: list[dict], tasks: Sequence[Any]) -> dict:
    """Per task: its metric and examples; per model, the mean score over every one of its answer rows in percent
    (an empty reply counted as 0), their count, how many were empty, and the standard error of the mean in percent
    (sample standard deviation / sqrt(n); None below two rows)."""
    scored = score_rows(rows, tasks)
    summary = {}
    for task in tasks:
        task_rows = [r for r in scored if r["task"] == task.name]
        models: dict[str, dict] = {}
        for model in dict.fromkeys(r["model"] for r in task_rows):
            scores = [r["score"] for r in task_rows if r["model"] == model]
            models[model] = {
                "score": round(100 * mean(scores), 4),
                "n": len(scores),
                "empty": sum(1 for r in task_rows if r["model"] == model and is_empty(r["response"])),
                "standard_error": round(100 * stdev(scores) / math.sqrt(len(scores)), 4) if len(scores) > 1 else None,
            }
        summary[task.name] = {"metric": task.metric, "n": len({r["index"] for r in task_rows}), "models": models}
    return summary
