"""UltraFeedback-style judging: four aspects, one call per aspect rating every completion of a prompt.

Text mode (default): for each prompt and aspect ONE request shows all completions in a shuffled order
(seeded per prompt and aspect) and asks for a JSON object of 1-5 ratings with rationales (N/A allowed for
honesty; a type 1-3 for truthfulness and helpfulness). Ratings are mapped back to the completions by the
shuffle. Replies are parsed as JSON, else as "Text N / Rating / Rationale" text; an unusable reply is
re-asked (bounded), every raw reply is kept, and a completion still unparsed after the re-asks is recorded
as a failure, never as a score.

Logprob mode: the rating is the expected value of the rating digit under the judge's probabilities, from
an endpoint's top logprobs or from a local model evaluated in-process. It cannot fail to parse.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

from distill_core.errors import DataError, RecipeError
from distill_core.jsonl import read_jsonl
from distill_core.recipe import Recipe

from .client import BudgetExceeded, ChatRequest
from .endpoints import load_teacher
from .session import GenerationSession
from .stage import (GenerationArguments, StageFailed, check_generation, check_outcome, derived_seed, estimate_cost,
                    output_fingerprint, print_estimate, prompt_id, refuse_duplicate_rows, refuse_duplicates,
                    request_failures, stage_lock, templates_hash)

logger = logging.getLogger(__name__)

ASPECTS = ("instruction_following", "honesty", "truthfulness", "helpfulness")
TYPED = {"truthfulness", "helpfulness"}
NA_ALLOWED = {"honesty"}

# Our own rubric wording, one per aspect.
RUBRICS = {
    "instruction_following": (
        "Instruction following: how well does the text do what the instruction asks, respecting its task, "
        "constraints and requested format?\n1 = ignores the instruction; 2 = addresses it poorly; 3 = follows part of "
        "it; 4 = follows it with minor deviations; 5 = follows it fully."),
    "honesty": (
        "Honesty: does the text express confidence that matches its correctness?\n1 = confidently wrong; "
        "2 = confident with major mistakes; 3 = hedges without reason, or has minor mistakes stated confidently; "
        "4 = correct but needlessly unsure, or flags its minor uncertainties; 5 = correct and confident, or precise "
        "about what it does not know. Use \"N/A\" when honesty does not apply (creative writing, role play)."),
    "truthfulness": (
        "Truthfulness: does the text avoid hallucination?\n1 = mostly fabricated; 2 = severe hallucination; "
        "3 = partial hallucination or misunderstanding; 4 = slight hallucination on minor points; 5 = no "
        "hallucination. Type: 1 = contradicts established facts, 2 = contradicts the instruction or its input, "
        "3 = contradicts itself or reasons illogically; null when there is no hallucination."),
    "helpfulness": (
        "Helpfulness: is the text correct and informative for the person asking?\n1 = wrong or useless; "
        "2 = partly wrong or confusing; 3 = correct and meets the need; 4 = correct and informative; "
        "5 = correct, thorough and insightful. Type (informativeness): 1 = clear and relevant only, 2 = also gives "
        "useful, comprehensive information, 3 = also concise, without repetition or padding."),
}
JUDGE_TEMPLATE = (
    "You are an impartial judge rating AI assistants' answers.\n\n{rubric}\n\nInstruction:\n{instruction}\n\n"
    "{texts}\n\nRate each of the {k} texts independently. Reply with only a JSON object of this form:\n"
    '{{"ratings": [{{"text": 1, "rating": <1-5{na}>, {type_hint}"rationale": "<one or two sentences>"}}, ...]}}\n'
    "with exactly one entry for each text from 1 to {k}."
)
REASK_TEMPLATE = ("I could not use that reply: {error}. Reply again with only the JSON object, one entry for each text "
                  "from 1 to {k}, ratings as whole numbers from 1 to 5{na}.")
LOGPROB_TEMPLATE = (
    "You are an impartial judge rating an AI assistant's answer.\n\n{rubric}\n\nInstruction:\n{instruction}\n\n"
    "Answer:\n{text}\n\nReply with the rating only: one digit from 1 to 5."
)
CRITIQUE_TEMPLATE = (
    "You are a demanding reviewer of AI assistants' answers. Write a short critique of the answer below (what is "
    "right, what is wrong or missing), then end with a last line of the form 'Overall score: N' where N is a whole "
    "number from 1 (useless) to 10 (excellent).\n\nInstruction:\n{instruction}\n\nAnswer:\n{text}"
)
CRITIQUE_REASK = "I could not read your score: {error}. End with one line 'Overall score: N', N a whole number from 1 to 10."
TEMPLATES = (JUDGE_TEMPLATE, REASK_TEMPLATE, LOGPROB_TEMPLATE, CRITIQUE_TEMPLATE, CRITIQUE_REASK, *RUBRICS.values())


@dataclass
class JudgeArguments(GenerationArguments):
    pool: str = field(default="", metadata={"help": "Completion pool: a JSONL file or directory with train.jsonl (prompt, prompt_id, completions)."})
    judge: Any = field(default="local", metadata={"help": "The judge: a teacher overlay name, path or inline mapping (gpt-4, local, ...)."})
    mode: str = field(default="text", metadata={"help": "text: one JSON-rated call per aspect; logprobs: expected rating from an endpoint's top logprobs; logprobs_local: the same from a local model run in-process."})
    judge_model_dir: Optional[str] = field(default=None, metadata={"help": "Model directory for mode logprobs_local."})
    aspects: list = field(default_factory=lambda: list(ASPECTS), metadata={"help": "Aspects to rate."})
    max_reasks: int = field(default=3, metadata={"help": "Re-asks after an unusable reply (the original used up to 10).", "min": 0})
    json_mode: bool = field(default=False, metadata={"help": "Ask for response_format json_object (for endpoints that support it)."})
    temperature: float = field(default=0.0, metadata={"help": "Judge temperature (0 in UltraFeedback).", "min": 0})
    max_tokens: int = field(default=1024, metadata={"help": "max_tokens of a text-mode judge reply.", "min": 1})
    num_prompts: Optional[int] = field(default=None, metadata={"help": "Judge only the first N prompts.", "min": 1, "fix": "omit the key to judge every prompt"})
    critique: bool = field(default=False, metadata={"help": "Also run a critique pass giving each completion an overall score 1-10 (needed for score: overall)."})
    score: str = field(default="mean", metadata={"help": "Binarization score: mean (of aspect ratings) or overall."})
    strategy: str = field(default="random_lower", metadata={"help": "Rejected pick: random_lower (default), random_rest (Zephyr's original) or lowest."})
    min_margin: float = field(default=0.0, metadata={"help": "Drop pairs whose score margin is below this.", "min": 0})


def check_judge(recipe: Recipe) -> None:
    where = recipe.path
    check_generation(recipe, "pool")
    if not os.path.exists(recipe.get("pool")):
        raise DataError(f"{where}: pool '{recipe.get('pool')}' does not exist; run scripts/run_completions.py first")
    mode = recipe.get("mode", "text")
    if mode not in ("text", "logprobs", "logprobs_local"):
        raise RecipeError(f"{where}: mode '{mode}' is not one of text, logprobs, logprobs_local")
    unknown = sorted(set(recipe.get("aspects") or ASPECTS) - set(ASPECTS))
    if unknown:
        raise RecipeError(f"{where}: unknown aspect '{unknown[0]}'; choose from {list(ASPECTS)}")
    if recipe.get("strategy", "random_lower") not in ("random_lower", "random_rest", "lowest"):
        raise RecipeError(f"{where}: strategy must be random_lower, random_rest or lowest")
    if recipe.get("score", "mean") not in ("mean", "overall"):
        raise RecipeError(f"{where}: score must be mean or overall")
    if recipe.get("score") == "overall" and not recipe.get("critique"):
        raise RecipeError(f"{where}: score: overall needs the critique pass; set critique: true")
    if mode == "logprobs_local" and recipe.get("critique"):
        raise RecipeError(f"{where}: the critique pass needs an endpoint judge (mode text or logprobs), not logprobs_local")
    if mode == "logprobs_local":
        model_dir = recipe.get("judge_model_dir")
        if not model_dir or not os.path.isfile(os.path.join(model_dir, "config.json")):
            raise RecipeError(f"{where}: mode logprobs_local needs judge_model_dir, a model directory (got {model_dir!r})")
    else:
        recipe.parsed["judge"] = load_teacher(recipe.get("judge", "local"), f"{where}: judge")


def load_pool(path: str) -> list[dict]:
    if os.path.isdir(path):
        path = os.path.join(path, "train.jsonl")
    rows = []
    for n, row in read_jsonl(path):
        comps = row.get("completions")
        if not isinstance(row.get("prompt"), str) or not isinstance(comps, list) or len(comps) < 2:
            raise DataError(f"{path} line {n}: a pool row needs 'prompt' (string) and 'completions' (a list of at least 2)")
        for j, c in enumerate(comps):
            if not isinstance(c, dict) or not isinstance(c.get("text"), str) or not c.get("model"):
                raise DataError(f"{path} line {n}: completions[{j}] needs 'model' and 'text'")
        row.setdefault("prompt_id", prompt_id(row["prompt"]))
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: the pool is empty")
    return rows


# -- text mode --------------------------------------------------------------------------------------------------------

def shuffled_order(seed: int, prompt_id: str, aspect: str, k: int) -> list[int]:
    """shown position -> completion index; seeded per prompt and aspect so positions carry no signal."""
    order = list(range(k))
    random.Random(derived_seed(seed, "judge", prompt_id, aspect)).shuffle(order)
    return order


def judge_messages(row: dict, aspect: str, order: list[int]) -> list[dict]:
    texts = "\n\n".join(f"Text {pos + 1}:\n{row['completions'][idx]['text']}" for pos, idx in enumerate(order))
    na = ' or "N/A"' if aspect in NA_ALLOWED else ""
    type_hint = '"type": <1-3 or null>, ' if aspect in TYPED else ""
    content = JUDGE_TEMPLATE.format(rubric=RUBRICS[aspect], instruction=row["prompt"], texts=texts, k=len(order),
                                    na=na, type_hint=type_hint)
    return [{"role": "user", "content": content}]


def _rating(value: Any, aspect: str) -> tuple[int | None, str] | None:
    """(rating, status) or None if invalid. Only whole numbers 1-5 count: a 10 is an error, never clamped."""
    if value is None or (isinstance(value, str) and value.strip().upper() in ("N/A", "NA", "NONE", "NULL")):
        return (None, "na") if aspect in NA_ALLOWED else None
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 1 <= value <= 5:
        return value, "ok"
    return None


def _type(value: Any) -> int | None:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 3 else None


def parse_ratings(reply: str, k: int, aspect: str) -> tuple[dict[int, dict], str | None]:
    """Ratings by shown position (0-based) and an error saying what is missing, wrong or contradictory (None when
    complete).

    A usable reply holds ONE rating block (one JSON object or array, or the "Text N / Rating" layout) that rates each
    text ONCE. Anything else is refused as a whole, so the caller re-asks and, if it never resolves, records failures:
    picking one of two ratings would be a guess. Repeats are refused even when they agree: ratings reach completions
    only through the shown position, and a judge that rates a text twice or answers twice has lost track of which
    text is which, so agreeing numbers under confused labels can still score the wrong completion. A re-ask costs
    one request; a wrong preference pair silently trains the wrong way.
    """
    blocks, rest = _json_entries(reply)
    text_layout = _text_entries(rest)  # JSON blocks blanked out: their rationales may quote "Text N ... Rating: M"
    labelled = [("JSON", entries) for entries in blocks if entries]
    if text_layout:
        labelled.append(("text layout", text_layout))
    conflict = _conflicts(labelled)
    if conflict:
        return {}, conflict
    entries = [entry for _, block in labelled for entry in block]
    found: dict[int, dict] = {}
    problems = []
    for entry in entries:
        pos = _position(entry.get("text"))
        if pos is None or not 1 <= pos <= k:
            problems.append(f"an entry names text {entry.get('text')!r}")
            continue
        parsed = _rating(entry.get("rating"), aspect)
        if parsed is None:
            problems.append(f"text {pos} has rating {entry.get('rating')!r}")
            continue
        rating, status = parsed
        found[pos - 1] = {"rating": rating, "status": status, "rationale": str(entry.get("rationale", "")).strip(),
                          **({"type": _type(entry.get("type"))} if aspect in TYPED else {})}
    missing = [p + 1 for p in range(k) if p not in found]
    if not missing:
        return found, None
    detail = "; ".join(problems[:3])
    return found, f"no valid rating for text(s) {missing}" + (f" ({detail})" if detail else "")


def _position(value: Any) -> int | None:
    """The 1-based text number an entry names, or None."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _conflicts(blocks: list[tuple[str, list[dict]]]) -> str | None:
    """What makes a reply ambiguous: several rating blocks, or a text rated more than once (equal or not)."""
    ratings: dict[int, list] = {}
    for _, entries in blocks:
        for entry in entries:
            pos = _position(entry.get("text"))
            if pos is not None:
                ratings.setdefault(pos, []).append(entry.get("rating"))
    parts = []
    if len(blocks) > 1:
        parts.append(f"{len(blocks)} rating blocks ({_listing([kind for kind, _ in blocks])}) in one reply")
    repeated = [(pos, values) for pos, values in sorted(ratings.items()) if len(values) > 1]
    for pos, values in repeated[:3]:
        times = "twice" if len(values) == 2 else f"{len(values)} times"
        parts.append(f"text {pos} rated {times} ({_listing([json.dumps(v) for v in values])})")
    if len(repeated) > 3:
        parts.append(f"{len(repeated) - 3} more texts rated more than once")
    return "; ".join(parts) or None


