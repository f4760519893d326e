"""Our own wording of the Self-Instruct prompts, and the generation prompt built from sampled example tasks."""

from __future__ import annotations

import random

from .arguments import SelfInstructArguments

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


def generation_prompt(rng: random.Random, seeds: list[dict], machine: list[str], args: SelfInstructArguments) -> str:
    """8 example tasks by default: human seeds, and machine ones from the pool once it has some, in shuffled order."""
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
