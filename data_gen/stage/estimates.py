"""A dry run's cost estimate: requests, tokens and USD per role, printed as one table."""

from __future__ import annotations

from ..client import request_cost_usd
from ..endpoints import TeacherConfig


def estimate_cost(teacher: TeacherConfig, requests: int, prompt_tokens: int, completion_tokens: int) -> dict:
    """Upper estimate: every completion assumed to use its whole max_tokens."""
    model = (
        teacher.endpoints[0]["model"] if teacher.endpoints else (teacher.local_server or {}).get("model_dir", "local")
    )
    cost = request_cost_usd(teacher.price(model), prompt_tokens, completion_tokens)
    return {
        "model": model,
        "requests": requests,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "cost_usd": round(cost, 4),
        "priced": model in teacher.prices,
    }


def print_estimate(rows: list[dict]) -> None:
    print(f"{'role':<16}{'model':<28}{'requests':>10}{'prompt tok':>12}{'completion tok':>16}{'cost USD':>11}")
    total = 0.0
    for row in rows:
        total += row["cost_usd"]
        note = "" if row["priced"] else "  (no price in the teacher config: counted as 0)"
        print(
            f"{row['role']:<16}{row['model'][-27:]:<28}{row['requests']:>10}{row['prompt_tokens']:>12}"
            f"{row['completion_tokens']:>16}{row['cost_usd']:>11.4f}{note}"
        )
    print(f"estimated total (upper bound, every reply at max_tokens): ${total:.4f}")