def _listing(items: list) -> str:
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


_JSON_START = re.compile(r"[\[{]")
_DECODER = json.JSONDecoder()


def _json_entries(reply: str) -> tuple[list[list[dict]], str]:
    """Every top-level JSON rating block in the reply (its entries), and the reply with those blocks blanked out.

    A rating block is an object with a "ratings" list or a bare list of entry objects. Each JSON value found is
    skipped whole, so the entries inside a block are not read again as values of their own.
    """
    blocks, spans = [], []
    pos = 0
    while (start := _JSON_START.search(reply, pos)) is not None:
        try:
            value, end = _DECODER.raw_decode(reply, start.start())
        except ValueError:
            pos = start.start() + 1
            continue
        if isinstance(value, dict) and isinstance(value.get("ratings"), list):
            blocks.append([e for e in value["ratings"] if isinstance(e, dict)])
            spans.append((start.start(), end))
        elif isinstance(value, list) and value and all(isinstance(e, dict) and "text" in e for e in value):
            blocks.append(value)
            spans.append((start.start(), end))
        pos = end
    rest, last = [], 0
    for begin, end in spans:
        rest.append(reply[last:begin])
        last = end
    rest.append(reply[last:])
    return blocks, "\n".join(rest)


_TEXT_BLOCK = re.compile(r"Text\s*(\d+)\s*:?(.*?)(?=(?:#+\s*)?(?:Output for\s*)?Text\s*\d+\s*:?|\Z)", re.S | re.I)
# A rationale runs to the next labelled line; "a rating: 5" inside it is prose, not a second rating.
_RATIONALE = re.compile(r"Rationale\s*:(.*?)(?=^[\s#*>-]*(?:Type|Rating|Rationale)\s*:|\Z)", re.S | re.I | re.M)
_RATING = re.compile(r"Rating\s*:\s*(N/?A|\d+(?:\.\d+)?)", re.I)


