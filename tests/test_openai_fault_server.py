"""The scripted OpenAI server, checked from the real openai SDK (and raw sockets for the HTTP layer)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator

import openai
import pytest
from openai_fault_server import ALL_FAULTS, ScriptedOpenAIServer, request_key

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name three  colours,\nplease."},
]
MESSAGE_WORDS = 3 + 4


@pytest.fixture
def server() -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer() as running:
        yield running


_open_clients: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """Close every SDK client a test opened, so no socket outlives its test."""
    yield
    while _open_clients:
        _open_clients.pop().close()


def client_for(server: ScriptedOpenAIServer, timeout: float = 10.0) -> openai.OpenAI:
    client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0, timeout=timeout)
    _open_clients.append(client)
    return client


def raw_exchange(port: int, payload: bytes) -> bytes:
    """Send raw bytes and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# ---- well-formed replies ---------------------------------------------------------------------------


def test_reply_parses_and_usage_counts_words(server):
    reply = client_for(server).chat.completions.create(model="any-model", messages=MESSAGES)

    choice = reply.choices[0]
    assert reply.object == "chat.completion" and reply.model == "any-model"
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert len(choice.message.content.split()) == 8
    usage = reply.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (MESSAGE_WORDS, 8, MESSAGE_WORDS + 8)

    key = request_key({"model": "any-model", "messages": MESSAGES})
    stats = server.stats
    assert stats.attempts == {key: 1} and stats.paid == {key: 1}
    assert (stats.prompt_tokens_billed, stats.completion_tokens_billed) == (MESSAGE_WORDS, 8)
    assert stats["faults"] == {}


def test_content_is_deterministic_and_capped_by_max_tokens(server):
    client = client_for(server)
    first = client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=3)
    again = client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=3)
    other = client.chat.completions.create(model="m", messages=MESSAGES, max_completion_tokens=5, seed=1)

    assert first.choices[0].message.content == again.choices[0].message.content
    assert len(first.choices[0].message.content.split()) == first.usage.completion_tokens == 3
    assert len(other.choices[0].message.content.split()) == other.usage.completion_tokens == 5
    stats = server.stats
    assert sorted(stats.attempts.values()) == [1, 2] and stats.completion_tokens_billed == 3 + 3 + 5


def test_models_endpoint(server):
    assert [model.id for model in client_for(server).models.list()] == ["scripted"]


def test_latency_is_applied():
    with ScriptedOpenAIServer(latency_s=0.25) as server:
        client = client_for(server)
        client.models.list()  # connect outside the timing
        start = time.perf_counter()
        client.chat.completions.create(model="m", messages=MESSAGES)
        assert 0.25 <= time.perf_counter() - start < 1.0


# ---- injected faults, as the SDK sees them ---------------------------------------------------------


def test_fault_429_carries_retry_after():
    with ScriptedOpenAIServer(fault_rate=1.0, faults=("429",), retry_after_s=0.05) as server:
        with pytest.raises(openai.RateLimitError) as caught:
            client_for(server).chat.completions.create(model="m", messages=MESSAGES)
        assert caught.value.response.headers["retry-after"] == "0.05"
        assert caught.value.response.headers["retry-after-ms"] == "50"
        assert caught.value.code == "rate_limit_exceeded" and caught.value.type == "rate_limit_exceeded"
        assert server.stats.faults == {"429": 1} and server.stats.paid == {}


def test_fault_500():
    with ScriptedOpenAIServer(fault_rate=1.0, faults=("500",)) as server:
        with pytest.raises(openai.InternalServerError):
            client_for(server).chat.completions.create(model="m", messages=MESSAGES)
        assert server.stats.faults == {"500": 1} and server.stats.paid == {}


def test_fault_timeout():
    with ScriptedOpenAIServer(fault_rate=1.0, faults=("timeout",), hang_s=2.0) as server:
        start = time.perf_counter()
        with pytest.raises(openai.APITimeoutError):
            client_for(server, timeout=0.2).chat.completions.create(model="m", messages=MESSAGES)
        assert time.perf_counter() - start < 1.5
        assert server.stats.faults == {"timeout": 1} and server.stats.paid == {}


def test_fault_drop():
    with ScriptedOpenAIServer(fault_rate=1.0, faults=("drop",)) as server:
        with pytest.raises(openai.APIConnectionError) as caught:
            client_for(server).chat.completions.create(model="m", messages=MESSAGES)
        assert not isinstance(caught.value, openai.APITimeoutError)
        assert server.stats.faults == {"drop": 1} and server.stats.paid == {}


def test_fault_malformed():
    with ScriptedOpenAIServer(fault_rate=1.0, faults=("malformed",)) as server:
        with pytest.raises((ValueError, openai.APIResponseValidationError)):
            client_for(server).chat.completions.create(model="m", messages=MESSAGES)
        assert server.stats.faults == {"malformed": 1} and server.stats.paid == {}


def test_fault_length_is_paid():
    with ScriptedOpenAIServer(fault_rate=1.0, faults=("length",)) as server:
        reply = client_for(server).chat.completions.create(model="m", messages=MESSAGES)
        assert reply.choices[0].finish_reason == "length"
        assert len(reply.choices[0].message.content.split()) == reply.usage.completion_tokens == 4
        stats = server.stats
        assert stats.faults == {"length": 1} and stats.total_paid == 1
        assert (stats.prompt_tokens_billed, stats.completion_tokens_billed) == (MESSAGE_WORDS, 4)


# ---- request errors ---------------------------------------------------------------------------------


