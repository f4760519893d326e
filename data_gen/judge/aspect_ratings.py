"""Text-mode judging: for each prompt and aspect, ONE request rates every completion of the prompt.

The completions are shown in a shuffled order, seeded per prompt and aspect so that a position carries no signal
and a rerun shows the same order (and so hits the journal). The judge replies with a 1-5 rating and a rationale
per text (N/A allowed for honesty, a type 1-3 for truthfulness and helpfulness); the ratings reach the completions
through the shuffle. Unusable replies are re-asked by the re-ask engine; a completion still unrated at the end is
recorded as a failed rating with the last reason, never given a score.
"""

from __future__ import annotations

import random

from ..rating_vocabulary import TYPED_ASPECTS
from ..session import GenerationSession
from ..stage import derived_seed
from .arguments import JudgeArguments
from .parsing import parse_ratings
from .reask import JudgeTask, ask_until_parsed
from .templates import rating_messages, rating_reask


def shuffled_order(seed: int, prompt_id: str, aspect: str, k: int) -> list[int]:
    """shown position -> completion index; seeded per prompt and aspect so positions carry no signal."""
    order = list(range(k))
    random.Random(derived_seed(seed, "judge", prompt_id, aspect)).shuffle(order)
    return order


def rating_tasks(rows: list[dict], aspects: list[str], seed: int) -> list[JudgeTask]:
    tasks = []
    for row in rows:
        for aspect in aspects:
            order = shuffled_order(seed, row["prompt_id"], aspect, len(row["completions"]))
            texts = [row["completions"][idx]["text"] for idx in order]
            tasks.append(JudgeTask(row["prompt_id"], aspect, order, rating_messages(row["prompt"], texts, aspect)))
    return tasks


def rate_aspects(gen: GenerationSession, rows: list[dict], args: JudgeArguments) -> dict:
    """Rate every completion of every row on args.aspects; ratings and raw replies are written into the rows."""
    params = {"temperature": args.temperature, "max_tokens": args.max_tokens}
    if args.json_mode:
        params["response_format"] = {"type": "json_object"}
    tasks = rating_tasks(rows, args.aspects, args.seed)
    ask_until_parsed(
        gen,
        tasks,
        lambda task, reply: parse_ratings(reply, len(task.order), task.aspect),
        lambda task, error: rating_reask(error, len(task.order), task.aspect),
        params=params,
        max_reasks=args.max_reasks,
        keep_truncated=args.keep_truncated,
        desc="judging",
    )
    by_id = {row["prompt_id"]: row for row in rows}
    failures = sum(_store_ratings(by_id[task.prompt_id], task) for task in tasks)
    return {"judge_calls": len(tasks), "failed_ratings": failures}


def _store_ratings(row: dict, task: JudgeTask) -> int:
    """Write one task's ratings into its row's completions; returns how many completions got none."""
    row.setdefault("judge_raw", {})[task.aspect] = task.replies
    failures = 0
    for pos, idx in enumerate(task.order):  # shown position -> completion index
        rating = task.result.get(pos) if task.result else None
        if rating is None:
            failures += 1
            rating = {
                "rating": None,
                "status": "failed",
                "rationale": "",
                "error": task.error or "unparsed",
                **({"type": None} if task.aspect in TYPED_ASPECTS else {}),
            }
        row["completions"][idx].setdefault("ratings", {})[task.aspect] = rating
    return failures