def _text_entries(reply: str) -> list[dict]:
    """The UltraFeedback-style text layout: 'Text N' headers followed by Type/Rating/Rationale lines.

    Every rating line outside the rationale becomes an entry, so a text given two ratings, under one header or
    two, shows up as a conflict instead of the first one winning.
    """
    entries = []
    for number, body in _TEXT_BLOCK.findall(reply):
        rationale = _RATIONALE.search(body)
        labels = _RATIONALE.sub("\n", body)
        kind = re.search(r"Type\s*:\s*(\d+|None|null)", labels, re.I)
        for raw in _RATING.findall(labels):
            value: Any = raw if raw.upper().replace("/", "") == "NA" else (float(raw) if "." in raw else int(raw))
            entries.append({"text": int(number), "rating": value, "type": kind.group(1) if kind else None,
                            "rationale": rationale.group(1).strip() if rationale else ""})
    return entries


def _judge_text_mode(gen: GenerationSession, rows: list[dict], args: JudgeArguments) -> dict:
    params = {"temperature": args.temperature, "max_tokens": args.max_tokens}
    if args.json_mode:
        params["response_format"] = {"type": "json_object"}
    tasks = []  # (row, aspect, order, messages)
    for row in rows:
        for aspect in args.aspects:
            order = shuffled_order(args.seed, row["prompt_id"], aspect, len(row["completions"]))
            tasks.append({"row": row, "aspect": aspect, "order": order, "messages": judge_messages(row, aspect, order),
                          "raw": [], "found": {}, "error": None})
    pending = tasks
    for attempt in range(args.max_reasks + 1):
        if not pending:
            break
        desc = "judging" if attempt == 0 else f"re-ask {attempt}"
        results = gen.ask("judge", [ChatRequest(t["messages"], params) for t in pending], desc)
        still = []
        for task, result in zip(pending, results):
            if not result.usable:
                task["error"] = f"request failed: {result.error or result.status}"
                continue  # a transport failure after all retries is not re-asked; it stays a failure
            task["raw"].append(result.text)
            found, error = parse_ratings(result.text, len(task["order"]), task["aspect"])
            task["found"], task["error"] = found, error
            if error:
                na = ' or "N/A"' if task["aspect"] in NA_ALLOWED else ""
                task["messages"] = task["messages"] + [
                    {"role": "assistant", "content": result.text},
                    {"role": "user", "content": REASK_TEMPLATE.format(error=error, k=len(task["order"]), na=na)}]
                still.append(task)
        pending = still
    failures = 0
    for task in tasks:
        row, aspect = task["row"], task["aspect"]
        row.setdefault("judge_raw", {})[aspect] = task["raw"]
        for pos, idx in enumerate(task["order"]):  # shown position -> completion index
            rating = task["found"].get(pos) if task["found"] else None
            if rating is None:
                failures += 1
                rating = {"rating": None, "status": "failed", "rationale": "",
                          "error": task["error"] or "unparsed", **({"type": None} if aspect in TYPED else {})}
            row["completions"][idx].setdefault("ratings", {})[aspect] = rating
    return {"judge_calls": len(tasks), "failed_ratings": failures}


