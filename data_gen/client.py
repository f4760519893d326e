"""The one way this project calls an LLM: an async OpenAI-compatible client with limits, retries, journal and costs.

Used by every stage that talks to a teacher, a user simulator or a judge. Guarantees:
- at most ``max_concurrency`` requests in flight, and requests/tokens per minute under the configured limits;
- 429, 5xx, timeouts, dropped connections and malformed replies are retried with exponential backoff and full
  jitter (a 429's Retry-After is honoured), at most ``max_retries`` times; what still fails is journaled as
  failed and retried on the next run;
- a context-length error is retried at once with a max_tokens that fits;
- every finished request is journaled with its usage and cost before its result is used, and a request found
  in the journal is never sent again;
- ``finish_reason == "length"`` replies are flagged ``truncated``; the stage decides to keep or drop them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import re
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from distill_core.errors import UserError

from .endpoints import Endpoint, TeacherConfig
from .journal import Journal, request_key

logger = logging.getLogger(__name__)


class EndpointError(UserError):
    """An endpoint that cannot serve this run at all (unreachable, bad key, unknown model)."""


class BudgetExceeded(Exception):
    """max_cost_usd was reached; everything finished so far is in the journal."""


class Budget:
    """Spend shared by every role of a stage, counted from the journal so it survives restarts."""

    def __init__(self, spent_usd: float, max_usd: float | None):
        self.spent_usd = spent_usd
        self.max_usd = max_usd

    @property
    def exhausted(self) -> bool:
        return self.max_usd is not None and self.spent_usd >= self.max_usd


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


class TokenBucket:
    """Refills at ``per_minute / 60`` per second and holds at most two seconds' worth (the burst).

    Every take is charged in full, also one larger than the burst: it waits for a full bucket, then leaves the
    balance negative, and the takes after it wait until that debt is refilled. So in any window of T seconds
    the bucket admits at most burst + rate x T plus one request, whatever the sizes of the requests.
    ``clock`` and ``sleep`` are injectable so a test can run the limiter on a fake clock.
    """

    def __init__(self, per_minute: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * 2.0)
        self.tokens = self.capacity
        self.charged = 0.0  # everything admitted so far, in full
        self._clock = clock
        self._sleep = sleep
        self.updated = clock()
        self._lock = asyncio.Lock()

    async def take(self, amount: float) -> None:
        needed = min(amount, self.capacity)  # a request above the burst waits for a full bucket, no longer
        async with self._lock:
            while True:
                now = self._clock()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= needed:
                    self.tokens -= amount
                    self.charged += amount
                    return
                await self._sleep(max(1e-3, (needed - self.tokens) / self.rate))


_CONTEXT_RE = re.compile(r"maximum context length is (\d+) tokens.*?\((\d+) in the messages", re.S)
RETRYABLE = "retryable"


class ChatClient:
    """Sends ChatRequests to one role's endpoints (load-balanced), through the journal."""

    def __init__(self, teacher: TeacherConfig, journal: Journal, *, budget=None,
                 endpoints: list[Endpoint] | None = None, seed: int = 0):
        import openai

        self.teacher = teacher
        self.journal = journal
        self.budget = budget if budget is not None else Budget(journal.spent_usd(), None)  # shared by every role of a stage
        self.endpoints = endpoints or teacher.endpoint_list()
        if not self.endpoints:
            raise EndpointError(f"teacher '{teacher.name}' has no endpoints")
        self.model_id = "+".join(sorted({e.model for e in self.endpoints}))
        self._clients = [openai.AsyncOpenAI(base_url=e.base_url, api_key=e.api_key(), max_retries=0,
                                            timeout=teacher.timeout_s) for e in self.endpoints]
        self._next = itertools.cycle(range(len(self.endpoints)))
        self._cooldown_until = [0.0] * len(self.endpoints)
        self._semaphore = asyncio.Semaphore(teacher.max_concurrency)
        self._rpm = TokenBucket(teacher.requests_per_minute) if teacher.requests_per_minute else None
        self._tpm = TokenBucket(teacher.tokens_per_minute) if teacher.tokens_per_minute else None
        self._rng = random.Random(seed)
        self.counts = {"sent": 0, "cached": 0, "ok": 0, "truncated": 0, "failed": 0, "retries": 0, "skipped": 0}

    # -- public -----------------------------------------------------------------------------------------------------

    def key(self, request: ChatRequest) -> str:
        return request_key(self.model_id, request.messages, request.params, request.sample)

    async def check_reachable(self) -> None:
        """Fail fast with one clear line when an endpoint is down, rejects the key, or lacks the model."""
        import openai

        for endpoint, client in zip(self.endpoints, self._clients):
            where = f"endpoint {endpoint.base_url} (teacher '{self.teacher.name}')"
            try:
                await client.models.list(timeout=min(10.0, self.teacher.timeout_s))
            except openai.AuthenticationError:
                raise EndpointError(f"{where} rejected the API key from ${endpoint.api_key_env}; export a valid key") from None
            except (openai.APIConnectionError, openai.APITimeoutError):
                raise EndpointError(f"{where} is unreachable; start the server or fix base_url in the teacher config") from None
            except openai.APIStatusError as exc:
                if exc.status_code >= 500:
                    raise EndpointError(f"{where} answered {exc.status_code} to a models listing; check the server") from None
                # some servers do not implement /models; the first request will tell

    async def run(self, requests: list[ChatRequest], on_result: Callable[[ChatResult], None] | None = None) -> list[ChatResult]:
        """Results in request order. Raises BudgetExceeded after the in-flight requests finish if the budget ran out."""
        results = await asyncio.gather(*(self._one(r, on_result) for r in requests))
        if any(r.status == "skipped" for r in results):
            raise BudgetExceeded(results)
        return list(results)

    async def close(self) -> None:
        for client in self._clients:
            await client.close()

    # -- internals ----------------------------------------------------------------------------------------------------

    async def _one(self, request: ChatRequest, on_result) -> ChatResult:
        key = self.key(request)
        record = self.journal.done(key)
        if record is not None:
            result = _from_record(record, cached=True)
            self.counts["cached"] += 1
        else:
            async with self._semaphore:
                if self.budget.exhausted:
                    result = ChatResult(key, "skipped", error="max_cost_usd reached")
                    self.counts["skipped"] += 1
                else:
                    result = await self._send(key, request)
        if on_result is not None:
            on_result(result)
        return result

    def _pick(self) -> int:
        now = time.monotonic()
        for _ in range(len(self.endpoints)):
            i = next(self._next)
            if self._cooldown_until[i] <= now:
                return i
        return min(range(len(self.endpoints)), key=lambda j: self._cooldown_until[j])

    def _backoff(self, attempt: int) -> float:
        cap = min(self.teacher.backoff_max_s, self.teacher.backoff_base_s * (2 ** attempt))
        return self._rng.uniform(0, cap)  # full jitter: retries of many requests spread out

    async def _send(self, key: str, request: ChatRequest) -> ChatResult:
        import openai

        params = {**self.teacher.sampling, **request.params}
        last_error = ""
        attempts = 0
        for attempt in range(self.teacher.max_retries + 1):
            attempts = attempt + 1
            if self._rpm:
                await self._rpm.take(1)
            if self._tpm:
                await self._tpm.take(_estimate_tokens(request.messages) + int(params.get("max_tokens", 256)))
            i = self._pick()
            endpoint, client = self.endpoints[i], self._clients[i]
            self.counts["sent"] += 1
            delay = None
            try:
                response = await client.chat.completions.create(model=endpoint.model, messages=request.messages, **params)
                return self._record_success(key, request, endpoint, response, attempts, params)
            except openai.RateLimitError as exc:
                delay = _retry_after(exc) or self._backoff(attempt)
                self._cooldown_until[i] = time.monotonic() + delay
                last_error = "429 rate limited"
            except openai.BadRequestError as exc:
                fitted = _fit_max_tokens(exc, params)
                if fitted is None:
                    return self._record_failure(key, endpoint, attempts, f"400: {_message(exc)}")
                logger.info("context length exceeded at %s: retrying with max_tokens=%d", endpoint.base_url, fitted)
                params = {**params, "max_tokens": fitted}
                last_error = "context length"
                delay = 0.0
            except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
                raise EndpointError(f"endpoint {endpoint.base_url} refused the request ({exc.status_code}); "
                                    f"check the key in ${endpoint.api_key_env}") from None
            except openai.NotFoundError:
                raise EndpointError(f"endpoint {endpoint.base_url} does not serve model '{endpoint.model}'; "
                                    f"fix 'model' in the teacher config") from None
            except openai.APIStatusError as exc:
                if exc.status_code < 500 and exc.status_code not in (408, 409):
                    return self._record_failure(key, endpoint, attempts, f"{exc.status_code}: {_message(exc)}")
                last_error = f"{exc.status_code} server error"
            except openai.APITimeoutError:
                last_error = "timeout"
            except openai.APIConnectionError:
                last_error = "connection dropped"
            except (openai.APIResponseValidationError, ValueError) as exc:  # malformed or truncated JSON
                last_error = f"malformed reply ({type(exc).__name__})"
            if attempt == self.teacher.max_retries:
                break
            self.counts["retries"] += 1
            await asyncio.sleep(self._backoff(attempt) if delay is None else delay)
        return self._record_failure(key, endpoint, attempts, f"gave up after {attempts} attempts: {last_error}")

    def _record_success(self, key, request, endpoint: Endpoint, response, attempts: int, params: dict) -> ChatResult:
        if not getattr(response, "choices", None):
            raise ValueError("reply has no choices")
        choice = response.choices[0]
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        price_in, price_out = self.teacher.price(endpoint.model)
        cost = (prompt_tokens * price_in + completion_tokens * price_out) / 1e6
        status = "truncated" if choice.finish_reason == "length" else "ok"
        top = None
        logprobs = getattr(choice, "logprobs", None)
        if logprobs is not None and getattr(logprobs, "content", None):
            top = [{"token": t.token, "logprob": t.logprob} for t in (logprobs.content[0].top_logprobs or [])]
        record = {
            "key": key, "status": status, "text": choice.message.content or "", "finish_reason": choice.finish_reason,
            "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "cost_usd": cost,
            "model": endpoint.model, "endpoint": endpoint.base_url, "attempts": attempts,
            "max_tokens": params.get("max_tokens"), "time": time.time(),
        }
        if top is not None:
            record["top_logprobs"] = top
        self.journal.append(record)  # durable before the result is used
        self.budget.spent_usd += cost
        self.counts[status] += 1
        return _from_record(record)

    def _record_failure(self, key, endpoint: Endpoint, attempts: int, error: str) -> ChatResult:
        record = {"key": key, "status": "failed", "error": error, "model": endpoint.model, "endpoint": endpoint.base_url,
                  "attempts": attempts, "cost_usd": 0.0, "time": time.time()}
        self.journal.append(record)
        self.counts["failed"] += 1
        logger.warning("request %s failed: %s", key[:12], error)
        return _from_record(record)


