"""UltraChat-style dialogues: a user-simulator role and an assistant role alternate for 3 to 7 turns.

Each dialogue opens from a seed prompt (a prompt dataset, e.g. Self-Instruct's output) or from a topic the
user simulator turns into a first question. The assistant role answers; the user simulator, shown the
conversation from the user's side, writes the next message. Both roles are endpoints of their own (they
may be the same). The output is an SFT ``messages`` dataset that ``scripts/run_sft.py`` trains on as is.
"""

from __future__ import annotations

import json
import logging
import os
import random
from dataclasses import dataclass, field
from typing import Any, Optional

from distill_core.errors import DataError, RecipeError
from distill_core.recipe import Recipe

from .client import BudgetExceeded, ChatRequest
from .endpoints import load_teacher
from .session import GenerationSession
from .stage import (
    GenerationArguments,
    check_generation,
    dedupe_prompts,
    derived_seed,
    estimate_cost,
    load_prompts,
    print_estimate,
    request_failures,
    stage_lock,
    templates_hash,
    write_stage_outputs,
)

logger = logging.getLogger(__name__)

USER_SIMULATOR_SYSTEM = (
    "You are role-playing a curious, thoughtful person chatting with an AI assistant. Read the conversation so "
    "far and write the person's next message: a follow-up question, a request to go deeper, a related new angle, "
    "or a challenge to something the assistant said. Write only the message itself, in the first person, without "
    "any preamble, and never answer as the assistant."
)
OPENER_FROM_TOPIC = (
    "Write the first message a person might send to an AI assistant about this topic: {topic}\n"
    "Make it a specific, natural question or request. Write only the message."
)
TEMPLATES = (USER_SIMULATOR_SYSTEM, OPENER_FROM_TOPIC)


@dataclass
class DialogueArguments(GenerationArguments):
    user_simulator: Any = field(default=None, metadata={"help": "Teacher playing the user; defaults to the teacher."})
    prompts: Optional[str] = field(
        default=None,
        metadata={
            "help": (
                "Opening prompts: a JSONL file or a directory with train.jsonl, rows with 'prompt' (string) or "
                "'messages'."
            )
        },
    )
    topics: Optional[list] = field(
        default=None,
        metadata={"help": "Topics the user simulator turns into opening questions (used when 'prompts' is not set)."},
    )
    num_dialogues: int = field(
        default=100, metadata={"help": "How many dialogues to write (at most one per opener).", "min": 1}
    )
    min_turns: int = field(default=3, metadata={"help": "Fewest user/assistant exchanges per dialogue.", "min": 1})
    max_turns: int = field(default=7, metadata={"help": "Most user/assistant exchanges per dialogue.", "min": 1})
    system_prompt: Optional[str] = field(
        default=None, metadata={"help": "System message given to the assistant role (and kept in the data)."}
    )
    temperature: float = field(default=0.7, metadata={"help": "Assistant temperature.", "min": 0})
    top_p: float = field(default=0.9, metadata={"help": "Assistant top_p.", "exclusive_min": 0, "max": 1})
    max_tokens: int = field(default=512, metadata={"help": "Assistant max_tokens per reply.", "min": 1})
    user_temperature: float = field(default=0.9, metadata={"help": "User-simulator temperature.", "min": 0})
    user_max_tokens: int = field(default=128, metadata={"help": "User-simulator max_tokens per message.", "min": 1})

    def check(self, where: str) -> None:
        """Rules a key's type and bounds cannot state (the recipe loader checks those before this)."""
        if not self.prompts and not self.topics:
            raise RecipeError(f"{where}: give 'prompts' (a prompt dataset) or 'topics' (a list) to open the dialogues")
        if self.min_turns > self.max_turns:
            raise RecipeError(
                f"{where}: min_turns ({self.min_turns}) must be <= max_turns ({self.max_turns}); raise "
                f"max_turns or lower min_turns"
            )
        if self.prompts and not os.path.exists(self.prompts):
            raise DataError(
                f"{where}: prompts '{self.prompts}' does not exist; run self-instruct first or fix the path"
            )


def check_dialogues(recipe: Recipe) -> None:
    where = recipe.path
    args: DialogueArguments = check_generation(recipe)
    teacher = recipe.parsed["teacher"] = load_teacher(args.teacher, f"{where}: teacher")
    recipe.parsed["user_simulator"] = (
        load_teacher(args.user_simulator, f"{where}: user_simulator") if args.user_simulator else teacher
    )


def _as_user_view(messages: list[dict]) -> list[dict]:
    """The conversation as the user simulator sees it: its own past messages are 'assistant', the AI's are 'user'."""
    flipped = [{"role": "system", "content": USER_SIMULATOR_SYSTEM}]
    for m in messages:
        if m["role"] == "system":
            continue
        flipped.append({"role": "assistant" if m["role"] == "user" else "user", "content": m["content"]})
    return flipped