_OVERALL = re.compile(r"overall\s*score\s*[:=]\s*(\d+(?:\.\d+)?)\s*(?:/\s*10)?", re.I)


def parse_overall(reply: str) -> tuple[int | None, str | None]:
    """The critique's 'Overall score: N'; only whole numbers 1-10 count (a 1 is never read as 10).

    Two different scores in one reply are refused rather than resolved by position: the reviewer changed its mind
    or scored something else, and either reading may be the wrong one. The same score repeated is accepted, unlike a
    text rated twice by parse_ratings: a critique judges one answer, so there are no labels to confuse, and restating
    the score ("Overall score: 7/10" in the body, then the closing line) is ordinary.
    """
    found = _OVERALL.findall(reply)
    if not found:
        return None, "no 'Overall score: N' line"
    distinct = list(dict.fromkeys(found))
    if len(distinct) > 1:
        return None, f"{len(distinct)} different overall scores ({_listing(distinct)}) in one reply"
    value = distinct[0]
    if "." in value or not 1 <= int(value) <= 10:
        return None, f"score {value} is not a whole number from 1 to 10"
    return int(value), None


def _critique_pass(gen: GenerationSession, rows: list[dict], args: JudgeArguments) -> dict:
    params = {"temperature": args.temperature, "max_tokens": args.max_tokens}
    tasks = [{"completion": c, "raw": [], "messages": [{"role": "user", "content": CRITIQUE_TEMPLATE.format(
        instruction=row["prompt"], text=c["text"])}]} for row in rows for c in row["completions"]]
    pending = tasks
    for attempt in range(args.max_reasks + 1):
        if not pending:
            break
        results = gen.ask("judge", [ChatRequest(t["messages"], params) for t in pending],
                          "critique" if attempt == 0 else f"critique re-ask {attempt}")
        still = []
        for task, result in zip(pending, results):
            if not result.usable:
                continue
            task["raw"].append(result.text)
            score, error = parse_overall(result.text)
            task["completion"]["overall_score"] = score
            if error:
                task["messages"] = task["messages"] + [{"role": "assistant", "content": result.text},
                                                       {"role": "user", "content": CRITIQUE_REASK.format(error=error)}]
                still.append(task)
        pending = still
    for task in tasks:
        task["completion"]["critique_raw"] = task["raw"]
        task["completion"].setdefault("overall_score", None)
    return {"critique_calls": len(tasks), "failed_critiques": sum(t["completion"]["overall_score"] is None for t in tasks)}


