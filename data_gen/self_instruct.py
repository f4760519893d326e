"""Self-Instruct (Wang et al. 2022): a teacher grows a pool of new instructions from human seed tasks.

Faithful to the original procedure: each generation prompt shows 8 tasks (6 human seeds, 2 from the
machine pool); new instructions are kept only if they pass the length, keyword and punctuation filters and
their ROUGE-L F1 with every instruction already in the pool is at most 0.7; then the teacher writes
instances for each (label first for classification tasks). Outputs a prompt dataset and an SFT dataset.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
from dataclasses import dataclass, field

from distill_core.errors import DataError, RecipeError
from distill_core.jsonl import read_jsonl
from distill_core.recipe import Recipe

from .client import BudgetExceeded, ChatRequest, estimate_tokens
from .endpoints import load_teacher
from .rouge import RougeLFilter
from .session import GenerationSession
from .stage import (
    GenerationArguments,
    check_generation,
    derived_seed,
    estimate_cost,
    print_estimate,
    request_failures,
    stage_lock,
    templates_hash,
    write_stage_outputs,
)

logger = logging.getLogger(__name__)

# Our own wording of the three Self-Instruct prompts.
GENERATE_TEMPLATE = (
    "You are helping build a diverse collection of tasks that people might ask an AI assistant to do.\n"
    "Here are {n} example tasks:\n\n{examples}\n\n"
    "Write {k} new tasks, numbered {start} to {end}, in the same style. Make them varied: different verbs, topics "
    "and formats (open questions, rewriting, classification, brainstorming, short code, math). Each task is one or "
    "two sentences an assistant can do with text alone. Write only the numbered list."
)
CLASSIFY_TEMPLATE = (
    "Is the following task a classification task, that is, one whose answer is one of a small, fixed set of labels "
    "(for example yes/no, positive/negative, a category)?\n\nTask: {instruction}\n\nAnswer with Yes or No only."
)
INPUT_FIRST_TEMPLATE = (
    "Write an example for the task below. If the task needs an input (a text, a list, a question to work on), "
    "write it after 'Input:' and then the correct answer after 'Output:'. If it needs no input, write only "
    "'Output:' and the answer.\n\nTask: {instruction}"
)
OUTPUT_FIRST_TEMPLATE = (
    "The task below is a classification task. First choose one possible class label and write it after "
    "'Class label:'; then write an input that belongs to that class after 'Input:'.\n\nTask: {instruction}"
)
TEMPLATES = (GENERATE_TEMPLATE, CLASSIFY_TEMPLATE, INPUT_FIRST_TEMPLATE, OUTPUT_FIRST_TEMPLATE)

# Tasks a text-only model cannot do (the original filter's words, with plurals).
BLACKLIST = (
    "image",
    "images",
    "graph",
    "graphs",
    "picture",
    "pictures",
    "file",
    "files",
    "map",
    "maps",
    "draw",
    "plot",
    "go to",
)
_NUMBERED = re.compile(r"^\s*(\d+)\s*[.):]\s*(.+?)\s*$")


@dataclass
class SelfInstructArguments(GenerationArguments):
    seed_tasks: str = field(
        default="",
        metadata={
            "help": "JSONL of human seed tasks: {instruction, instances: [{input, output}], is_classification}."
        },
    )
    num_instructions: int = field(
        default=100, metadata={"help": "How many new machine instructions to collect.", "min": 1}
    )
    human_examples: int = field(default=6, metadata={"help": "Seed tasks shown in each generation prompt.", "min": 1})
    machine_examples: int = field(
        default=2,
        metadata={
            "help": "Machine tasks shown in each generation prompt (seeds fill in while the pool is small).",
            "min": 0,
        },
    )
    instructions_per_request: int = field(
        default=8, metadata={"help": "New tasks asked for in each generation prompt.", "min": 1}
    )
    requests_per_round: int = field(
        default=8, metadata={"help": "Generation prompts sent concurrently per round.", "min": 1}
    )
    max_rounds: int = field(
        default=100,
        metadata={"help": "Stop after this many rounds even if fewer instructions were accepted.", "min": 1},
    )
    temperature: float = field(default=0.7, metadata={"help": "Generation temperature (0.7 in the paper).", "min": 0})
    top_p: float = field(
        default=0.5, metadata={"help": "Generation top_p (0.5 in the paper).", "exclusive_min": 0, "max": 1}
    )
    max_tokens: int = field(default=1024, metadata={"help": "max_tokens of a generation request.", "min": 1})
    rouge_threshold: float = field(
        default=0.7,
        metadata={
            "help": "Reject an instruction whose ROUGE-L F1 with any pool instruction is above this.",
            "min": 0,
            "max": 1,
        },
    )
    min_words: int = field(
        default=3, metadata={"help": "Reject instructions of fewer words (the paper: more than 3 words).", "min": 1}
    )
    max_words: int = field(default=150, metadata={"help": "Reject instructions of more words.", "min": 1})
    generate_instances: bool = field(
        default=True, metadata={"help": "Ask the teacher for an input/output instance of each new instruction."}
    )
    instance_max_tokens: int = field(default=512, metadata={"help": "max_tokens of an instance request.", "min": 1})
    instance_temperature: float = field(
        default=0.0, metadata={"help": "Temperature of classification checks and instances.", "min": 0}
    )

    def check(self, where: str) -> None:
        """Rules a key's type and bounds cannot state (the recipe loader checks those before this)."""
        if not self.seed_tasks:
            raise RecipeError(f"{where}: required key 'seed_tasks' is missing; point it at a JSONL of seed tasks")
        if not os.path.isfile(self.seed_tasks):
            raise DataError(
                f"{where}: seed_tasks file '{self.seed_tasks}' does not exist; the 175 Self-Instruct seeds "
                f"are data/seed_tasks.jsonl of the self-instruct repository"
            )
        if self.min_words > self.max_words:
            raise RecipeError(
                f"{where}: min_words ({self.min_words}) must be <= max_words ({self.max_words}); raise "
                f"max_words or lower min_words"
            )


