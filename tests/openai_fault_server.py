"""A scripted HTTP server that speaks the OpenAI chat-completions API and injects faults on purpose.

It exists so that an endpoint client can be exercised over real sockets: every reply, every fault
and every billed token is a pure function of (seed, request body, attempt number), so a test can
predict what the client must have seen and check what it paid for.

Usage::

    with ScriptedOpenAIServer(fault_rate=0.3, seed=7) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        ...
        assert server.stats.paid[key] == 1

The HTTP/1.1 layer is written directly on ``asyncio.start_server`` (keep-alive, ``Connection:
close``, Content-Length and chunked request bodies) so that it stays cheap enough to benchmark a
client at a few hundred requests per second on a small machine.

Behaviour worth knowing when writing tests against it:

* The request key is the sha256 of the body's canonical JSON (sorted keys); see `request_key`.
  Attempts are numbered per key from 0, and attempt ``n`` of a key faults iff
  `ScriptedOpenAIServer.planned_fault` says so.
* ``prompt_tokens`` is the number of whitespace-separated words across all message contents; a
  reply has ``min(completion_tokens, max_tokens)`` words (``max_completion_tokens`` wins over
  ``max_tokens``).
* ``latency_s`` is slept before every answer that a model would have produced (200s, including the
  "length" and "malformed" faults, and 500s); gatekeeping answers (400, 404, 429) are immediate.
* The context-window check uses the requested max tokens, or ``completion_tokens`` when the request
  names none, and happens before fault injection.
* A "timeout" fault holds the request for ``hang_s`` (or until the client hangs up) and then closes
  the connection without answering.
* `EXTRA_FAULTS` are never drawn unless named in ``faults``: "drip" sends a paid reply one body byte
  every ``drip_s`` (no single read ever waits long, so only a total deadline ends it); "429_date"
  is a 429 whose only hint is ``Retry-After`` as an HTTP date at least ``retry_after_s`` ahead;
  "401", "400_echo_key" and "500_echo_key" are errors whose message repeats the bearer token the
  request carried (the 500 after ``latency_s``, the others at once), as careless proxies do.
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import hashlib
import json
import math
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, NamedTuple

ALL_FAULTS: tuple[str, ...] = ("429", "500", "timeout", "drop", "malformed", "length")
# Opt-in kinds: accepted in ``faults`` but not part of the default mix, so existing scripts draw as before.
EXTRA_FAULTS: tuple[str, ...] = ("drip", "429_date", "401", "400_echo_key", "500_echo_key")
MODEL_ID = "scripted"

# Small, fixed vocabulary: replies only need to be deterministic and countable, not meaningful.
_VOCAB: tuple[str, ...] = tuple(
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
    "quebec romeo sierra tango uniform victor whiskey xray yankee zulu amber basil cedar dune ember fern "
    "grove heath iris jade kelp lotus maple nectar olive pearl quartz reed sage thyme umber violet willow "
    "yarrow zinnia acorn birch clover daisy elm flint garnet hazel ivy juniper laurel moss nettle".split()
)
assert len(_VOCAB) == 64  # byte & 63 indexes it without bias

_REASONS: dict[int, str] = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    413: "Content Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
}
_MAX_BODY_BYTES = 64 * 1024 * 1024
_HEADER_LIMIT = 64 * 1024


# --------------------------------------------------------------------------------------------------
# Pure, deterministic pieces (usable by tests to predict what the server does)
# --------------------------------------------------------------------------------------------------


def canonical_json(body: Any) -> bytes:
    """The byte form that identifies a request body regardless of key order or spacing."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def request_key(body: Any) -> str:
    """sha256 hex digest of the canonical JSON of a request body: the identity of a logical request."""
    return hashlib.sha256(canonical_json(body)).hexdigest()


def fault_for(seed: int, key: str, attempt: int, fault_rate: float, faults: tuple[str, ...]) -> str | None:
    """The fault injected on attempt number `attempt` (0-based) of request `key`, or None."""
    if fault_rate <= 0.0 or not faults:
        return None
    digest = hashlib.sha256(f"{seed}:{key}:{attempt}".encode()).digest()
    draw = int.from_bytes(digest[:8], "big") / 2.0**64
    if draw >= fault_rate:
        return None
    return faults[int.from_bytes(digest[8:16], "big") % len(faults)]


