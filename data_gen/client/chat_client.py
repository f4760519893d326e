"""ChatClient: one role's endpoints behind one object that sends requests through the journal, once each."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Callable

from ..endpoints import Endpoint, TeacherConfig
from ..journal import Journal, request_key
from .aio import cancel_and_wait, within
from .costs import Budget, estimate_tokens, reply_cost
from .errors import BudgetExceeded, EndpointError
from .failures import attempt_failure
from .limits import EndpointRotation, TokenBucket
from .reachability import check_reachable
from .redaction import Redactor
from .replies import Reply, read_reply
from .results import ChatRequest, ChatResult, failure_record, result_from_record, success_record

logger = logging.getLogger(__name__)


class _Batch:
    """One ``run``'s bookkeeping: its results so far, which positions wait for which send, and its own sends."""

    def __init__(self, size: int, on_result: Callable[[ChatResult], None] | None):
        self.results: list[ChatResult | None] = [None] * size
        self.waiting: dict[asyncio.Future, list[int]] = {}  # a send -> the positions waiting for it
        self.owned: list[asyncio.Task] = []  # the sends this run started (only these are its to cancel)
        self.finished: asyncio.Queue = asyncio.Queue()
        self._on_result = on_result

    def watch(self, send: asyncio.Future, positions: list[int]) -> None:
        self.waiting[send] = positions
        send.add_done_callback(self.finished.put_nowait)

    def deliver(self, positions: list[int], result: ChatResult) -> None:
        for i in positions:
            self.results[i] = result
            if self._on_result is not None:
                self._on_result(result)

    def detach(self) -> None:
        for send in self.waiting:
            send.remove_done_callback(self.finished.put_nowait)


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
        self._rotation = EndpointRotation(len(self.endpoints))
        self._semaphore = asyncio.Semaphore(teacher.max_concurrency)
        self._rpm = TokenBucket(teacher.requests_per_minute) if teacher.requests_per_minute else None
        self._tpm = TokenBucket(teacher.tokens_per_minute) if teacher.tokens_per_minute else None
        self._rng = random.Random(seed)
        self._tasks: set[asyncio.Task] = set()  # sends started by this client and not finished yet
        self._runners: set[asyncio.Task] = set()  # tasks inside run(), so close() can stop them
        self._unpriced: set[str] = set()  # models whose prices failed, warned about once each
        self.counts = dict.fromkeys(
            ("sent", "cached", "deduplicated", "ok", "truncated", "failed", "retries", "skipped"), 0
        )

    # -- public -----------------------------------------------------------------------------------------------------

    def key(self, request: ChatRequest) -> str:
        return request_key(self.model_id, request.messages, request.params, request.sample)

    async def check_reachable(self) -> None:
        """Fail fast with one clear line when an endpoint is down, rejects the key, or lacks the model."""
        await check_reachable(self.teacher, self.endpoints, self._clients, self._redactor)

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
        batch = _Batch(len(requests), on_result)
        try:
            self._schedule(requests, batch)
            await self._collect(requests, batch)
        except BaseException:
            await cancel_and_wait(batch.owned)
            raise
        finally:
            batch.detach()
            self._runners.discard(runner)
        if any(r.status == "skipped" for r in batch.results):
            raise BudgetExceeded(batch.results)
        return batch.results

    async def close(self) -> None:
        """Cancel and await whatever is still running on this client (a run cut short by Ctrl-C), then disconnect."""
        current = asyncio.current_task()
        await cancel_and_wait([t for t in self._runners if t is not current] + list(self._tasks))
        for client in self._clients:
            await client.close()

    # -- one run: what the journal has, one send per distinct key, the answers in request order -----------------------

    def _schedule(self, requests: list[ChatRequest], batch: _Batch) -> None:
        by_key: dict[str, asyncio.Future] = {}
        for i, request in enumerate(requests):
            key = self.key(request)
            if key in by_key:
                self.counts["deduplicated"] += 1
                batch.waiting[by_key[key]].append(i)
                continue
            record = self.journal.done(key)
            if record is not None:
                self.counts["cached"] += 1
                batch.deliver([i], result_from_record(record, cached=True))
                continue
            send = self._shared_send(key)
            if send is None:
                send = self._start(key, request)
                batch.owned.append(send)
            else:
                self.counts["deduplicated"] += 1
            by_key[key] = send
            batch.watch(send, [i])

    async def _collect(self, requests: list[ChatRequest], batch: _Batch) -> None:
        remaining = len(batch.waiting)
        while remaining:
            send = await batch.finished.get()
            remaining -= 1
            if send.cancelled() and send not in batch.owned:
                # another caller's send was called off; this call still wants the answer, so it sends itself
                positions = batch.waiting.pop(send)
                request = requests[positions[0]]
                send = self._start(self.key(request), request)
                batch.owned.append(send)
                batch.watch(send, positions)
                remaining += 1
                continue
            result = send.result()  # raises what the send raised (EndpointError, CancelledError, ...)
            batch.deliver(batch.waiting[send], result)

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

    # -- one request: a slot, the limits, attempts until a reply, a final failure or the end of the retries ----------

    async def _fetch(self, key: str, request: ChatRequest) -> ChatResult:
        async with self._semaphore:
            # another caller may have finished this key while this one queued for a slot
            record = self.journal.done(key)
            if record is not None:
                self.counts["cached"] += 1
                return result_from_record(record, cached=True)
            if self.budget.exhausted:
                self.counts["skipped"] += 1
                return ChatResult(key, "skipped", error="max_cost_usd reached")
            return await self._send(key, request)

    async def _send(self, key: str, request: ChatRequest) -> ChatResult:
        params = {**self.teacher.sampling, **request.params}
        attempts = 0
        endpoint = self.endpoints[0]
        last_error = ""
        for attempt in range(self.teacher.max_retries + 1):
            attempts = attempt + 1
            await self._within_limits(request, params)
            i = self._rotation.pick()
            endpoint = self.endpoints[i]
            self.counts["sent"] += 1
            # Only the call and the reading of its reply are in here: once a reply has been read it is paid for,
            # and whatever fails after that must not send the request again.
            try:
                reply = await self._ask(i, request, params)
            except Exception as exc:  # attempt_failure raises again what is not an endpoint's failure
                failure = attempt_failure(exc, endpoint, params, self._redactor, self.teacher.timeout_s)
            else:
                return self._record_success(key, endpoint, reply, attempts, params)
            if failure.final:
                return self._record_failure(key, endpoint, attempts, failure.error)
            last_error = failure.error
            if failure.max_tokens is not None:
                params = {**params, "max_tokens": failure.max_tokens}
            delay = failure.delay
            if failure.rate_limited:
                if delay is None:
                    delay = self._backoff(attempt)
                self._rotation.cool_down(i, delay)
            if attempt == self.teacher.max_retries:
                break
            self.counts["retries"] += 1
            await asyncio.sleep(self._backoff(attempt) if delay is None else delay)
        return self._record_failure(key, endpoint, attempts, f"gave up after {attempts} attempts: {last_error}")

    async def _within_limits(self, request: ChatRequest, params: dict) -> None:
        if self._rpm:
            await self._rpm.take(1)
        if self._tpm:
            await self._tpm.take(estimate_tokens(request.messages) + int(params.get("max_tokens", 256)))

    async def _ask(self, i: int, request: ChatRequest, params: dict) -> Reply:
        response = await within(
            self.teacher.timeout_s,
            self._clients[i].chat.completions.create(
                model=self.endpoints[i].model, messages=request.messages, **params
            ),
        )
        return read_reply(response)

    def _backoff(self, attempt: int) -> float:
        cap = min(self.teacher.backoff_max_s, self.teacher.backoff_base_s * (2**attempt))
        return self._rng.uniform(0, cap)  # full jitter: retries of many requests spread out

    def _record_success(self, key, endpoint: Endpoint, reply: Reply, attempts: int, params: dict) -> ChatResult:
        cost, cost_error = reply_cost(
            self.teacher,
            endpoint.model,
            reply.prompt_tokens,
            reply.completion_tokens,
            redactor=self._redactor,
            warned=self._unpriced,
        )
        record = success_record(key, endpoint, reply, attempts, params, cost, cost_error)
        status = record["status"]
        record = self._append(record)  # durable before the result is used
        self.budget.spent_usd += cost
        self.counts[status] += 1
        return result_from_record(record)

    def _record_failure(self, key, endpoint: Endpoint, attempts: int, error: str) -> ChatResult:
        record = self._append(failure_record(key, endpoint, attempts, error))
        self.counts["failed"] += 1
        logger.warning("request %s failed: %s", key[:12], record["error"])
        return result_from_record(record)

    def _append(self, record: dict) -> dict:
        record = self._redactor.value(record)
        self.journal.append(record)
        return record