def check_self_instruct(recipe: Recipe) -> None:
    where = recipe.path
    args: SelfInstructArguments = check_generation(recipe)
    recipe.parsed["teacher"] = load_teacher(args.teacher, f"{where}: teacher")


def load_seed_tasks(path: str) -> list[dict]:
    tasks = []
    for n, row in read_jsonl(path):
        if not isinstance(row.get("instruction"), str) or not row["instruction"].strip():
            raise DataError(f"{path} line {n}: a seed task needs a non-empty 'instruction' string")
        tasks.append(row)
    if not tasks:
        raise DataError(f"{path}: no seed tasks found")
    return tasks


def parse_numbered(text: str) -> list[str]:
    """Items of a numbered list; a reply without numbering counts each non-empty line as one task."""
    items = [m.group(2) for line in text.splitlines() if (m := _NUMBERED.match(line))]
    if items:
        return items
    return [line.strip() for line in text.splitlines() if line.strip()]


def rejection_reason(instruction: str, args: SelfInstructArguments) -> str | None:
    words = instruction.split()
    if len(words) < args.min_words:
        return "too_short"
    if len(words) > args.max_words:
        return "too_long"
    lowered = instruction.lower()
    if any(re.search(rf"\b{re.escape(word)}\b", lowered) for word in BLACKLIST):
        return "blacklisted_word"
    first = instruction[0]
    if not first.isascii():
        return "non_ascii_start"
    if not first.isalnum():
        return "punctuation_start"
    return None


def parse_instance(text: str, classification: bool) -> dict | None:
    """{input, output} from an instance reply; label-first replies put the label in output."""

    def field_after(label: str) -> str | None:
        m = re.search(rf"{label}\s*:\s*(.*?)(?=\n\s*(?:Input|Output|Class label)\s*:|\Z)", text, re.S | re.I)
        return m.group(1).strip() if m else None

    if classification:
        label, inp = field_after("Class label"), field_after("Input")
        if label and inp is not None:
            return {"input": inp, "output": label}
    inp, out = field_after("Input"), field_after("Output")
    if out:
        return {"input": inp or "", "output": out}
    stripped = text.strip()
    return {"input": "", "output": stripped} if stripped else None


