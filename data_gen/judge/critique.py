"""The critique pass: one request per completion for a short critique ending in 'Overall score: N' (1-10).

It gives binarization a second, independent score (``score: overall``). A reply without exactly one whole-number
score on the scale is re-asked by the re-ask engine; a completion still without one at the end keeps
``overall_score: null``, never a made-up score, and every raw critique is kept in ``critique_raw``.
"""

from __future__ import annotations

from ..session import GenerationSession
from .arguments import JudgeArguments
from .parsing import parse_overall
from .reask import JudgeTask, ask_until_parsed
from .templates import critique_messages, critique_reask


def critique_completions(gen: GenerationSession, rows: list[dict], args: JudgeArguments) -> dict:
    params = {"temperature": args.temperature, "max_tokens": args.max_tokens}
    tasks = [
        JudgeTask(row["prompt_id"], "overall", [idx], critique_messages(row["prompt"], completion["text"]))
        for row in rows
        for idx, completion in enumerate(row["completions"])
    ]
    ask_until_parsed(
        gen,
        tasks,
        lambda task, reply: parse_overall(reply),
        lambda task, error: critique_reask(error),
        params=params,
        max_reasks=args.max_reasks,
        keep_truncated=args.keep_truncated,
        desc="critique",
    )
    by_id = {row["prompt_id"]: row for row in rows}
    for task in tasks:
        completion = by_id[task.prompt_id]["completions"][task.order[0]]
        completion["overall_score"] = task.result
        completion["critique_raw"] = task.replies
    return {"critique_calls": len(tasks), "failed_critiques": sum(task.result is None for task in tasks)}