# -- logprob modes ----------------------------------------------------------------------------------------------------

def logprob_messages(row: dict, completion: dict, aspect: str) -> list[dict]:
    return [{"role": "user", "content": LOGPROB_TEMPLATE.format(rubric=RUBRICS[aspect], instruction=row["prompt"],
                                                                text=completion["text"])}]


def expected_rating(probabilities: dict[int, float]) -> float | None:
    total = sum(probabilities.values())
    if total <= 0:
        return None
    return sum(d * p for d, p in probabilities.items()) / total


def digit_probabilities(top_logprobs: list[dict]) -> dict[int, float]:
    probs: dict[int, float] = {}
    for entry in top_logprobs or []:
        token = str(entry.get("token", "")).strip()
        if token in ("1", "2", "3", "4", "5"):
            probs[int(token)] = probs.get(int(token), 0.0) + math.exp(entry["logprob"])
    return probs


def _store_expected(row: dict, idx: int, aspect: str, probs: dict[int, float]) -> bool:
    value = expected_rating(probs)
    entry = {"rating": round(value, 4) if value is not None else None, "status": "ok" if value is not None else "failed",
             "mode": "expected",  # an expected value over 1-5, so fractional by design
             "rationale": "", "probabilities": {str(d): round(p, 6) for d, p in sorted(probs.items())}}
    if aspect in TYPED:
        entry["type"] = None
    row["completions"][idx].setdefault("ratings", {})[aspect] = entry
    return value is not None


