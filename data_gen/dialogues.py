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

from .client import ChatRequest
from .endpoints import load_teacher
from .session import GenerationSession
from .stage.arguments import GenerationArguments, check_generation
from .stage.estimates import estimate_cost
from .stage.ids import derived_seed, templates_hash
from .stage.inputs import dedupe_prompts, load_prompts
from .stage.record import StageOutputs, write_stage_outputs
from .stage.running import estimate_or_run, generate

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


@dataclass
class _Plan:
    """What a dialogues run settles before it sends anything."""

    args: DialogueArguments
    roles: dict[str, Any]  # assistant and user_simulator teachers
    openers: list[str] | None  # None: the user simulator opens from the topics
    turns: list[int]  # how many exchanges each dialogue may have, one entry per dialogue
    assistant_params: dict
    user_params: dict

    @property
    def sampling(self) -> dict:
        return {
            "assistant": self.assistant_params,
            "user_simulator": self.user_params,
            "turns": [self.args.min_turns, self.args.max_turns],
        }


@dataclass
class _Conversations:
    """The dialogues so far, which of them go on, and how many ended at a reply cut by max_tokens."""

    messages: list[list[dict]] = field(default_factory=list)
    alive: list[bool] = field(default_factory=list)
    truncated_dropped: int = 0


def run_dialogues(recipe: Recipe) -> str:
    args: DialogueArguments = recipe.build("data")
    teacher, user_sim = recipe.parsed["teacher"], recipe.parsed["user_simulator"]
    rng = random.Random(derived_seed(args.seed, "dialogues"))
    openers = dedupe_prompts(load_prompts(args.prompts), args.prompts) if args.prompts else None
    n = min(args.num_dialogues, len(openers)) if openers is not None else args.num_dialogues
    plan = _Plan(
        args,
        roles={"assistant": teacher, "user_simulator": user_sim},
        openers=openers,
        turns=[rng.randint(args.min_turns, args.max_turns) for _ in range(n)],
        assistant_params={"temperature": args.temperature, "top_p": args.top_p, "max_tokens": args.max_tokens},
        user_params={"temperature": args.user_temperature, "max_tokens": args.user_max_tokens},
    )
    return estimate_or_run(args, lambda: _estimate(plan), lambda: _run_dialogues(recipe, plan))


def _estimate(plan: _Plan) -> list[dict]:
    args, turns, n = plan.args, sum(plan.turns), len(plan.turns)
    avg = turns / max(1, n)
    prompt_tokens = int(turns * avg * args.max_tokens / 2)
    user_requests = turns - n + (0 if plan.openers else n)
    return [
        {
            "role": "assistant",
            **estimate_cost(plan.roles["assistant"], turns, prompt_tokens, turns * args.max_tokens),
        },
        {
            "role": "user_simulator",
            **estimate_cost(plan.roles["user_simulator"], user_requests, prompt_tokens, turns * args.user_max_tokens),
        },
    ]


def _run_dialogues(recipe: Recipe, plan: _Plan) -> str:
    args = plan.args
    talk = _Conversations()
    stats, failures = generate(args, plan.roles, lambda gen: _converse(gen, plan, talk))
    if stats["stopped_by_budget"]:
        logger.warning("max_cost_usd reached: writing the dialogues done so far")
    rows = _dialogue_rows(talk.messages)
    hist: dict[int, int] = {}
    for row in rows:
        hist[row["turns"]] = hist.get(row["turns"], 0) + 1
    dropped = talk.truncated_dropped
    write_stage_outputs(
        StageOutputs(
            args.output_dir,
            "dialogues",
            recipe,
            {"sft": rows},
            roles=plan.roles,
            sampling=plan.sampling,
            templates=templates_hash(*TEMPLATES),
            stats=stats,
            counts={
                "openers": len(plan.turns),
                "dialogues": len(rows),
                "turn_histogram": hist,
                "truncated_dropped": dropped,
            },
            card_lines=[f"- turns per dialogue: {json.dumps(dict(sorted(hist.items())))}"],
            failures=failures,
            detail=f"{dropped} replies cut by max_tokens were dropped; set keep_truncated: true or raise max_tokens"
            if dropped
            else "",
        )
    )
    logger.info("dialogues: %d written, $%.4f", len(rows), stats["cost_usd"])
    return args.output_dir


