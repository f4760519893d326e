"""A request, its result, and the journal record a result is written as and read back from."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..endpoints import Endpoint
from .replies import Reply


@dataclass(frozen=True)
class ChatRequest:
    messages: list
    params: dict = field(default_factory=dict)  # temperature, top_p, max_tokens, seed, ...
    sample: int = 0  # distinguishes several samples of the same prompt


@dataclass
class ChatResult:
    key: str
    status: str  # ok | truncated | failed | skipped (budget)
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    model: str = ""
    attempts: int = 0
    error: str = ""
    cached: bool = False
    top_logprobs: list | None = None  # [{token, logprob}] of the first generated token, when requested

    @property
    def usable(self) -> bool:
        return self.status in ("ok", "truncated")

    def kept(self, keep_truncated: bool) -> bool:
        """Whether a stage keeps this reply: a complete one always, one cut by max_tokens only if asked to."""
        return self.status == "ok" or (self.status == "truncated" and keep_truncated)


def success_record(
    key: str, endpoint: Endpoint, reply: Reply, attempts: int, params: dict, cost: float, cost_error: str
) -> dict:
    """The journal record of a well-formed reply: ``truncated`` when it was cut by max_tokens, else ``ok``."""
    record = {
        "key": key,
        "status": "truncated" if reply.finish_reason == "length" else "ok",
        "text": reply.text,
        "finish_reason": reply.finish_reason,
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "cost_usd": cost,
        "model": endpoint.model,
        "endpoint": endpoint.base_url,
        "attempts": attempts,
        "max_tokens": params.get("max_tokens"),
        "time": time.time(),
    }
    if cost_error:
        record["cost_error"] = cost_error
    if reply.top_logprobs is not None:
        record["top_logprobs"] = reply.top_logprobs
    return record


def failure_record(key: str, endpoint: Endpoint, attempts: int, error: str) -> dict:
    return {
        "key": key,
        "status": "failed",
        "error": error,
        "model": endpoint.model,
        "endpoint": endpoint.base_url,
        "attempts": attempts,
        "cost_usd": 0.0,
        "time": time.time(),
    }


def result_from_record(record: dict, cached: bool = False) -> ChatResult:
    return ChatResult(
        key=record["key"],
        status=record["status"],
        text=record.get("text", ""),
        finish_reason=record.get("finish_reason"),
        prompt_tokens=record.get("prompt_tokens", 0),
        completion_tokens=record.get("completion_tokens", 0),
        cost_usd=record.get("cost_usd", 0.0),
        model=record.get("model", ""),
        attempts=record.get("attempts", 0),
        error=record.get("error", ""),
        cached=cached,
        top_logprobs=record.get("top_logprobs"),
    )