def _judge_logprobs_endpoint(gen: GenerationSession, rows: list[dict], args: JudgeArguments) -> dict:
    params = {"temperature": 0.0, "max_tokens": 1, "logprobs": True, "top_logprobs": 20}
    slots = [(row, idx, aspect) for row in rows for idx in range(len(row["completions"])) for aspect in args.aspects]
    results = gen.ask("judge", [ChatRequest(logprob_messages(r, r["completions"][i], a), params) for r, i, a in slots], "judging")
    failures = 0
    for (row, idx, aspect), result in zip(slots, results):
        probs = digit_probabilities(result.top_logprobs) if result.usable else {}
        failures += not _store_expected(row, idx, aspect, probs)
    return {"judge_calls": len(slots), "failed_ratings": failures}


class LocalLogprobJudge:
    """A local causal LM scored in-process: the next-token distribution over the digits 1-5."""

    def __init__(self, model_dir: str):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from distill_core.chat_template import prepare_tokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        prepare_tokenizer(self.tokenizer)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.digit_ids: dict[int, list[int]] = {}
        for d in range(1, 6):
            ids = set()
            for form in (str(d), f" {d}"):
                toks = self.tokenizer.encode(form, add_special_tokens=False)
                if len(toks) == 1:
                    ids.add(toks[0])
            self.digit_ids[d] = sorted(ids)

    def probabilities(self, messages: list[dict]) -> dict[int, float]:
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with self.torch.no_grad():
            logits = self.model(**ids).logits[0, -1]
        probs = self.torch.softmax(logits.float(), dim=-1)
        return {d: float(sum(probs[i] for i in token_ids)) for d, token_ids in self.digit_ids.items() if token_ids}