def reply_words(key: str, n_words: int) -> str:
    """Deterministic reply content of exactly `n_words` words, derived from the request key."""
    words: list[str] = []
    block = 0
    while len(words) < n_words:
        digest = hashlib.sha256(f"{key}:{block}".encode()).digest()
        words.extend(_VOCAB[byte & 63] for byte in digest[: n_words - len(words)])
        block += 1
    return " ".join(words)


def count_prompt_words(messages: list[Any]) -> int:
    """Whitespace-separated words across all message contents (text parts of multi-part contents too)."""
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += len(content.split())
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    total += len(part["text"].split())
    return total


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    """An OpenAI-style error document."""
    doc = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return json.dumps(doc, separators=(",", ":")).encode()


# --------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerStats:
    """A consistent snapshot of what the server has seen and billed; also readable as ``stats["paid"]``."""

    requests: int = 0  # HTTP requests parsed, all routes
    connections: int = 0  # TCP connections accepted (fewer than requests when keep-alive works)
    attempts: dict[str, int] = field(default_factory=dict)  # chat-completion requests received per key
    paid: dict[str, int] = field(default_factory=dict)  # well-formed 200 replies per key
    prompt_tokens_billed: int = 0
    completion_tokens_billed: int = 0
    faults: dict[str, int] = field(default_factory=dict)  # injected faults by kind
    context_length_errors: int = 0

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)

    @property
    def total_attempts(self) -> int:
        return sum(self.attempts.values())

    @property
    def total_paid(self) -> int:
        return sum(self.paid.values())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Ledger:
    """Mutable counters behind a lock; the serving thread writes, any thread may snapshot."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.connections = 0
        self.attempts: Counter[str] = Counter()
        self.paid: Counter[str] = Counter()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.faults: Counter[str] = Counter()
        self.context_length_errors = 0

    def connection(self) -> None:
        with self._lock:
            self.connections += 1

    def request(self) -> None:
        with self._lock:
            self.requests += 1

    def attempt(self, key: str) -> int:
        """Record an attempt and return its 0-based number for this key."""
        with self._lock:
            number = self.attempts[key]
            self.attempts[key] = number + 1
            return number

    def fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def context_error(self) -> None:
        with self._lock:
            self.context_length_errors += 1

    def pay(self, key: str, prompt_tokens: int, completion_tokens: int) -> None:
        with self._lock:
            self.paid[key] += 1
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens

    def snapshot(self) -> ServerStats:
        with self._lock:
            return ServerStats(
                requests=self.requests,
                connections=self.connections,
                attempts=dict(self.attempts),
                paid=dict(self.paid),
                prompt_tokens_billed=self.prompt_tokens,
                completion_tokens_billed=self.completion_tokens,
                faults=dict(self.faults),
                context_length_errors=self.context_length_errors,
            )


# --------------------------------------------------------------------------------------------------
# Minimal HTTP/1.1
# --------------------------------------------------------------------------------------------------


class _Request(NamedTuple):
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


class _Reply(NamedTuple):
    """What to do with a request: send a response, or one of the connection-level faults."""

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    action: str = "send"  # "send" | "drop" | "hang" | "drip"
    delay_s: float = 0.0


class _HttpError(Exception):
    """A request the server cannot parse; answered with `status` and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _wants_keep_alive(version: str, headers: dict[str, str]) -> bool:
    tokens = {token.strip() for token in headers.get("connection", "").lower().split(",")}
    if version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _HttpError(400, f"malformed request line {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise _HttpError(400, f"malformed header line {line!r}")
        headers[name.strip().lower()] = value.strip()
    method, target, version = parts
    return method, target.split("?", 1)[0], version, headers


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    size_total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            # Trailers (rarely sent) end with an empty line; skip them.
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
            return b"".join(chunks)
        size_total += size
        if size_total > _MAX_BODY_BYTES:
            raise _HttpError(413, "request body too large")
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        try:
            return await _read_chunked(reader)
        except (ValueError, asyncio.LimitOverrunError) as exc:
            raise _HttpError(400, "malformed chunked body") from exc
    length_text = headers.get("content-length")
    if length_text is None:
        return b""
    if not length_text.isdigit():
        raise _HttpError(400, f"bad Content-Length {length_text!r}")
    length = int(length_text)
    if length > _MAX_BODY_BYTES:
        raise _HttpError(413, "request body too large")
    return await reader.readexactly(length) if length else b""


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    """The next request on the connection, or None when the client closed it between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise _HttpError(400, "connection closed inside a request head") from exc
        return None
    except asyncio.LimitOverrunError as exc:
        raise _HttpError(431, "request head too large") from exc
    method, path, version, headers = _parse_head(head[:-4])
    body = await _read_body(reader, headers)
    return _Request(method, path, headers, body, _wants_keep_alive(version, headers))


def _encode_response(status: int, body: bytes, headers: tuple[tuple[str, str], ...], keep_alive: bool) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: keep-alive" if keep_alive else "Connection: close",
    ]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _abort_with_reset(writer: asyncio.StreamWriter) -> None:
    """Close so the peer sees a reset, not an orderly end: the rudest way a provider can fail."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


async def _until_eof(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


# --------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------


class ScriptedOpenAIServer:
    """OpenAI-compatible chat-completions server on a background thread, with deterministic faults.

    Args:
        latency_s: sleep before every model-produced answer (never blocks the event loop).
        fault_rate: probability that an attempt is faulted.
        faults: fault kinds drawn uniformly when an attempt is faulted; see `ALL_FAULTS`.
        seed: makes fault decisions reproducible across server instances.
        hang_s: how long a "timeout" fault holds the request before closing the connection.
        retry_after_s: value of ``Retry-After`` on 429s (``retry-after-ms`` carries the same delay).
        completion_tokens: words in a full reply (capped by the request's max tokens).
        context_window: when set, prompt + requested tokens above it gets a 400 context-length error.
        host, port: where to listen; port 0 picks a free port.
        drip_s: pause between the body bytes of a "drip" reply.
    """

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        fault_rate: float = 0.0,
        faults: tuple[str, ...] = ALL_FAULTS,
        seed: int = 0,
        hang_s: float = 30.0,
        retry_after_s: float = 0.05,
        completion_tokens: int = 8,
        context_window: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        responder: Callable[[dict[str, Any]], str | dict[str, Any] | None] | None = None,
        drip_s: float = 0.2,
    ) -> None:
        unknown = sorted(set(faults) - set(ALL_FAULTS) - set(EXTRA_FAULTS))
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; choose from {list(ALL_FAULTS) + list(EXTRA_FAULTS)}")
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be in [0, 1], got {fault_rate}")
        self.latency_s = latency_s
        self.fault_rate = fault_rate
        self.faults = tuple(faults)
        self.seed = seed
        self.hang_s = hang_s
        self.retry_after_s = retry_after_s
        self.completion_tokens = completion_tokens
        self.context_window = context_window
        # scripts the reply content (a judge, say): body -> text, or {"content": text, "logprobs": choice logprobs}
        self.responder = responder
        self.drip_s = drip_s
        self.host = host
        self.port = port
        self._ledger = _Ledger()
        self._lifecycle = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._start_error: BaseException | None = None
        self._writers: set[asyncio.StreamWriter] = set()  # open connections, for shutdown
        self._tasks: set[asyncio.Task[None]] = set()  # asyncio holds tasks weakly; these must not vanish
        self._models_body = json.dumps(
            {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "scripted"}]},
            separators=(",", ":"),
        ).encode()

    # ---- lifecycle -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def stats(self) -> ServerStats:
        return self._ledger.snapshot()

    def planned_fault(self, key: str, attempt: int) -> str | None:
        """The fault this server injects on attempt `attempt` (0-based) of request `key`."""
        return fault_for(self.seed, key, attempt, self.fault_rate, self.faults)

    def start(self) -> str:
        """Start serving on a background thread; returns the base URL once the socket is listening."""
        with self._lifecycle:
            if self._thread is not None:
                raise RuntimeError("server already started")
            ready = threading.Event()
            self._start_error = None
            thread = threading.Thread(target=self._run, args=(ready,), name="scripted-openai-server", daemon=True)
            thread.start()
            ready.wait()
            if self._start_error is not None:
                thread.join()
                raise self._start_error
            self._thread = thread
            return self.base_url

    def stop(self) -> None:
        """Close the listener and every connection, then join the thread. Safe to call repeatedly."""
        with self._lifecycle:
            thread, loop, stop_event = self._thread, self._loop, self._stop_event
            if thread is None or loop is None or stop_event is None:
                return
            try:
                loop.call_soon_threadsafe(stop_event.set)
            except RuntimeError:
                pass  # the loop already finished on its own
            thread.join()
            self._thread = self._loop = self._stop_event = None

    def __enter__(self) -> ScriptedOpenAIServer:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve(ready))
        except BaseException as exc:  # surface bind failures to start()
            self._start_error = exc
        finally:
            ready.set()
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        server = await asyncio.start_server(self._accept, self.host, self.port, backlog=1024, limit=_HEADER_LIMIT)
        self.port = server.sockets[0].getsockname()[1]
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        ready.set()
        try:
            await self._stop_event.wait()
        finally:
            await self._finish_accepts()
            server.close()  # no await since the check above: no accept can slip in between
            await self._close_connections()
            await server.wait_closed()

    # ---- connections -----------------------------------------------------------------------------

    async def _finish_accepts(self, budget_s: float = 2.0) -> None:
        """Wait for connections that asyncio has accepted but not yet handed to us.

        Closing the listener while such a connection is still being set up makes Python 3.11 fail
        an assertion in that setup and leak the socket, so the listener may only close once none
        are in flight. The only tasks on this loop besides ours are asyncio's accept tasks.
        """
        current = asyncio.current_task()
        deadline = time.monotonic() + budget_s
        while time.monotonic() < deadline:
            in_flight = asyncio.all_tasks() - self._tasks - {current}
            if not in_flight:
                return
            await asyncio.wait(in_flight, timeout=max(0.0, deadline - time.monotonic()))

    async def _close_connections(self) -> None:
        """End every connection once the listener is closed, leaking no socket."""
        handlers = list(self._tasks)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        # A handler cancelled before its first step never ran its own cleanup.
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()
        await asyncio.sleep(0)  # aborted transports close their sockets on the next loop iteration

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Register the connection synchronously, then serve it on a task of our own.

        Registering here rather than inside the handler means shutdown can close every connection,
        and owning the task keeps asyncio's stream callback from reporting our cancellations.
        """
        self._ledger.connection()
        self._writers.add(writer)
        task = asyncio.get_running_loop().create_task(self._handle_connection(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._serve_one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away mid-request; nothing to answer
        except asyncio.CancelledError:
            writer.transport.abort()  # shutting down: no point flushing to a client nobody serves
            raise
        finally:
            self._writers.discard(writer)
            writer.close()  # flushes a final Connection: close response before the FIN

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must end."""
        try:
            request = await _read_request(reader)
        except _HttpError as exc:
            body = error_body(str(exc), "invalid_request_error", "bad_http_request")
            writer.write(_encode_response(exc.status, body, (), keep_alive=False))
            await writer.drain()
            return False
        if request is None:
            return False
        self._ledger.request()
        reply = self._route(request)
        if reply.action == "drop":
            _abort_with_reset(writer)
            return False
        if reply.action == "hang":
            try:
                await asyncio.wait_for(_until_eof(reader), self.hang_s)
            except asyncio.TimeoutError:
                pass
            return False
        if reply.delay_s > 0:
            await asyncio.sleep(reply.delay_s)
        if writer.transport.is_closing():
            return False
        if reply.action == "drip":
            return await self._drip(writer, reply, request.keep_alive)
        writer.write(_encode_response(reply.status, reply.body, reply.headers, request.keep_alive))
        await writer.drain()
        return request.keep_alive

    async def _drip(self, writer: asyncio.StreamWriter, reply: _Reply, keep_alive: bool) -> bool:
        """The head at once, then the body a byte at a time: every read succeeds, the whole never arrives soon."""
        whole = _encode_response(reply.status, reply.body, reply.headers, keep_alive)
        head = len(whole) - len(reply.body)
        writer.write(whole[:head])
        await writer.drain()
        for i in range(head, len(whole)):
            await asyncio.sleep(self.drip_s)
            if writer.transport.is_closing():
                return False
            writer.write(whole[i : i + 1])
            await writer.drain()
        return keep_alive

    # ---- routing and the chat-completions script -------------------------------------------------

    def _route(self, request: _Request) -> _Reply:
        if request.path == "/v1/chat/completions" and request.method == "POST":
            return self._chat_completion(request.body, request.headers)
        if request.path == "/v1/models" and request.method == "GET":
            return _Reply(200, self._models_body)
        message = f"Unknown request URL: {request.method} {request.path}."
        return _Reply(404, error_body(message, "invalid_request_error", "unknown_url"))

    def _chat_completion(self, raw: bytes, headers: dict[str, str] | None = None) -> _Reply:
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return _bad_request("We could not parse the JSON body of your request.", "invalid_json")
        if not isinstance(body, dict):
            return _bad_request("The request body must be a JSON object.", "invalid_json")
        key = request_key(body)
        attempt = self._ledger.attempt(key)
        problem = _validate(body)
        if problem is not None:
            return problem
        prompt_tokens = count_prompt_words(body["messages"])
        requested = _requested_max_tokens(body)
        over = self._context_length_error(prompt_tokens, requested)
        if over is not None:
            return over
        n_words = self.completion_tokens if requested is None else min(self.completion_tokens, requested)
        fault = self.planned_fault(key, attempt)
        if fault is not None:
            self._ledger.fault(fault)
            token = (headers or {}).get("authorization", "").removeprefix("Bearer ").strip()
            return self._faulted(fault, key, body["model"], prompt_tokens, n_words, token)
        scripted = self.responder(body) if self.responder is not None else None
        if scripted is not None:
            if isinstance(scripted, str):
                scripted = {"content": scripted}
            content = scripted["content"]
            self._ledger.pay(key, prompt_tokens, len(content.split()))
            doc = json.loads(self._completion_body(key, body["model"], prompt_tokens, len(content.split()), "stop"))
            doc["choices"][0]["message"]["content"] = content
            doc["choices"][0]["logprobs"] = scripted.get("logprobs")
            return _Reply(200, json.dumps(doc).encode(), delay_s=self.latency_s)
        return self._paid_reply(key, body["model"], prompt_tokens, n_words, "stop")

    def _context_length_error(self, prompt_tokens: int, requested: int | None) -> _Reply | None:
        if self.context_window is None:
            return None
        completion = self.completion_tokens if requested is None else requested
        total = prompt_tokens + completion
        if total <= self.context_window:
            return None
        self._ledger.context_error()
        message = (
            f"This model's maximum context length is {self.context_window} tokens. However, you requested "
            f"{total} tokens ({prompt_tokens} in the messages, {completion} in the completion). "
            "Please reduce the length of the messages or completion."
        )
        return _Reply(400, error_body(message, "invalid_request_error", "context_length_exceeded", "messages"))

    def _faulted(self, fault: str, key: str, model: str, prompt_tokens: int, n_words: int, token: str = "") -> _Reply:
        if fault in EXTRA_FAULTS:
            return self._extra_fault(fault, key, model, prompt_tokens, n_words, token)
        if fault == "429":
            headers = (
                ("Retry-After", f"{self.retry_after_s:g}"),
                ("retry-after-ms", f"{self.retry_after_s * 1000:g}"),
            )
            message = "Rate limit reached for requests. Please try again later."
            return _Reply(429, error_body(message, "rate_limit_exceeded", "rate_limit_exceeded"), headers)
        if fault == "500":
            message = "The server had an error while processing your request. Sorry about that!"
            return _Reply(500, error_body(message, "server_error", "internal_error"), delay_s=self.latency_s)
        if fault == "timeout":
            return _Reply(action="hang")
        if fault == "drop":
            return _Reply(action="drop")
        if fault == "malformed":
            whole = self._completion_body(key, model, prompt_tokens, n_words, "stop")
            return _Reply(200, whole[: len(whole) // 2], delay_s=self.latency_s)
        # "length": generation stopped early, yet a provider still bills what it produced.
        return self._paid_reply(key, model, prompt_tokens, n_words // 2, "length")

    def _extra_fault(self, fault: str, key: str, model: str, prompt_tokens: int, n_words: int, token: str) -> _Reply:
        if fault == "drip":
            # generated (and billed) like any reply; only its delivery crawls
            return self._paid_reply(key, model, prompt_tokens, n_words, "stop")._replace(action="drip")
        if fault == "429_date":
            # rounded up to the next whole second, so the date is never less than retry_after_s ahead
            when = email.utils.formatdate(math.ceil(time.time() + self.retry_after_s), usegmt=True)
            message = "Rate limit reached for requests. Please try again later."
            body = error_body(message, "rate_limit_exceeded", "rate_limit_exceeded")
            return _Reply(429, body, (("Retry-After", when),))
        if fault == "401":
            message = f"Incorrect API key provided: {token}. You can find your API key in your account settings."
            return _Reply(401, error_body(message, "invalid_request_error", "invalid_api_key"))
        if fault == "400_echo_key":
            message = f"The API key {token} is not allowed to use model {model}."
            return _Reply(400, error_body(message, "invalid_request_error", "model_not_allowed", "model"))
        message = f"Upstream provider refused the request signed with {token}; try again later."
        return _Reply(500, error_body(message, "server_error", "upstream_error"), delay_s=self.latency_s)

    def _paid_reply(self, key: str, model: str, prompt_tokens: int, n_words: int, finish_reason: str) -> _Reply:
        self._ledger.pay(key, prompt_tokens, n_words)
        body = self._completion_body(key, model, prompt_tokens, n_words, finish_reason)
        return _Reply(200, body, delay_s=self.latency_s)

    @staticmethod
    def _completion_body(key: str, model: str, prompt_tokens: int, n_words: int, finish_reason: str) -> bytes:
        doc = {
            "id": f"chatcmpl-{key[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply_words(key, n_words)},
                    "finish_reason": finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": n_words,
                "total_tokens": prompt_tokens + n_words,
            },
        }
        return json.dumps(doc, separators=(",", ":")).encode()


def _bad_request(message: str, code: str, param: str | None = None) -> _Reply:
    return _Reply(400, error_body(message, "invalid_request_error", code, param))


def _validate(body: dict[str, Any]) -> _Reply | None:
    """A 400 for requests a real provider would refuse before generating, else None."""
    if body.get("stream"):
        message = "Streaming is unsupported by this server; send stream=false."
        return _bad_request(message, "unsupported_parameter", "stream")
    if not isinstance(body.get("model"), str):
        return _bad_request("You must provide a model parameter.", "missing_required_parameter", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        return _bad_request("'messages' must be a non-empty array of message objects.", "invalid_value", "messages")
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            return _bad_request(f"'{name}' must be a non-negative integer.", "invalid_value", name)
    return None


def _requested_max_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens")
    return body.get("max_tokens") if value is None else value


def main(argv: list[str] | None = None) -> None:
    """Run the server in the foreground, e.g. to benchmark a client from another process."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-s", type=float, default=0.0)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--faults", default=",".join(ALL_FAULTS), help="comma-separated fault kinds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--completion-tokens", type=int, default=8)
    parser.add_argument("--context-window", type=int, default=None)
    parser.add_argument("--drip-s", type=float, default=0.2, help="byte interval of a 'drip' reply")
    args = parser.parse_args(argv)
    server = ScriptedOpenAIServer(
        latency_s=args.latency_s,
        fault_rate=args.fault_rate,
        faults=tuple(kind for kind in args.faults.split(",") if kind),
        seed=args.seed,
        completion_tokens=args.completion_tokens,
        context_window=args.context_window,
        port=args.port,
        drip_s=args.drip_s,
    )
    print(server.start(), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
