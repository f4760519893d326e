"""The one way this project calls an LLM: an async OpenAI-compatible client with limits, retries, journal and costs.

Used by every stage that talks to a teacher, a user simulator or a judge. Guarantees:
- at most ``max_concurrency`` requests in flight, and requests/tokens per minute under the configured limits;
- every attempt has a total deadline of ``timeout_s`` (a server that drips its reply slowly times out too);
- 429, 5xx, timeouts, dropped connections and malformed replies (not JSON, no choices, no message) are retried
  with exponential backoff and full jitter, at most ``max_retries`` times; a 429's Retry-After is honoured
  (``retry-after-ms``, seconds, or an HTTP date); what still fails is journaled as failed and retried on the
  next run;
- a context-length error is retried at once with a max_tokens that fits;
- a well-formed reply is journaled, with its usage and cost, before anything else is done with it, and nothing
  after that point can turn it into a retry: prices that cannot be used give the record a ``cost_error`` and a
  cost of 0 instead of a second payment;
- a request found in the journal is never sent again, and identical requests (same key) asked for at the same
  time, within one ``run`` or by concurrent callers sharing the journal, are sent once and share the result;
- the values of the endpoints' API-key variables (8 characters or more) never reach the journal, a log line or
  an exception message: a server that echoes the key is written down as ``[redacted $VAR]``;
- ``run`` leaves no task behind: when a request raises (bad key, Ctrl-C, cancellation) every other request of
  that run is cancelled and awaited before the exception propagates, and ``close`` does the same for anything
  still running;
- ``finish_reason == "length"`` replies are flagged ``truncated``; the stage decides to keep or drop them.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import json
import logging
import math
import os
import random
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from distill_core.errors import UserError

from .endpoints import Endpoint, TeacherConfig
from .journal import Journal, request_key

logger = logging.getLogger(__name__)

MIN_SECRET_CHARS = 8  # shorter "keys" (EMPTY, a test token) would redact ordinary words out of every message
MAX_RETRY_AFTER_S = 600.0  # a server asking for longer is better answered by failing now and retrying next run
_ERROR_CHARS = 300  # how much of a server's error message a record or log line keeps


class EndpointError(UserError):
    """An endpoint that cannot serve this run at all (unreachable, bad key, unknown model)."""


class BudgetExceeded(Exception):
    """max_cost_usd was reached; everything finished so far is in the journal."""


class MalformedReply(ValueError):
    """A 200 reply without the parts every chat completion has; retried like a garbled one."""


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

    def kept(self, keep_truncated: bool) -> bool:
        """Whether a stage keeps this reply: a complete one always, one cut by max_tokens only if asked to."""
        return self.status == "ok" or (self.status == "truncated" and keep_truncated)


@dataclass
class _Reply:
    """The parts of a chat completion the journal keeps, read out of the SDK object in one checked step."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    top_logprobs: list | None