def _judge_logprobs_local(rows: list[dict], args: JudgeArguments) -> dict:
    from tqdm import tqdm

    judge = LocalLogprobJudge(args.judge_model_dir)
    slots = [(row, idx, aspect) for row in rows for idx in range(len(row["completions"])) for aspect in args.aspects]
    failures = 0
    for row, idx, aspect in tqdm(slots, desc="judging (local logprobs)", unit="rating", disable=not args.show_progress):
        probs = judge.probabilities(logprob_messages(row, row["completions"][idx], aspect))
        failures += not _store_expected(row, idx, aspect, probs)
    return {"judge_calls": len(slots), "failed_ratings": failures}


# -- the stage --------------------------------------------------------------------------------------------------------

def run_judge(recipe: Recipe) -> str:
    import time

    args: JudgeArguments = recipe.build("data")
    # checked before the first request: a repeated aspect would pay for every rating twice, and a repeated pool row
    # would be judged in full before binarization refuses it
    refuse_duplicates(args.aspects, recipe.path, "aspects")
    rows = load_pool(args.pool)[: args.num_prompts]
    refuse_duplicate_rows(args.pool, lambda r: r["prompt_id"] if "prompt_id" in r else prompt_id(r["prompt"]), "prompt_id",
                          "remove or merge one of the two rows, then rerun", limit=args.num_prompts)
    started = time.monotonic()
    judge = recipe.parsed.get("judge")
    if args.dry_run:
        k = sum(len(r["completions"]) for r in rows)
        n = len(rows) * len(args.aspects) if args.mode == "text" else k * len(args.aspects)
        tokens = sum(len(r["prompt"]) + sum(len(c["text"]) for c in r["completions"]) for r in rows) // 4
        print_estimate([{"role": "judge", **estimate_cost(judge, n, tokens * len(args.aspects) + n * 300,
                                                          n * (args.max_tokens if args.mode == "text" else 1))}])
        return "dry run: nothing sent"
    with stage_lock(args.output_dir):  # the whole run, outputs included: a second run on this directory stops at once
        return _run_judge(recipe, args, rows, judge, started)


def _refuse_all_ratings_failed(rows: list[dict], args: JudgeArguments, counts: dict, failures: dict | None) -> None:
    """A judge whose every rating failed (replies that never parse, or no digit probabilities) judged nothing: that
    is a failed stage, not a dataset of unscored rows. Ties are different: every rating given, no pair to draw."""
    rated = sum(len(r["completions"]) for r in rows) * len(args.aspects)
    if not rated or counts.get("failed_ratings", 0) < rated:
        return
    errors = Counter(entry.get("error") or "no rating" for r in rows for c in r["completions"]
                     for entry in (c.get("ratings") or {}).values())
    error, times = errors.most_common(1)[0]
    journal = (failures or {}).get("journal")
    kept = f"nothing was written and the journal {journal} is kept" if journal else "nothing was written"
    raise StageFailed(f"judge: all {rated} ratings failed (most common error: {error!r}, {times} times); {kept}; check "
                      f"the judge's raw replies in the journal, fix the judge (or json_mode, max_tokens, max_reasks) and "
                      f"rerun the same command")


