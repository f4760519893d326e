"""The endpoint client's promises under hostile conditions, each checked against what a real HTTP server billed.

Every test talks to `ScriptedOpenAIServer` on 127.0.0.1 over real sockets: a reply paid for must not be paid
again, a journal with a bad line keeps every good record, a slow drip still times out, duplicates are sent
once, an HTTP-date Retry-After is waited for, an echoed API key is written nowhere, and a run that fails or is
interrupted leaves no task behind.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import random
import time
from types import SimpleNamespace

import pytest
from openai_fault_server import ScriptedOpenAIServer

from data_gen.client import ChatClient, ChatRequest, EndpointError
from data_gen.client.failures import retry_after
from data_gen.endpoints import TeacherConfig
from data_gen.journal import Journal

PRICE_IN, PRICE_OUT = 2.0, 6.0  # USD per 1M tokens
KEY_ENV = "DISTILL_RELIABILITY_TEST_KEY"
SECRET = "sk-test-9f8e7d6c5b4a39281706f5e4d3c2b1a0"


def teacher(*base_urls, key_env: str | None = None, **overrides) -> TeacherConfig:
    config = dict(
        endpoints=[{"base_url": u, "model": "scripted", "api_key_env": key_env} for u in base_urls],
        prices={"scripted": {"input": PRICE_IN, "output": PRICE_OUT}},
        max_concurrency=32,
        timeout_s=2.0,
        max_retries=3,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        name="scripted",
    )
    config.update(overrides)
    return TeacherConfig(**config)


def requests(n: int, tag: str = "q") -> list[ChatRequest]:
    return [
        ChatRequest(
            [{"role": "user", "content": f"{tag} number {i} about topic {i % 7}"}],
            {"max_tokens": 16, "temperature": 0.7},
            sample=i,
        )
        for i in range(n)
    ]


def run(client: ChatClient, reqs, on_result=None):
    async def go():
        try:
            return await client.run(reqs, on_result)
        finally:
            await client.close()

    return asyncio.run(go())


# ---- 1. a paid reply is never paid again ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prices",
    [
        {"scripted": {"input": "two dollars", "output": PRICE_OUT}},
        {"scripted": {"input": float("nan"), "output": PRICE_OUT}},
        {"scripted": "cheap"},
        {"scripted": {"output": PRICE_OUT}},
    ],
    ids=["not-a-number", "nan", "not-a-mapping", "missing-input"],
)
def test_unusable_prices_after_a_good_reply_do_not_buy_it_again(tmp_path, caplog, prices):
    path = str(tmp_path / "journal.jsonl")
    config = teacher()  # validated with good prices, then broken the way a hand-edited config could be
    with ScriptedOpenAIServer() as server:
        config.endpoints = [{"base_url": server.base_url, "model": "scripted", "api_key_env": None}]
        config.prices = prices
        results = run(ChatClient(config, Journal(path)), requests(20))
        stats = server.stats
    assert stats.total_attempts == 20 and len(stats.paid) == 20 and set(stats.paid.values()) == {1}, (
        "each reply received once was paid once, never retried"
    )
    assert all(r.status == "ok" and r.text and r.cost_usd == 0.0 for r in results)
    records = [json.loads(line) for line in open(path)]
    assert len(records) == 20 and all(r["status"] == "ok" and "prices" in r["cost_error"] for r in records)
    assert sum("prices for model 'scripted'" in m for m in caplog.messages) == 1, "one warning, not one per reply"
    with ScriptedOpenAIServer() as server:  # the journal answers a rerun: nothing is sent
        config.endpoints = [{"base_url": server.base_url, "model": "scripted", "api_key_env": None}]
        again = run(ChatClient(config, Journal(path)), requests(20))
        assert server.stats.total_attempts == 0 and all(r.cached for r in again)


# ---- 2. a bad line in the middle of the journal deletes nothing ----------------------------------------------------


def _journal_lines(n: int) -> list[bytes]:
    return [
        (json.dumps({"key": f"k{i:04d}", "status": "ok", "text": f"reply {i}", "cost_usd": 0.001}) + "\n").encode()
        for i in range(n)
    ]


def test_bad_middle_lines_are_skipped_and_every_good_record_is_kept(tmp_path, caplog):
    path = tmp_path / "journal.jsonl"
    lines = _journal_lines(1000)
    lines.insert(9, b'{"key": "k9999", "status": "ok", "te\x00\x00garbage\n')  # line 10: unparsable
    lines.insert(19, b'{"status": "ok", "text": "no key"}\n')  # line 20: an object without a key
    original = b"".join(lines)
    path.write_bytes(original + b'{"key": "k5000", "status": "o')  # and a torn final line
    with caplog.at_level(logging.WARNING, logger="data_gen.journal"):
        journal = Journal(str(path))
    assert len(journal.records) == 1000 and journal.records["k0999"]["text"] == "reply 999"
    assert journal.skipped_lines == 2 and journal.skipped_line_numbers == [10, 20]
    assert journal.spent_usd() == pytest.approx(1.0)
    assert path.read_bytes() == original, "only the torn final line was cut; the bad middle lines stay"
    skipped = [m for m in caplog.messages if "skipped" in m]
    assert len(skipped) == 1 and str(path) in skipped[0] and "line 10, 20" in skipped[0]
    journal.append({"key": "new", "status": "ok", "text": "after"})
    journal.close()
    reopened = Journal(str(path))
    assert len(reopened.records) == 1001 and reopened.skipped_lines == 2
    reopened.close()


def test_only_a_torn_final_line_is_cut_and_a_whole_one_keeps_its_record(tmp_path):
    path = tmp_path / "journal.jsonl"
    good = b"".join(_journal_lines(5))
    path.write_bytes(good + b"not json at all\n")  # unparsable and last: what a crash can leave
    assert len(Journal(str(path)).records) == 5 and path.read_bytes() == good
    whole = json.dumps({"key": "k-last", "status": "ok", "text": "paid"}).encode()
    path.write_bytes(good + whole)  # written completely but for its newline: the record is kept, not re-bought
    journal = Journal(str(path))
    assert journal.done("k-last") is not None and path.read_bytes() == good + whole + b"\n"
    journal.close()


def test_a_corrupt_middle_line_costs_one_resend_not_every_record_after_it(tmp_path):
    path = tmp_path / "journal.jsonl"
    with ScriptedOpenAIServer() as server:
        run(ChatClient(teacher(server.base_url), Journal(str(path))), requests(50))
    lines = path.read_bytes().splitlines(keepends=True)
    lines[9] = b"#corrupt#" + lines[9][1:]  # no longer JSON
    path.write_bytes(b"".join(lines))
    with ScriptedOpenAIServer() as server:
        results = run(ChatClient(teacher(server.base_url), Journal(str(path))), requests(50))
        assert server.stats.total_paid == 1, "only the request whose record was damaged is bought again"
    assert sum(not r.cached for r in results) == 1 and all(r.status == "ok" for r in results)


# ---- 3. a total deadline per attempt -------------------------------------------------------------------------------


def test_a_reply_dripped_byte_by_byte_times_out_within_the_deadline(tmp_path):
    with ScriptedOpenAIServer(fault_rate=1.0, faults=("drip",), drip_s=0.2) as server:
        started = time.monotonic()
        client = ChatClient(teacher(server.base_url, timeout_s=1.0, max_retries=1), Journal(str(tmp_path / "j.jsonl")))
        [result] = run(client, requests(1))
        elapsed = time.monotonic() - started
        stats = server.stats
    # every byte arrives well inside the 1 s read timeout; without a total deadline this takes over a minute
    assert elapsed < 5.0, elapsed
    assert result.status == "failed" and "timeout" in result.error and result.cost_usd == 0.0
    assert stats.total_attempts == 2 and stats.faults == {"drip": 2}


# ---- 4. identical requests are sent once ---------------------------------------------------------------------------


def test_duplicated_requests_in_a_batch_are_paid_once_per_key(tmp_path):
    distinct = requests(30)
    batch = [r for r in distinct for _ in range(3)]
    random.Random(0).shuffle(batch)
    seen = []
    with ScriptedOpenAIServer(latency_s=0.05) as server:
        client = ChatClient(teacher(server.base_url), Journal(str(tmp_path / "j.jsonl")))
        results = run(client, batch, seen.append)
        stats = server.stats
    assert stats.total_attempts == 30 and len(stats.paid) == 30 and set(stats.paid.values()) == {1}
    assert len(results) == len(seen) == 90 and all(r.status == "ok" for r in results)
    by_key = {}
    for request, result in zip(batch, results):
        assert result.key == client.key(request)
        assert by_key.setdefault(result.key, result.text) == result.text, "every caller of a key gets the same reply"
    assert client.counts["sent"] == 30 and client.counts["deduplicated"] == 60


def test_concurrent_runs_sharing_a_journal_send_each_key_once(tmp_path):
    with ScriptedOpenAIServer(latency_s=0.3) as server:
        journal = Journal(str(tmp_path / "j.jsonl"))
        first, second = ChatClient(teacher(server.base_url), journal), ChatClient(teacher(server.base_url), journal)

        async def go():
            try:
                return await asyncio.gather(first.run(requests(20)), first.run(requests(20)), second.run(requests(20)))
            finally:
                await first.close()
                await second.close()

        a, b, c = asyncio.run(go())
        stats = server.stats
    assert stats.total_attempts == 20 and set(stats.paid.values()) == {1}
    assert [r.text for r in a] == [r.text for r in b] == [r.text for r in c]
    assert len(journal.records) == 20 and not journal.in_flight


# ---- 5. Retry-After as an HTTP date ---------------------------------------------------------------------------------


def test_retry_after_http_date_is_waited_for(tmp_path):
    with ScriptedOpenAIServer(fault_rate=1.0, faults=("429_date",), retry_after_s=3.0) as server:
        started = time.monotonic()
        client = ChatClient(teacher(server.base_url, max_retries=1), Journal(str(tmp_path / "j.jsonl")))
        [result] = run(client, requests(1))
        elapsed = time.monotonic() - started
        assert server.stats.total_attempts == 2 and server.stats.total_paid == 0
    assert result.status == "failed" and "429" in result.error
    assert 2.5 <= elapsed < 6.0, f"the retry waited {elapsed:.2f} s for a date 3 s ahead (backoff alone is ms)"


def test_retry_after_forms():
    def exc(**headers):
        return SimpleNamespace(response=SimpleNamespace(headers=headers))

    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert retry_after(exc(**{"retry-after": "7"})) == 7.0
    assert retry_after(exc(**{"retry-after-ms": "250", "retry-after": "7"})) == 0.25
    assert 28 <= retry_after(exc(**{"retry-after": future})) <= 30
    assert retry_after(exc(**{"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0, "a past date: retry now"
    assert retry_after(exc(**{"retry-after": "soon"})) is None


# ---- 6. an echoed API key is written nowhere -----------------------------------------------------------------------


def test_an_api_key_echoed_by_the_server_is_redacted_everywhere(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(KEY_ENV, SECRET)
    path = tmp_path / "journal.jsonl"
    caplog.set_level(logging.DEBUG)
    with (
        ScriptedOpenAIServer(fault_rate=1.0, faults=("400_echo_key",)) as bad_request,
        ScriptedOpenAIServer(fault_rate=1.0, faults=("500_echo_key",)) as server_error,
        ScriptedOpenAIServer(fault_rate=1.0, faults=("401",)) as unauthorized,
    ):
        four = run(ChatClient(teacher(bad_request.base_url, key_env=KEY_ENV), Journal(str(path))), requests(3, "a"))
        five = run(
            ChatClient(teacher(server_error.base_url, key_env=KEY_ENV, max_retries=1), Journal(str(path))),
            requests(3, "b"),
        )
        with pytest.raises(EndpointError) as refused:
            run(ChatClient(teacher(unauthorized.base_url, key_env=KEY_ENV), Journal(str(path))), requests(1, "c"))
        assert bad_request.stats.total_attempts == 3 and server_error.stats.total_attempts == 6
        assert unauthorized.stats.total_attempts == 1
    marker = f"[redacted ${KEY_ENV}]"
    assert all(r.status == "failed" and marker in r.error for r in four + five), "the echo reached the client"
    journal = path.read_text()
    assert SECRET not in journal and journal.count(marker) == 6
    assert SECRET not in caplog.text and marker in caplog.text
    assert SECRET not in str(refused.value) and marker in str(refused.value)


# ---- 7. nothing left running, nothing unretrieved ------------------------------------------------------------------


class LoopWatch:
    """A fresh event loop whose exception handler records what asyncio would have printed."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.reports: list[str] = []
        self.loop.set_exception_handler(lambda loop, context: self.reports.append(context.get("message", "")))

    def finish(self, client: ChatClient) -> None:
        self.loop.run_until_complete(client.close())
        left = asyncio.all_tasks(self.loop)
        self.loop.close()
        gc.collect()  # unretrieved exceptions and pending tasks are reported when collected
        assert not left, f"tasks outlived the client: {left}"
        assert not self.reports, self.reports