def _converse(gen: GenerationSession, plan: _Plan, talk: _Conversations) -> None:
    """Open every dialogue, then alternate assistant and user turns until each has its turns or has ended."""
    args, n = plan.args, len(plan.turns)
    openers = plan.openers if plan.openers is not None else _openers_from_topics(gen, plan)
    system = [{"role": "system", "content": args.system_prompt}] if args.system_prompt else []
    talk.messages = [system + [{"role": "user", "content": o}] for o in openers[:n]]
    talk.alive = [bool(o) for o in openers[:n]]
    for turn in range(args.max_turns):
        active = [i for i in range(n) if talk.alive[i] and turn < plan.turns[i]]
        if not active:
            break
        _assistant_turn(gen, plan, talk, active, turn)
        following = [i for i in active if talk.alive[i] and turn + 1 < plan.turns[i]]
        _user_turn(gen, plan, talk, following, turn)


def _openers_from_topics(gen: GenerationSession, plan: _Plan) -> list[str]:
    """One first message per dialogue, from the topics in turn; "" where the user simulator gave none."""
    args = plan.args
    topics = [args.topics[i % len(args.topics)] for i in range(len(plan.turns))]
    results = gen.ask(
        "user_simulator",
        [
            ChatRequest(
                [{"role": "user", "content": OPENER_FROM_TOPIC.format(topic=t)}],
                {**plan.user_params, "seed": derived_seed(args.seed, "open", i)},
                sample=i,
            )
            for i, t in enumerate(topics)
        ],
        "openers",
    )
    return [r.text.strip() if r.kept(args.keep_truncated) else "" for r in results]


def _assistant_turn(gen: GenerationSession, plan: _Plan, talk: _Conversations, active: list[int], turn: int) -> None:
    args = plan.args
    replies = gen.ask(
        "assistant",
        [
            ChatRequest(talk.messages[i], {**plan.assistant_params, "seed": derived_seed(args.seed, i, turn)})
            for i in active
        ],
        f"assistant turn {turn + 1}",
    )
    for i, r in zip(active, replies):
        if r.kept(args.keep_truncated):
            talk.messages[i].append({"role": "assistant", "content": r.text})
        else:
            talk.truncated_dropped += r.status == "truncated"
            talk.alive[i] = False  # end here; the dialogue keeps its complete turns


def _user_turn(gen: GenerationSession, plan: _Plan, talk: _Conversations, following: list[int], turn: int) -> None:
    args = plan.args
    asks = gen.ask(
        "user_simulator",
        [
            ChatRequest(
                _as_user_view(talk.messages[i]), {**plan.user_params, "seed": derived_seed(args.seed, i, turn, "u")}
            )
            for i in following
        ],
        f"user turn {turn + 2}",
    )
    for i, r in zip(following, asks):
        if r.kept(args.keep_truncated) and r.text.strip():
            talk.messages[i].append({"role": "user", "content": r.text.strip()})
        else:
            talk.alive[i] = False


def _dialogue_rows(dialogues: list[list[dict]]) -> list[dict]:
    """SFT rows of the dialogues with an assistant turn, each cut back to end on one."""
    rows = []
    for d in dialogues:
        while d and d[-1]["role"] != "assistant":  # every dialogue ends on an assistant turn
            d = d[:-1]
        if any(m["role"] == "assistant" for m in d):
            rows.append({"messages": d, "source": "dialogues", "turns": sum(m["role"] == "assistant" for m in d)})
    return rows