def run_dialogues(recipe: Recipe) -> str:
    args: DialogueArguments = recipe.build("data")
    teacher, user_sim = recipe.parsed["teacher"], recipe.parsed["user_simulator"]
    rng = random.Random(derived_seed(args.seed, "dialogues"))
    assistant_params = {"temperature": args.temperature, "top_p": args.top_p, "max_tokens": args.max_tokens}
    user_params = {"temperature": args.user_temperature, "max_tokens": args.user_max_tokens}
    sampling = {
        "assistant": assistant_params,
        "user_simulator": user_params,
        "turns": [args.min_turns, args.max_turns],
    }
    roles = {"assistant": teacher, "user_simulator": user_sim}

    openers = dedupe_prompts(load_prompts(args.prompts), args.prompts) if args.prompts else None
    n = min(args.num_dialogues, len(openers)) if openers is not None else args.num_dialogues
    turns = [rng.randint(args.min_turns, args.max_turns) for _ in range(n)]
    if args.dry_run:
        avg = sum(turns) / max(1, n)
        rows = [
            {
                "role": "assistant",
                **estimate_cost(
                    teacher, sum(turns), int(sum(turns) * avg * args.max_tokens / 2), sum(turns) * args.max_tokens
                ),
            },
            {
                "role": "user_simulator",
                **estimate_cost(
                    user_sim,
                    sum(turns) - n + (0 if openers else n),
                    int(sum(turns) * avg * args.max_tokens / 2),
                    sum(turns) * args.user_max_tokens,
                ),
            },
        ]
        print_estimate(rows)
        return "dry run: nothing sent"
    with stage_lock(args.output_dir):  # the whole run, outputs included: a second run on this directory stops at once
        return _run_dialogues(recipe, args, roles, openers, n, turns, sampling, assistant_params, user_params)


def _run_dialogues(
    recipe: Recipe,
    args: DialogueArguments,
    roles: dict,
    openers: list[str] | None,
    n: int,
    turns: list[int],
    sampling: dict,
    assistant_params: dict,
    user_params: dict,
) -> str:
    dialogues: list[list[dict]] = []
    truncated_dropped = 0
    with GenerationSession.for_stage(args, roles) as gen:
        try:
            if openers is None:
                topics = [args.topics[i % len(args.topics)] for i in range(n)]
                results = gen.ask(
                    "user_simulator",
                    [
                        ChatRequest(
                            [{"role": "user", "content": OPENER_FROM_TOPIC.format(topic=t)}],
                            {**user_params, "seed": derived_seed(args.seed, "open", i)},
                            sample=i,
                        )
                        for i, t in enumerate(topics)
                    ],
                    "openers",
                )
                openers = [r.text.strip() if r.kept(args.keep_truncated) else "" for r in results]
            system = [{"role": "system", "content": args.system_prompt}] if args.system_prompt else []
            dialogues = [system + [{"role": "user", "content": o}] for o in openers[:n]]
            alive = [bool(o) for o in openers[:n]]
            for turn in range(args.max_turns):
                active = [i for i in range(n) if alive[i] and turn < turns[i]]
                if not active:
                    break
                replies = gen.ask(
                    "assistant",
                    [
                        ChatRequest(dialogues[i], {**assistant_params, "seed": derived_seed(args.seed, i, turn)})
                        for i in active
                    ],
                    f"assistant turn {turn + 1}",
                )
                for i, r in zip(active, replies):
                    if r.kept(args.keep_truncated):
                        dialogues[i].append({"role": "assistant", "content": r.text})
                    else:
                        truncated_dropped += r.status == "truncated"
                        alive[i] = False  # end here; the dialogue keeps its complete turns
                following = [i for i in active if alive[i] and turn + 1 < turns[i]]
                asks = gen.ask(
                    "user_simulator",
                    [
                        ChatRequest(
                            _as_user_view(dialogues[i]), {**user_params, "seed": derived_seed(args.seed, i, turn, "u")}
                        )
                        for i in following
                    ],
                    f"user turn {turn + 2}",
                )
                for i, r in zip(following, asks):
                    if r.kept(args.keep_truncated) and r.text.strip():
                        dialogues[i].append({"role": "user", "content": r.text.strip()})
                    else:
                        alive[i] = False
        except BudgetExceeded:
            logger.warning("max_cost_usd reached: writing the dialogues done so far")
        stats = gen.stats()
        failures = request_failures(gen)

    rows = []
    for d in dialogues:
        while d and d[-1]["role"] != "assistant":  # every dialogue ends on an assistant turn
            d = d[:-1]
        if any(m["role"] == "assistant" for m in d):
            rows.append({"messages": d, "source": "dialogues", "turns": sum(m["role"] == "assistant" for m in d)})
    hist: dict[int, int] = {}
    for row in rows:
        hist[row["turns"]] = hist.get(row["turns"], 0) + 1
    counts = {"openers": n, "dialogues": len(rows), "turn_histogram": hist, "truncated_dropped": truncated_dropped}
    write_stage_outputs(
        args.output_dir,
        "dialogues",
        recipe,
        {"sft": rows},
        roles=roles,
        sampling=sampling,
        templates=templates_hash(*TEMPLATES),
        stats=stats,
        counts=counts,
        card_lines=[f"- turns per dialogue: {json.dumps(dict(sorted(hist.items())))}"],
        failures=failures,
        detail=f"{truncated_dropped} replies cut by max_tokens were dropped; set keep_truncated: true "
        f"or raise max_tokens"
        if truncated_dropped
        else "",
    )
    logger.info("dialogues: %d written, $%.4f", len(rows), stats["cost_usd"])
    return args.output_dir
