"""The endpoint client against a real HTTP server that injects faults: nothing lost, nothing paid twice."""

from __future__ import annotations

import asyncio
import time

import pytest
from openai_fault_server import ScriptedOpenAIServer

from data_gen.client import ChatClient, ChatRequest, EndpointError, TokenBucket, estimate_tokens
from data_gen.endpoints import TeacherConfig
from data_gen.journal import Journal

PRICE_IN, PRICE_OUT = 2.0, 6.0  # USD per 1M tokens


def teacher(*base_urls, **overrides) -> TeacherConfig:
    config = dict(
        endpoints=[{"base_url": u, "model": "scripted", "api_key_env": None} for u in base_urls],
        prices={"scripted": {"input": PRICE_IN, "output": PRICE_OUT}},
        max_concurrency=32,
        timeout_s=1.0,
        max_retries=12,
        backoff_base_s=0.01,
        backoff_max_s=0.1,
        name="scripted",
    )
    config.update(overrides)
    return TeacherConfig(**config)


def requests(n: int, max_tokens: int = 16) -> list[ChatRequest]:
    return [
        ChatRequest(
            [{"role": "user", "content": f"question number {i} about topic {i % 7}"}],
            {"max_tokens": max_tokens, "temperature": 0.7},
            sample=i,
        )
        for i in range(n)
    ]


def run(client: ChatClient, reqs):
    async def go():
        try:
            return await client.run(reqs)
        finally:
            await client.close()

    return asyncio.run(go())


def test_600_requests_with_30_percent_faults_all_complete_once_and_are_costed_exactly(tmp_path):
    with ScriptedOpenAIServer(fault_rate=0.3, hang_s=3.0, retry_after_s=0.02, seed=1) as server:
        journal = Journal(str(tmp_path / "journal.jsonl"))
        # Each attempt has a total deadline of timeout_s. A reply the server has billed but the client has not read
        # by then is paid again on retry, as a provider would bill it: with 32 requests in flight against a server
        # sharing this interpreter, 1 s is within reach of a busy machine's scheduling, 2.5 s is not.
        results = run(ChatClient(teacher(server.base_url, timeout_s=2.5), journal), requests(600))
        stats = server.stats
    assert len(results) == 600 and all(r.status in ("ok", "truncated") for r in results)
    faults = sum(stats.faults.values())
    assert faults >= 0.2 * stats.total_attempts, (faults, stats.total_attempts)
    assert set(stats.faults) == {"429", "500", "timeout", "drop", "malformed", "length"}
    assert len(stats.paid) == 600 and set(stats.paid.values()) == {1}, "every request paid exactly once"
    assert sum(r.status == "truncated" for r in results) == stats.faults["length"], (
        "length replies flagged, not retried"
    )
    prompt = sum(r.prompt_tokens for r in results)
    completion = sum(r.completion_tokens for r in results)
    assert (prompt, completion) == (stats.prompt_tokens_billed, stats.completion_tokens_billed)
    expected = (prompt * PRICE_IN + completion * PRICE_OUT) / 1e6
    assert sum(r.cost_usd for r in results) == pytest.approx(expected, rel=1e-12)
    journal.close()
    assert Journal(str(tmp_path / "journal.jsonl")).spent_usd() == pytest.approx(expected, rel=1e-12)


def test_rerun_sends_nothing_already_journaled(tmp_path):
    path = str(tmp_path / "journal.jsonl")
    with ScriptedOpenAIServer() as server:
        first = run(ChatClient(teacher(server.base_url), Journal(path)), requests(50))
        second = run(ChatClient(teacher(server.base_url), Journal(path)), requests(50))
        assert server.stats.total_attempts == 50
    assert [r.text for r in first] == [r.text for r in second] and all(r.cached for r in second)


def test_retry_after_is_honoured_and_failures_are_retried_on_the_next_run(tmp_path):
    path = str(tmp_path / "journal.jsonl")
    with ScriptedOpenAIServer(fault_rate=1.0, faults=("429",), retry_after_s=0.3) as server:
        started = time.monotonic()
        [result] = run(
            ChatClient(teacher(server.base_url, max_retries=2, backoff_base_s=0.001), Journal(path)), requests(1)
        )
        elapsed = time.monotonic() - started
        assert server.stats.total_attempts == 3
    assert result.status == "failed" and "429" in result.error
    assert elapsed >= 0.6, "two waits of Retry-After=0.3 s (the backoff alone would be a few ms)"
    with ScriptedOpenAIServer() as server:
        [again] = run(ChatClient(teacher(server.base_url), Journal(path)), requests(1))
        assert again.status == "ok" and server.stats.total_attempts == 1