class TokenBucket:
    """Refills at ``per_minute / 60`` per second and holds at most two seconds' worth (the burst).

    Every take is charged in full, also one larger than the burst: it waits for a full bucket, then leaves the
    balance negative, and the takes after it wait until that debt is refilled. So in any window of T seconds
    the bucket admits at most burst + rate x T plus one request, whatever the sizes of the requests.
    ``clock`` and ``sleep`` are injectable so a test can run the limiter on a fake clock.
    """

    def __init__(
        self,
        per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
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


class Redactor:
    """Replaces the secret values of API-key variables with ``[redacted $NAME]`` in text and in records."""

    def __init__(self, secrets: dict[str, str]):  # secret value -> name of its environment variable
        # longest first, so a key that contains another key is replaced whole
        self._pairs = sorted(
            (
                (value, f"[redacted ${name}]")
                for value, name in secrets.items()
                if value and len(value) >= MIN_SECRET_CHARS
            ),
            key=lambda pair: -len(pair[0]),
        )

    @classmethod
    def for_endpoints(cls, endpoints: list[Endpoint]) -> "Redactor":
        secrets: dict[str, str] = {}
        for endpoint in endpoints:
            if endpoint.api_key_env:
                secrets.setdefault(os.environ.get(endpoint.api_key_env, ""), endpoint.api_key_env)
        return cls(secrets)

    def __bool__(self) -> bool:
        return bool(self._pairs)

    def text(self, text: str) -> str:
        for secret, replacement in self._pairs:
            if secret in text:
                text = text.replace(secret, replacement)
        return text

    def value(self, value: Any) -> Any:
        """A copy of a JSON-like value with every string (keys included) redacted."""
        if not self._pairs:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        return value


_CONTEXT_RE = re.compile(r"maximum context length is (\d+) tokens.*?\((\d+) in the messages", re.S)


class ChatClient:
    """Sends ChatRequests to one role's endpoints (load-balanced), through the journal."""

    def __init__(
        self,
        teacher: TeacherConfig,
        journal: Journal,
        *,
        budget=None,
        endpoints: list[Endpoint] | None = None,
        seed: int = 0,
    ):
        import openai

        self.teacher = teacher
        self.journal = journal
        self.budget = (
            budget if budget is not None else Budget(journal.spent_usd(), None)
        )  # shared by every role of a stage
        self.endpoints = endpoints or teacher.endpoint_list()
        if not self.endpoints:
            raise EndpointError(f"teacher '{teacher.name}' has no endpoints")
        self.model_id = "+".join(sorted({e.model for e in self.endpoints}))
        self._redactor = Redactor.for_endpoints(self.endpoints)
        self._clients = [
            openai.AsyncOpenAI(base_url=e.base_url, api_key=e.api_key(), max_retries=0, timeout=teacher.timeout_s)
            for e in self.endpoints
        ]
        self._next = itertools.cycle(range(len(self.endpoints)))
        self._cooldown_until = [0.0] * len(self.endpoints)
        self._semaphore = asyncio.Semaphore(teacher.max_concurrency)
        self._rpm = TokenBucket(teacher.requests_per_minute) if teacher.requests_per_minute else None
        self._tpm = TokenBucket(teacher.tokens_per_minute) if teacher.tokens_per_minute else None
        self._rng = random.Random(seed)
        self._tasks: set[asyncio.Task] = set()  # sends started by this client and not finished yet
        self._runners: set[asyncio.Task] = set()  # tasks inside run(), so close() can stop them
        self._unpriced: set[str] = set()  # models whose prices failed, warned about once each
        self.counts = {
            "sent": 0,
            "cached": 0,
            "deduplicated": 0,
            "ok": 0,
            "truncated": 0,
            "failed": 0,
            "retries": 0,
            "skipped": 0,
        }

    # -- public -----------------------------------------------------------------------------------------------------

    def key(self, request: ChatRequest) -> str:
        return request_key(self.model_id, request.messages, request.params, request.sample)

    async def check_reachable(self) -> None:
        """Fail fast with one clear line when an endpoint is down, rejects the key, or lacks the model."""
        import openai

        for endpoint, client in zip(self.endpoints, self._clients):
            where = f"endpoint {endpoint.base_url} (teacher '{self.teacher.name}')"
            timeout = min(10.0, self.teacher.timeout_s)
            try:
                raw = await _within(timeout, client.models.with_raw_response.list(timeout=timeout))
                if not _is_models_listing(raw.http_response):
                    kind = raw.http_response.headers.get("content-type", "no content type").split(";")[0]
                    raise self._endpoint_error(
                        f"{where} answered its models listing ({endpoint.base_url}/models) with {kind}, not the "
                        f"OpenAI API; fix base_url in the teacher config (an OpenAI-compatible base_url usually "
                        f"ends in /v1)"
                    )
            except openai.AuthenticationError as exc:
                raise self._endpoint_error(
                    f"{where} rejected the API key from ${endpoint.api_key_env} "
                    f"({self._error_text(exc)}); export a valid key"
                ) from None
            except (openai.APIConnectionError, openai.APITimeoutError, asyncio.TimeoutError):
                raise self._endpoint_error(
                    f"{where} is unreachable; start the server or fix base_url in the teacher config"
                ) from None
            except openai.APIStatusError as exc:
                if exc.status_code >= 500:
                    raise self._endpoint_error(
                        f"{where} answered {exc.status_code} to a models listing; check the server"
                    ) from None
                # some servers do not implement /models; the first request will tell

    async def run(
        self, requests: list[ChatRequest], on_result: Callable[[ChatResult], None] | None = None
    ) -> list[ChatResult]:
        """Results in request order. Raises BudgetExceeded after the in-flight requests finish if the budget ran out.

        Requests with the same key are sent once (and not at all when the journal has them). If anything raises
        meanwhile, the sends this call started are cancelled and awaited before the exception propagates.
        """
        runner = asyncio.current_task()
        if runner is not None:
            self._runners.add(runner)
        results: list[ChatResult | None] = [None] * len(requests)
        waiting: dict[asyncio.Future, list[int]] = {}  # a send -> the positions waiting for it
        owned: list[asyncio.Task] = []  # the sends this call started (only these are its to cancel)
        finished: asyncio.Queue = asyncio.Queue()
        try:
            by_key: dict[str, asyncio.Future] = {}
            for i, request in enumerate(requests):
                key = self.key(request)
                if key in by_key:
                    self.counts["deduplicated"] += 1
                    waiting[by_key[key]].append(i)
                    continue
                record = self.journal.done(key)
                if record is not None:
                    self.counts["cached"] += 1
                    results[i] = _from_record(record, cached=True)
                    if on_result is not None:
                        on_result(results[i])
                    continue
                send = self._shared_send(key)
                if send is None:
                    send = self._start(key, request)
                    owned.append(send)
                else:
                    self.counts["deduplicated"] += 1
                by_key[key] = send
                waiting[send] = [i]
                send.add_done_callback(finished.put_nowait)
            remaining = len(waiting)
            while remaining:
                send = await finished.get()
                remaining -= 1
                if send.cancelled() and send not in owned:
                    # another caller's send was called off; this call still wants the answer, so it sends itself
                    positions = waiting.pop(send)
                    send = self._start(self.key(requests[positions[0]]), requests[positions[0]])
                    owned.append(send)
                    waiting[send] = positions
                    send.add_done_callback(finished.put_nowait)
                    remaining += 1
                    continue
                result = send.result()  # raises what the send raised (EndpointError, CancelledError, ...)
                for i in waiting[send]:
                    results[i] = result
                    if on_result is not None:
                        on_result(result)
        except BaseException:
            await _cancel_and_wait(owned)
            raise
        finally:
            for send in waiting:
                send.remove_done_callback(finished.put_nowait)
            self._runners.discard(runner)
        if any(r.status == "skipped" for r in results):
            raise BudgetExceeded(results)
        return results

    async def close(self) -> None:
        """Cancel and await whatever is still running on this client (a run cut short by Ctrl-C), then disconnect."""
        current = asyncio.current_task()
        await _cancel_and_wait([t for t in self._runners if t is not current] + list(self._tasks))
        for client in self._clients:
            await client.close()

    # -- internals ----------------------------------------------------------------------------------------------------

    def _shared_send(self, key: str) -> asyncio.Future | None:
        """The send of this key another caller has in flight on this loop, if any."""
        send = self.journal.in_flight.get(key)
        if send is None or send.done() or send.get_loop() is not asyncio.get_running_loop():
            return None
        return send

    def _start(self, key: str, request: ChatRequest) -> asyncio.Task:
        task = asyncio.ensure_future(self._fetch(key, request))
        self._tasks.add(task)
        self.journal.in_flight[key] = task

        def forget(done: asyncio.Task) -> None:
            self._tasks.discard(done)
            if self.journal.in_flight.get(key) is done:
                del self.journal.in_flight[key]

        task.add_done_callback(forget)
        return task

    async def _fetch(self, key: str, request: ChatRequest) -> ChatResult:
        async with self._semaphore:
            # another caller may have finished this key while this one queued for a slot
            record = self.journal.done(key)
            if record is not None:
                self.counts["cached"] += 1
                return _from_record(record, cached=True)
            if self.budget.exhausted:
                self.counts["skipped"] += 1
                return ChatResult(key, "skipped", error="max_cost_usd reached")
            return await self._send(key, request)

    def _pick(self) -> int:
        now = time.monotonic()
        for _ in range(len(self.endpoints)):
            i = next(self._next)
            if self._cooldown_until[i] <= now:
                return i
        return min(range(len(self.endpoints)), key=lambda j: self._cooldown_until[j])

    def _backoff(self, attempt: int) -> float:
        cap = min(self.teacher.backoff_max_s, self.teacher.backoff_base_s * (2**attempt))
        return self._rng.uniform(0, cap)  # full jitter: retries of many requests spread out

    async def _send(self, key: str, request: ChatRequest) -> ChatResult:
        import openai

        params = {**self.teacher.sampling, **request.params}
        last_error = ""
        attempts = 0
        endpoint = self.endpoints[0]
        for attempt in range(self.teacher.max_retries + 1):
            attempts = attempt + 1
            if self._rpm:
                await self._rpm.take(1)
            if self._tpm:
                await self._tpm.take(estimate_tokens(request.messages) + int(params.get("max_tokens", 256)))
            i = self._pick()
            endpoint, client = self.endpoints[i], self._clients[i]
            self.counts["sent"] += 1
            delay = None
            # Only the call and the reading of its reply are in here: once a reply has been read it is paid for,
            # and whatever fails after that must not send the request again.
            try:
                response = await _within(
                    self.teacher.timeout_s,
                    client.chat.completions.create(model=endpoint.model, messages=request.messages, **params),
                )
                reply = _read_reply(response)
            except openai.RateLimitError as exc:
                delay = _retry_after(exc)
                if delay is None:
                    delay = self._backoff(attempt)
                self._cooldown_until[i] = time.monotonic() + delay
                last_error = "429 rate limited"
            except openai.BadRequestError as exc:
                fitted = _fit_max_tokens(exc, params)
                if fitted is None:
                    return self._record_failure(key, endpoint, attempts, f"400: {self._error_text(exc)}")
                logger.info(
                    "context length exceeded at %s: retrying with max_tokens=%d",
                    self._redactor.text(endpoint.base_url),
                    fitted,
                )
                params = {**params, "max_tokens": fitted}
                last_error = "context length"
                delay = 0.0
            except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
                raise self._endpoint_error(
                    f"endpoint {endpoint.base_url} refused the request ({exc.status_code}: "
                    f"{self._error_text(exc)}); check the key in "
                    f"${endpoint.api_key_env}"
                ) from None
            except openai.NotFoundError:
                raise self._endpoint_error(
                    f"endpoint {endpoint.base_url} does not serve model '{endpoint.model}'; "
                    f"fix 'model' in the teacher config"
                ) from None
            except openai.APIStatusError as exc:
                if exc.status_code < 500 and exc.status_code not in (408, 409):
                    return self._record_failure(key, endpoint, attempts, f"{exc.status_code}: {self._error_text(exc)}")
                last_error = f"{exc.status_code} server error: {self._error_text(exc)}"
            except (openai.APITimeoutError, asyncio.TimeoutError):
                last_error = f"timeout (no complete reply within {self.teacher.timeout_s:g} s)"
            except openai.APIConnectionError:
                last_error = "connection dropped"
            except (openai.APIResponseValidationError, ValueError) as exc:  # not JSON, cut short, or no choices
                # the parser's own message names a byte offset that differs per reply; failures should group
                last_error = f"malformed reply ({exc if isinstance(exc, MalformedReply) else type(exc).__name__})"
            else:
                return self._record_success(key, endpoint, reply, attempts, params)
            if attempt == self.teacher.max_retries:
                break
            self.counts["retries"] += 1
            await asyncio.sleep(self._backoff(attempt) if delay is None else delay)
        return self._record_failure(key, endpoint, attempts, f"gave up after {attempts} attempts: {last_error}")

    def _record_success(self, key, endpoint: Endpoint, reply: _Reply, attempts: int, params: dict) -> ChatResult:
        cost, cost_error = self._cost(endpoint.model, reply.prompt_tokens, reply.completion_tokens)
        status = "truncated" if reply.finish_reason == "length" else "ok"
        record = {
            "key": key,
            "status": status,
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
        record = self._append(record)  # durable before the result is used
        self.budget.spent_usd += cost
        self.counts[status] += 1
        return _from_record(record)

    def _record_failure(self, key, endpoint: Endpoint, attempts: int, error: str) -> ChatResult:
        record = self._append(
            {
                "key": key,
                "status": "failed",
                "error": error,
                "model": endpoint.model,
                "endpoint": endpoint.base_url,
                "attempts": attempts,
                "cost_usd": 0.0,
                "time": time.time(),
            }
        )
        self.counts["failed"] += 1
        logger.warning("request %s failed: %s", key[:12], record["error"])
        return _from_record(record)

    def _append(self, record: dict) -> dict:
        record = self._redactor.value(record)
        self.journal.append(record)
        return record

    def _cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> tuple[float, str]:
        """USD for a reply, and "" or why it could not be priced. Never raises: the reply is already paid for."""
        try:
            cost = request_cost_usd(self.teacher.price(model), prompt_tokens, completion_tokens)
            if not math.isfinite(cost) or cost < 0:
                raise ValueError(f"they give a cost of {cost}")
            return cost, ""
        except Exception as exc:  # noqa: BLE001 - any failure here would otherwise cost a second payment
            error = self._redactor.text(
                f"prices for model '{model}' in teacher '{self.teacher.name}' are unusable "
                f"({type(exc).__name__}: {exc}); fix 'prices' in the teacher config"
            )
            if model not in self._unpriced:
                self._unpriced.add(model)
                logger.warning("%s; its replies are journaled at cost 0 and max_cost_usd cannot count them", error)
            return 0.0, error

    def _error_text(self, exc) -> str:
        # redact before cutting, so a key that straddles the cut cannot leave a prefix behind
        return self._redactor.text(_message(exc))[:_ERROR_CHARS]

    def _endpoint_error(self, message: str) -> EndpointError:
        return EndpointError(self._redactor.text(message))


def _is_models_listing(response) -> bool:
    """Whether a 200 reply to GET /models is the OpenAI API's JSON list (not a web page or another service)."""
    try:
        body = json.loads(response.content)
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("data"), list)


async def _within(seconds: float | None, awaitable: Awaitable):
    """``awaitable`` under a total deadline: httpx's timeout is per read, and a reply dripped slowly resets it."""
    if not seconds:
        return await awaitable
    if hasattr(asyncio, "timeout"):  # Python 3.11+: no extra task per request
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)


