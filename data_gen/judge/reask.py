"""The re-ask engine: send every unit of judging work, parse each reply, and ask again only where it was unusable.

A judge reply that cannot be used is answered in the same conversation with the reason (what was missing, off
the scale or contradictory) and asked again, at most ``max_reasks`` times. A reply cut by max_tokens is such a
reply unless the recipe sets keep_truncated, the rule every generation stage keeps (``ChatResult.kept``): a cut
verdict may still parse, yet the judge never finished it. Every raw reply is kept, in order, for audit. A unit
still unusable at the end keeps its last error and whatever its parser could read, and the caller records it as a
failure, never as a score. A request that failed after all of the client's retries is not re-asked:
the endpoint, not the reply, was at fault, and the journal already holds it for a rerun.

The engine knows nothing of aspects or scores: what a reply must hold is the parser's business and what to say
back is the re-ask function's, so aspect ratings, critiques and later single-answer or pairwise judging share it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..client import ChatRequest
from ..session import GenerationSession


@dataclass
class JudgeTask:
    """One conversation with the judge about one prompt: what was shown, what was said, what was read."""

    prompt_id: str
    aspect: str  # what is judged: a rating aspect, or e.g. "overall" for a critique
    order: list[int]  # shown position -> completion index of the prompt's completions
    messages: list[dict]  # the conversation so far, re-asks included
    replies: list[str] = field(default_factory=list)  # every raw reply, in order
    result: Any = None  # what the parser read from the last reply (possibly partial)
    error: str | None = None  # why the last reply was unusable, or why the request failed; None once parsed


# Why a reply cut by max_tokens is re-asked; it reaches the judge through the re-ask templates' {error}.
TRUNCATED = "the reply was cut off by the length limit (max_tokens) before it ended"

Parser = Callable[[JudgeTask, str], tuple[Any, str | None]]  # (task, reply) -> (result, error or None)
Reasker = Callable[[JudgeTask, str], str]  # (task, error) -> the follow-up message


def ask_until_parsed(
    session: GenerationSession,
    tasks: list[JudgeTask],
    parse: Parser,
    reask: Reasker,
    *,
    params: dict,
    max_reasks: int,
    keep_truncated: bool,
    desc: str,
    role: str = "judge",
) -> None:
    """Fill in each task's replies, result and error. Requests go out in batches (one per round, the unusable ones
    only), so the session's concurrency, budget and journal apply; BudgetExceeded propagates to the stage."""
    pending = list(tasks)
    for attempt in range(max_reasks + 1):
        if not pending:
            break
        results = session.ask(
            role,
            [ChatRequest(task.messages, params) for task in pending],
            desc if attempt == 0 else f"{desc} re-ask {attempt}",
        )
        unusable = []
        for task, result in zip(pending, results):
            if not result.usable:
                task.error = f"request failed: {result.error or result.status}"
                continue
            task.replies.append(result.text)
            if result.kept(keep_truncated):
                task.result, task.error = parse(task, result.text)
            else:
                task.result, task.error = None, TRUNCATED
            if task.error:
                task.messages = task.messages + [
                    {"role": "assistant", "content": result.text},
                    {"role": "user", "content": reask(task, task.error)},
                ]
                unusable.append(task)
        pending = unusable