def _generation_prompt(rng: random.Random, seeds: list[dict], machine: list[str], args: SelfInstructArguments) -> str:
    n_machine = min(args.machine_examples, len(machine))
    shown = [
        t["instruction"]
        for t in rng.sample(seeds, min(len(seeds), args.human_examples + args.machine_examples - n_machine))
    ]
    shown += rng.sample(machine, n_machine)
    rng.shuffle(shown)
    examples = "\n".join(f"{i}. {text.strip()}" for i, text in enumerate(shown, 1))
    start = len(shown) + 1
    return GENERATE_TEMPLATE.format(
        n=len(shown),
        examples=examples,
        k=args.instructions_per_request,
        start=start,
        end=start + args.instructions_per_request - 1,
    )


def run_self_instruct(recipe: Recipe) -> str:
    args: SelfInstructArguments = recipe.build("data")
    teacher = recipe.parsed["teacher"]
    seeds = _unique_seeds(load_seed_tasks(args.seed_tasks), args.seed_tasks)
    sampling = {"temperature": args.temperature, "top_p": args.top_p, "max_tokens": args.max_tokens}
    if args.dry_run:
        _dry_run(args, teacher, seeds)
        return "dry run: nothing sent"
    with stage_lock(args.output_dir):  # the whole run, outputs included: a second run on this directory stops at once
        return _run_self_instruct(recipe, args, teacher, seeds, sampling)


def _run_self_instruct(recipe: Recipe, args: SelfInstructArguments, teacher, seeds: list[dict], sampling: dict) -> str:
    pool = RougeLFilter(threshold=args.rouge_threshold)
    for task in seeds:
        pool.add(task["instruction"])
    accepted: list[dict] = []
    rejected: dict[str, int] = {}
    rounds = 0
    with GenerationSession.for_stage(args, {"teacher": teacher}) as gen:
        try:
            while len(accepted) < args.num_instructions and rounds < args.max_rounds:
                requests = []
                for b in range(args.requests_per_round):
                    rng = random.Random(derived_seed(args.seed, "generate", rounds, b))
                    prompt = _generation_prompt(rng, seeds, [a["instruction"] for a in accepted], args)
                    requests.append(
                        ChatRequest(
                            [{"role": "user", "content": prompt}],
                            {**sampling, "seed": derived_seed(args.seed, rounds, b)},
                        )
                    )
                results = gen.ask(
                    "teacher", requests, f"self-instruct round {rounds + 1} ({len(accepted)}/{args.num_instructions})"
                )
                rounds += 1
                if all(r.status == "failed" for r in results):
                    # an endpoint that failed a whole round would fail the next ones too: stop, and let the
                    # failure check below report it instead of spending max_rounds rounds of retries
                    logger.warning("every request of round %d failed: stopping", rounds)
                    break
                for result in results:  # request order, not arrival order: the pool grows the same way every run
                    if not result.usable:
                        rejected["failed_reply"] = rejected.get("failed_reply", 0) + 1
                        continue
                    items = parse_numbered(result.text)
                    if result.status == "truncated" and not args.keep_truncated and items:
                        items = items[:-1]  # the last item was cut by the length limit
                        rejected["cut_by_length"] = rejected.get("cut_by_length", 0) + 1
                    for item in items:
                        if len(accepted) >= args.num_instructions:
                            break
                        reason = rejection_reason(item, args)
                        verdict = pool.check_and_add(item) if reason is None else None
                        if verdict is not None and not verdict.novel:
                            reason = "rouge_l_similar"
                        if reason:
                            rejected[reason] = rejected.get(reason, 0) + 1
                            continue
                        accepted.append(
                            {
                                "instruction": item,
                                "most_similar": verdict.match,
                                "rouge_l": round(verdict.score, 4),
                                "round": rounds,
                                "request_key": result.key,
                            }
                        )
            if len(accepted) < args.num_instructions:
                logger.warning(
                    "stopped after %d rounds with %d of %d instructions", rounds, len(accepted), args.num_instructions
                )
            if args.generate_instances and accepted:
                _add_instances(gen, accepted, args)
        except BudgetExceeded:
            logger.warning(
                "max_cost_usd %.4f reached: writing what is done; rerun with a higher budget to continue",
                args.max_cost_usd,
            )
        stats = gen.stats()
        failures = request_failures(gen)

    prompts = [{"prompt": a["instruction"], "source": "self-instruct"} for a in accepted]
    sft = [
        {
            "messages": [{"role": "user", "content": _user_turn(a)}, {"role": "assistant", "content": a["output"]}],
            "source": "self-instruct",
        }
        for a in accepted
        if a.get("output")
    ]
    counts = {
        "seed_tasks": len(seeds),
        "rounds": rounds,
        "accepted": len(accepted),
        "rejected": rejected,
        "with_instances": len(sft),
    }
    write_stage_outputs(
        args.output_dir,
        "self_instruct",
        recipe,
        {"prompts": prompts, "sft": sft, "instructions": accepted},
        roles={"teacher": teacher},
        sampling=sampling,
        templates=templates_hash(*TEMPLATES),
        stats=stats,
        counts=counts,
        card_lines=[
            f"- accepted {len(accepted)} instructions in {rounds} rounds; rejected: "
            f"{json.dumps(rejected, sort_keys=True)}"
        ],
        failures=failures,
        detail=f"every new instruction was rejected: {json.dumps(rejected, sort_keys=True)}",
    )
    logger.info("self-instruct: %d instructions, %d SFT examples, $%.4f", len(accepted), len(sft), stats["cost_usd"])
    return args.output_dir