def test_context_length_error_is_retried_with_a_max_tokens_that_fits(tmp_path):
    with ScriptedOpenAIServer(context_window=40) as server:
        journal = Journal(str(tmp_path / "journal.jsonl"))
        [result] = run(ChatClient(teacher(server.base_url), journal), requests(1, max_tokens=100))
        assert server.stats.context_length_errors == 1
    prompt_words = len("question number 0 about topic 0".split())
    assert result.status == "ok"
    assert journal.records[result.key]["max_tokens"] == 40 - prompt_words - 1


def test_replicas_share_the_load(tmp_path):
    with ScriptedOpenAIServer() as a, ScriptedOpenAIServer() as b:
        results = run(ChatClient(teacher(a.base_url, b.base_url), Journal(str(tmp_path / "j.jsonl"))), requests(40))
        assert all(r.status == "ok" for r in results)
        assert a.stats.total_paid == 20 and b.stats.total_paid == 20


def test_requests_per_minute_limit_is_respected(tmp_path):
    with ScriptedOpenAIServer() as server:
        started = time.monotonic()
        run(
            ChatClient(teacher(server.base_url, requests_per_minute=600), Journal(str(tmp_path / "j.jsonl"))),
            requests(40),
        )
        elapsed = time.monotonic() - started
    # 10 requests/s with a burst of 20: 40 requests need at least 2 s
    assert elapsed >= 1.9


class FakeClock:
    """A clock that only moves when the limiter sleeps: the test checks what was charged, not wall time."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_tokens_per_minute_charges_requests_larger_than_the_burst_in_full():
    clock = FakeClock()
    bucket = TokenBucket(60_000, clock=clock, sleep=clock.sleep)  # 1000 tokens/s, burst 2000
    size, n = 20_000, 10  # each request is 10 bursts

    async def go():
        await asyncio.gather(*(bucket.take(size) for _ in range(n)))

    asyncio.run(go())
    assert bucket.charged == size * n
    # in T seconds the bucket admits at most burst + rate x T + one request
    assert clock.now >= (size * n - bucket.capacity - size) / bucket.rate
    assert clock.now == pytest.approx((n - 1) * size / bucket.rate, rel=1e-3)


def test_client_charges_the_token_limiter_the_whole_request(tmp_path):
    clock = FakeClock()
    reqs = requests(5, max_tokens=5_000)
    with ScriptedOpenAIServer() as server:
        client = ChatClient(teacher(server.base_url, tokens_per_minute=30_000), Journal(str(tmp_path / "j.jsonl")))
        client._tpm = TokenBucket(30_000, clock=clock, sleep=clock.sleep)  # 500 tokens/s, burst 1000
        results = run(client, reqs)
    assert all(r.status == "ok" for r in results)
    estimated = sum(estimate_tokens(r.messages) + 5_000 for r in reqs)
    assert client._tpm.charged == estimated
    assert clock.now >= (estimated - 1_000 - 5_100) / 500


def test_unreachable_endpoint_is_a_one_line_error_naming_it(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = ChatClient(teacher(f"http://127.0.0.1:{port}/v1"), Journal(str(tmp_path / "j.jsonl")))
    with pytest.raises(EndpointError) as err:
        asyncio.run(client.check_reachable())
    assert f"127.0.0.1:{port}" in str(err.value) and "unreachable" in str(err.value) and "\n" not in str(err.value)


def test_torn_last_journal_line_is_dropped(tmp_path):
    path = tmp_path / "journal.jsonl"
    with ScriptedOpenAIServer() as server:
        run(ChatClient(teacher(server.base_url), Journal(str(path))), requests(3))
    with open(path, "ab") as f:
        f.write(b'{"key": "abc", "status": "ok", "te')  # a write cut short by a crash
    journal = Journal(str(path))
    assert len(journal.records) == 3 and path.read_bytes().endswith(b"\n")