async def _cancel_and_wait(tasks: list) -> None:
    """Cancel the unfinished tasks, wait for all of them, and mark every outcome as seen.

    Whatever a task raised is either propagated by the caller already or moot; fetching it here keeps asyncio
    from reporting "Task exception was never retrieved" when the tasks are collected.
    """
    for task in tasks:
        if not task.done():
            task.cancel()
    if tasks:
        await asyncio.wait(tasks)
    for task in tasks:
        if not task.cancelled():
            task.exception()


def _read_reply(response) -> _Reply:
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
    return _Reply(
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


def _from_record(record: dict, cached: bool = False) -> ChatResult:
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


def request_cost_usd(price: tuple[float, float], prompt_tokens: int, completion_tokens: int) -> float:
    """USD for a request from its token counts and the model's (input, output) prices in USD per 1M tokens."""
    price_in, price_out = price
    return (prompt_tokens * float(price_in) + completion_tokens * float(price_out)) / 1e6


def estimate_tokens(messages: list) -> int:
    """Tokens a chat request's messages take before any tokenizer is at hand: about 4 characters a token, plus a
    few a message for the chat template's role markers."""
    return sum(len(str(m.get("content", ""))) for m in messages) // 4 + 4 * len(messages)


def _retry_after(exc) -> float | None:
    """The wait a 429 asks for: ``retry-after-ms``, else ``Retry-After`` in seconds or as an HTTP date."""
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        seconds = _seconds_or_date(value.strip(), scale)
        if seconds is not None:
            return min(MAX_RETRY_AFTER_S, max(0.0, seconds))
    return None


def _seconds_or_date(value: str, scale: float) -> float | None:
    try:
        seconds = float(value) * scale
        return seconds if math.isfinite(seconds) else None
    except ValueError:
        pass
    if scale != 1.0:
        return None  # only Retry-After itself may be a date
    try:
        when = email.utils.parsedate_to_datetime(value)  # RFC 7231 IMF-fixdate, also the obsolete forms
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC with no zone claimed
        when = when.replace(tzinfo=timezone.utc)
    return (when - datetime.now(timezone.utc)).total_seconds()


def _message(exc) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        body = body.get("error", body)
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
    return str(exc)


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