def _unique_seeds(seeds: list[dict], path: str) -> list[dict]:
    """Each seed instruction once, first occurrence kept: a repeated seed would be shown twice as often in the
    generation prompts and skew what the teacher imitates."""
    unique: dict[str, dict] = {}
    for task in seeds:
        unique.setdefault(task["instruction"].strip(), task)
    if len(unique) < len(seeds):
        logger.warning(
            "%s: %d duplicate seed task(s) dropped; %d distinct seeds are used",
            path,
            len(seeds) - len(unique),
            len(unique),
        )
    return list(unique.values())


def _user_turn(entry: dict) -> str:
    return entry["instruction"] + (f"\n\n{entry['input']}" if entry.get("input") else "")


def _add_instances(gen: GenerationSession, accepted: list[dict], args: SelfInstructArguments) -> None:
    params = {"temperature": args.instance_temperature, "max_tokens": 8}
    checks = gen.ask(
        "teacher",
        [
            ChatRequest([{"role": "user", "content": CLASSIFY_TEMPLATE.format(instruction=a["instruction"])}], params)
            for a in accepted
        ],
        "classification check",
    )
    for entry, check in zip(accepted, checks):
        entry["is_classification"] = check.usable and check.text.strip().lower().startswith("yes")
    params = {"temperature": args.instance_temperature, "max_tokens": args.instance_max_tokens}
    requests = [
        ChatRequest(
            [
                {
                    "role": "user",
                    "content": (OUTPUT_FIRST_TEMPLATE if a["is_classification"] else INPUT_FIRST_TEMPLATE).format(
                        instruction=a["instruction"]
                    ),
                }
            ],
            params,
        )
        for a in accepted
    ]
    for entry, result in zip(accepted, gen.ask("teacher", requests, "instances")):
        if not result.kept(args.keep_truncated):
            continue
        instance = parse_instance(result.text, entry["is_classification"])
        if instance:
            entry.update(instance)


def _dry_run(args: SelfInstructArguments, teacher, seeds: list[dict]) -> None:
    rng = random.Random(args.seed)
    prompt_tokens = estimate_tokens([{"role": "user", "content": _generation_prompt(rng, seeds, [], args)}])
    # assume half of the parsed tasks survive the filters (the paper kept about 50-60% at first, less later)
    gen_requests = math.ceil(args.num_instructions / (args.instructions_per_request * 0.5))
    rows = [
        {
            "role": "generation",
            **estimate_cost(teacher, gen_requests, gen_requests * prompt_tokens, gen_requests * args.max_tokens),
        }
    ]
    if args.generate_instances:
        n = args.num_instructions
        rows.append({"role": "classification", **estimate_cost(teacher, n, n * 80, n * 8)})
        rows.append({"role": "instances", **estimate_cost(teacher, n, n * 90, n * args.instance_max_tokens)})
    print_estimate(rows)