def test_context_length_error_comes_before_faults():
    with ScriptedOpenAIServer(context_window=12, fault_rate=1.0, faults=("500",)) as server:
        with pytest.raises(openai.BadRequestError) as caught:
            client_for(server).chat.completions.create(model="m", messages=MESSAGES, max_tokens=6)
        assert caught.value.code == "context_length_exceeded" and caught.value.param == "messages"
        assert caught.value.type == "invalid_request_error"
        assert caught.value.body["message"] == (
            "This model's maximum context length is 12 tokens. However, you requested 13 tokens "
            "(7 in the messages, 6 in the completion). Please reduce the length of the messages or completion."
        )
        stats = server.stats
        assert stats.faults == {} and stats.paid == {} and stats.context_length_errors == 1

        # Within the window the request proceeds to fault injection.
        with pytest.raises(openai.InternalServerError):
            client_for(server).chat.completions.create(model="m", messages=MESSAGES, max_tokens=5)


def test_streaming_is_refused(server):
    with pytest.raises(openai.BadRequestError, match="(?i)streaming is unsupported"):
        client_for(server).chat.completions.create(model="m", messages=MESSAGES, stream=True)


def test_unknown_route_is_404_with_openai_error(server):
    with pytest.raises(openai.NotFoundError) as caught:
        client_for(server).embeddings.create(model="m", input="hi")
    assert set(caught.value.body) >= {"message", "type", "code"}


# ---- determinism ------------------------------------------------------------------------------------


def outcome(client: openai.OpenAI, body: dict) -> str | None:
    """The fault observed for one attempt, named as the server names it (None for a clean reply)."""
    try:
        reply = client.chat.completions.create(**body)
    except openai.RateLimitError:
        return "429"
    except openai.InternalServerError:
        return "500"
    except openai.APITimeoutError:
        return "timeout"
    except openai.APIConnectionError:
        return "drop"
    except (ValueError, openai.APIResponseValidationError):
        return "malformed"
    return "length" if reply.choices[0].finish_reason == "length" else None


def fault_sequence(seed: int, body: dict, attempts: int) -> tuple[list[str | None], list[str | None]]:
    """(observed, planned) faults for repeated identical attempts against a fresh server."""
    with ScriptedOpenAIServer(seed=seed, fault_rate=0.6, hang_s=1.0) as server:
        client = client_for(server, timeout=0.15)
        observed = [outcome(client, body) for _ in range(attempts)]
        planned = [server.planned_fault(request_key(body), n) for n in range(attempts)]
        assert server.stats.attempts == {request_key(body): attempts}
    return observed, planned


def test_same_seed_and_body_give_the_same_fault_sequence():
    body = {"model": "m", "messages": MESSAGES, "seed": 3}
    first, planned = fault_sequence(11, body, 16)
    second, _ = fault_sequence(11, body, 16)
    assert first == second == planned
    assert len({kind for kind in first if kind is not None}) >= 3  # the draw really mixes kinds
    other_seed, _ = fault_sequence(12, body, 16)
    assert other_seed != first


# ---- HTTP layer -------------------------------------------------------------------------------------


def test_keep_alive_under_concurrency(server):
    async def drive() -> list[openai.types.chat.ChatCompletion]:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        gate = asyncio.Semaphore(32)

        async def one(i: int) -> openai.types.chat.ChatCompletion:
            async with gate:
                return await client.chat.completions.create(model="m", messages=MESSAGES, seed=i)

        try:
            return await asyncio.gather(*(one(i) for i in range(200)))
        finally:
            await client.close()

    replies = asyncio.run(drive())
    assert all(reply.choices[0].finish_reason == "stop" for reply in replies)
    stats = server.stats
    assert stats.requests == 200 and len(stats.paid) == 200 and stats.total_paid == 200
    assert stats.connections <= 32


def test_raw_keep_alive_then_connection_close(server):
    body = json.dumps({"model": "m", "messages": MESSAGES}).encode()
    post = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n" % len(body)
    data = raw_exchange(server.port, post + b"\r\n" + body + post + b"Connection: close\r\n\r\n" + body)
    assert data.count(b"HTTP/1.1 200 OK") == 2
    first, second = data.split(b"HTTP/1.1 200 OK")[1:]
    assert b"Connection: keep-alive" in first and b"Connection: close" in second
    assert server.stats.connections == 1


def test_chunked_body_and_http_1_0(server):
    body = json.dumps({"model": "m", "messages": MESSAGES}).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    head = b"POST /v1/chat/completions HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
    response = raw_exchange(server.port, head + chunked)  # returns only because 1.0 closes by default
    head_out, _, payload = response.partition(b"\r\n\r\n")
    assert head_out.startswith(b"HTTP/1.1 200 OK")
    assert json.loads(payload)["usage"]["prompt_tokens"] == MESSAGE_WORDS


def test_garbage_request_gets_400(server):
    assert raw_exchange(server.port, b"NONSENSE\r\n\r\n").startswith(b"HTTP/1.1 400 ")


def test_stop_releases_port_and_is_idempotent():
    server = ScriptedOpenAIServer(fault_rate=1.0, faults=("timeout",), hang_s=30.0)
    server.start()
    port = server.port
    hung = socket.create_connection(("127.0.0.1", port))
    hung.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
    start = time.perf_counter()
    server.stop()
    server.stop()
    assert time.perf_counter() - start < 2.0  # a hanging request does not hold stop() up
    hung.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with ScriptedOpenAIServer(port=port) as again:
        assert again.base_url == f"http://127.0.0.1:{port}/v1"
        assert [model.id for model in client_for(again).models.list()] == ["scripted"]


def test_rejects_unknown_fault_kinds():
    with pytest.raises(ValueError, match="unknown fault kinds"):
        ScriptedOpenAIServer(faults=("429", "teapot"))
    assert set(ALL_FAULTS) == {"429", "500", "timeout", "drop", "malformed", "length"}