def test_an_endpoint_error_cancels_the_rest_of_the_run_and_leaves_nothing_unretrieved(tmp_path):
    watch = LoopWatch()
    with (
        ScriptedOpenAIServer(fault_rate=1.0, faults=("401",)) as refusing,
        ScriptedOpenAIServer(latency_s=3.0) as slow,
    ):
        client = ChatClient(teacher(refusing.base_url, slow.base_url), Journal(str(tmp_path / "j.jsonl")))
        started = time.monotonic()
        with pytest.raises(EndpointError, match="refused the request"):
            watch.loop.run_until_complete(client.run(requests(10)))
        elapsed = time.monotonic() - started
        left = asyncio.all_tasks(watch.loop)
        # requests already on the wire when the error came are counted once the server has read them
        time.sleep(0.5)
        sent = (refusing.stats.total_attempts, slow.stats.total_attempts)
        watch.finish(client)
        assert (refusing.stats.total_attempts, slow.stats.total_attempts) == sent, "nothing sent after the error"
    assert not left, "run() returned with requests still in flight"
    assert elapsed < 2.5, "the error did not wait for the slow replies"
    assert refusing.stats.total_attempts >= 1


def test_ctrl_c_and_cancellation_stop_every_send(tmp_path):
    def interrupt():
        raise KeyboardInterrupt

    with ScriptedOpenAIServer(latency_s=0.5) as server:
        # Ctrl-C arrives while the event loop waits: run_until_complete raises with the run's tasks pending
        watch = LoopWatch()
        client = ChatClient(teacher(server.base_url, max_concurrency=2), Journal(str(tmp_path / "a.jsonl")))
        watch.loop.call_later(0.3, interrupt)
        with pytest.raises(KeyboardInterrupt):
            watch.loop.run_until_complete(client.run(requests(10, "interrupted")))
        watch.finish(client)
        before = server.stats.total_attempts
        assert before <= 2, "only the two requests in flight reached the server; the queued ones were never sent"

        # the run's own task is cancelled (what asyncio.run does on Ctrl-C)
        watch = LoopWatch()
        client = ChatClient(teacher(server.base_url, max_concurrency=2), Journal(str(tmp_path / "b.jsonl")))

        async def cancel_midway():
            task = asyncio.ensure_future(client.run(requests(10, "cancelled")))
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not client._tasks, "the run's sends were awaited before it returned"

        watch.loop.run_until_complete(cancel_midway())
        watch.finish(client)
        assert server.stats.total_attempts - before <= 2