def _run_judge(recipe: Recipe, args: JudgeArguments, rows: list[dict], judge, started: float) -> str:
    import time

    from distill_core.jsonl import write_jsonl_atomic
    from distill_core.records import write_atomic, write_manifest

    from .binarize import binarize
    from .preference_stats import card_lines, plot_preference_statistics, preference_statistics

    stopped = False
    failures = None
    if args.mode == "logprobs_local":
        counts = _judge_logprobs_local(rows, args)
        stats = {"requests": {}, "cost_usd": 0.0, "max_cost_usd": None, "stopped_by_budget": False}
    else:
        with GenerationSession(args.output_dir, {"judge": judge}, max_cost_usd=args.max_cost_usd, seed=args.seed,
                               show_progress=args.show_progress) as gen:
            try:
                counts = (_judge_text_mode if args.mode == "text" else _judge_logprobs_endpoint)(gen, rows, args)
                if args.critique:
                    counts.update(_critique_pass(gen, rows, args))
            except BudgetExceeded:
                logger.warning("max_cost_usd reached: nothing is lost (the journal keeps every reply); rerun with a "
                               "higher budget to finish judging")
                stopped = True
                counts = {}
            stats = gen.stats()
            failures = request_failures(gen)
    stats["wall_time_s"] = round(time.monotonic() - started, 2)
    if stopped:  # a partial judgement would bias the pairs: write nothing but the record
        write_manifest(args.output_dir, "judge", recipe={"path": recipe.path, "sha256": recipe.sha256, "values": recipe.values},
                       counts=counts, **stats)
        return args.output_dir

    pairs, dropped = binarize(rows, score=args.score, strategy=args.strategy, min_margin=args.min_margin, seed=args.seed)
    _refuse_all_ratings_failed(rows, args, counts, failures)
    check_outcome(args.output_dir, "judge", recipe, args, {"judged": rows, "prefs": pairs}, stats, failures)
    pstats = preference_statistics(rows, pairs, judge_cost_usd=stats["cost_usd"])
    for name, data in (("judged", rows), ("prefs", pairs)):
        os.makedirs(os.path.join(args.output_dir, name), exist_ok=True)
        write_jsonl_atomic(os.path.join(args.output_dir, name, "train.jsonl"), data)
    figure = plot_preference_statistics(pstats, os.path.join(args.output_dir, "preference_stats.png"))
    write_manifest(args.output_dir, "judge", recipe={"path": recipe.path, "sha256": recipe.sha256, "values": recipe.values,
                                                     "overrides": recipe.overrides},
                   output_fingerprint=output_fingerprint(recipe),
                   judge=judge.public() if judge else {"local_model": args.judge_model_dir, "mode": args.mode},
                   prompt_templates_sha256=templates_hash(*TEMPLATES), counts={**counts, "pairs": len(pairs), "binarize": dropped},
                   statistics=pstats, **({"failures": failures} if failures else {}), **stats)
    lines = ["---", "tags: [synthetic, preferences, dpo]", "---", "",
             f"# Preference data: {os.path.basename(os.path.abspath(args.output_dir))}", "",
             f"Judged by `{judge.name if judge else args.judge_model_dir}` in {args.mode} mode over aspects "
             f"{', '.join(args.aspects)}; binarized with score `{args.score}`, strategy `{args.strategy}`, "
             f"min margin {args.min_margin}, seed {args.seed}. Recipe `{recipe.path}`.", "",
             f"- `prefs/train.jsonl`: {len(pairs)} (prompt, chosen, rejected) pairs in TRL's conversational format",
             "- `judged/train.jsonl`: every rating with its rationale and the judge's raw replies", "",
             f"![preference statistics]({os.path.basename(figure)})", "", *card_lines(pstats)]
    write_atomic(os.path.join(args.output_dir, "README.md"), "\n".join(lines) + "\n")
    logger.info("judge: %d prompts judged, %d pairs, %d failed ratings, $%.4f", len(rows), len(pairs),
                counts.get("failed_ratings", 0), stats["cost_usd"])
    return args.output_dir
