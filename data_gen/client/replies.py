"""Reading a 200 reply: the parts of a chat completion the journal keeps, checked, and the models listing."""

from __future__ import annotations

import json
from dataclasses import dataclass

from .errors import MalformedReply


@dataclass
class Reply:
    """The parts of a chat completion the journal keeps, read out of the SDK object in one checked step."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    top_logprobs: list | None


def read_reply(response) -> Reply:
    """The reply's text, finish reason, usage and first-token logprobs; MalformedReply when it has no message.

    The SDK builds its objects without validating them, so anything may be missing or of the wrong type.
    """
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise MalformedReply("reply has no choices")
    choice = choices[0]
    message = getattr(choice, "message", None)
    if message is None:
        raise MalformedReply("reply has no message")
    content = getattr(message, "content", None)
    if content is not None and not isinstance(content, str):
        raise MalformedReply(f"reply content is a {type(content).__name__}, not text")
    finish_reason = getattr(choice, "finish_reason", None)
    usage = getattr(response, "usage", None)
    return Reply(
        text=content or "",
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        prompt_tokens=_token_count(usage, "prompt_tokens"),
        completion_tokens=_token_count(usage, "completion_tokens"),
        top_logprobs=_first_top_logprobs(choice),
    )


def _token_count(usage, name: str) -> int:
    # usage is what the provider bills; an odd value is recorded as 0 rather than failing a paid reply
    value = getattr(usage, name, 0)
    if isinstance(value, bool):
        return 0
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError, OverflowError):
        return 0


def _first_top_logprobs(choice) -> list | None:
    logprobs = getattr(choice, "logprobs", None)
    content = getattr(logprobs, "content", None)
    if not content:
        return None
    try:
        return [{"token": str(t.token), "logprob": float(t.logprob)} for t in (content[0].top_logprobs or [])]
    except (AttributeError, TypeError, ValueError, IndexError, KeyError):
        return None  # the stage sees no logprobs; the text is still the paid reply


def is_models_listing(response) -> bool:
    """Whether a 200 reply to GET /models is the OpenAI API's JSON list (not a web page or another service)."""
    try:
        body = json.loads(response.content)
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("data"), list)