def _from_record(record: dict, cached: bool = False) -> ChatResult:
    return ChatResult(key=record["key"], status=record["status"], text=record.get("text", ""),
                      finish_reason=record.get("finish_reason"), prompt_tokens=record.get("prompt_tokens", 0),
                      completion_tokens=record.get("completion_tokens", 0), cost_usd=record.get("cost_usd", 0.0),
                      model=record.get("model", ""), attempts=record.get("attempts", 0), error=record.get("error", ""),
                      cached=cached, top_logprobs=record.get("top_logprobs"))


def _estimate_tokens(messages: list) -> int:
    return sum(len(str(m.get("content", ""))) for m in messages) // 4 + 4 * len(messages)


def _retry_after(exc) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None


def _message(exc) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        body = body.get("error", body)
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])[:300]
    return str(exc)[:300]


def _fit_max_tokens(exc, params: dict) -> int | None:
    """For a context-length 400, the largest max_tokens that fits; None if it is another 400 or nothing fits."""
    match = _CONTEXT_RE.search(_message(exc))
    if not match:
        return None
    window, prompt = int(match.group(1)), int(match.group(2))
    fitted = window - prompt - 1
    current = params.get("max_tokens")
    if fitted < 1 or (current is not None and fitted >= current):
        return None
    return fitted


def describe_counts(counts: dict[str, int]) -> str:
    return json.dumps(counts, sort_keys=True)
