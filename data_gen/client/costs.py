"""What requests cost: the spend a stage shares, the price of a reply, and estimates before anything is sent."""

from __future__ import annotations

import logging
import math

from ..endpoints import TeacherConfig
from .redaction import Redactor

logger = logging.getLogger(__name__)


class Budget:
    """Spend shared by every role of a stage, counted from the journal so it survives restarts."""

    def __init__(self, spent_usd: float, max_usd: float | None):
        self.spent_usd = spent_usd
        self.max_usd = max_usd

    @property
    def exhausted(self) -> bool:
        return self.max_usd is not None and self.spent_usd >= self.max_usd


def request_cost_usd(price: tuple[float, float], prompt_tokens: int, completion_tokens: int) -> float:
    """USD for a request from its token counts and the model's (input, output) prices in USD per 1M tokens."""
    price_in, price_out = price
    return (prompt_tokens * float(price_in) + completion_tokens * float(price_out)) / 1e6


def estimate_tokens(messages: list) -> int:
    """Tokens a chat request's messages take before any tokenizer is at hand: about 4 characters a token, plus a
    few a message for the chat template's role markers."""
    return sum(len(str(m.get("content", ""))) for m in messages) // 4 + 4 * len(messages)


def reply_cost(
    teacher: TeacherConfig,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    *,
    redactor: Redactor,
    warned: set[str],
) -> tuple[float, str]:
    """USD for a reply, and "" or why it could not be priced. Never raises: the reply is already paid for.

    ``warned`` holds the models whose prices failed already, so each is warned about once.
    """
    try:
        cost = request_cost_usd(teacher.price(model), prompt_tokens, completion_tokens)
        if not math.isfinite(cost) or cost < 0:
            raise ValueError(f"they give a cost of {cost}")
        return cost, ""
    except Exception as exc:  # noqa: BLE001 - any failure here would otherwise cost a second payment
        error = redactor.text(
            f"prices for model '{model}' in teacher '{teacher.name}' are unusable "
            f"({type(exc).__name__}: {exc}); fix 'prices' in the teacher config"
        )
        if model not in warned:
            warned.add(model)
            logger.warning("%s; its replies are journaled at cost 0 and max_cost_usd cannot count them", error)
        return 0.0, error
