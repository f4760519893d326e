"""An OpenAI-compatible server on 127.0.0.1 for a local model directory (``transformers serve``, or ``vllm serve``
on a GPU node).

Started for ``teacher: local`` and stopped on every exit path: success, error, Ctrl-C, SIGTERM (which the
recipe scripts turn into the same unwinding), and ``kill -9`` of this process (the kernel's parent-death signal).
The model id the server answers to is the directory path it was given.

A fixed ``local_server.port`` that something already listens on is refused before starting: a server an earlier
run left there would otherwise answer the readiness check and serve this run, possibly another model.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Iterator

from distill_core.errors import UserError
from distill_core.processes import dies_with_parent, free_port

from .client import EndpointError
from .endpoints import Endpoint, LocalServer

logger = logging.getLogger(__name__)


def _ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=2) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def serve_local_model(spec: LocalServer) -> Iterator[Endpoint]:
    model_dir = os.path.abspath(os.path.expanduser(spec.model_dir))
    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        raise UserError(
            f"local_server.model_dir '{spec.model_dir}' is not a model directory (no config.json); "
            f"build one with scripts/build_tiny_model.py or point at a saved model"
        )
    if spec.port:
        _refuse_taken_port(spec.port)
    port = spec.port or free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    cmd = server_command(spec, model_dir, port)
    log = tempfile.NamedTemporaryFile(prefix="local-server-", suffix=".log", delete=False)
    logger.info("starting local OpenAI-compatible server for %s on %s (log: %s)", model_dir, base_url, log.name)
    # Its own session: a terminal's Ctrl-C reaches this process, whose `finally` stops the server; and if this
    # process dies without running it (kill -9), the kernel kills the server. The parent-death signal is tied to
    # the thread that forks, not the process: the thread that enters this context is the one using the server
    # (the stages start it from their main thread), so it outlives the server's use. The setting survives the exec
    # of the `transformers` script (not setuid), and `transformers serve` runs uvicorn in that same process, so
    # no grandchild escapes it.
    proc = subprocess.Popen(dies_with_parent(cmd), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + spec.startup_timeout_s
        # ready only once the answering socket is this server's own: on a race for the port, another listener
        # would answer first
        while not (_ready(base_url) and _listens(proc.pid, port)):
            if proc.poll() is not None:
                if spec.port and _port_answers(port):
                    _refuse_taken_port(port)
                raise UserError(
                    f"local server for {model_dir} exited with code {proc.returncode} while starting; see {log.name}"
                )
            if time.monotonic() > deadline:
                raise UserError(
                    f"local server for {model_dir} not ready after {spec.startup_timeout_s:.0f} s; "
                    f"see {log.name} or raise local_server.startup_timeout_s"
                )
            time.sleep(0.25)
        logger.info("local server ready: %s", base_url)
        yield Endpoint(base_url=base_url, model=model_dir, api_key_env=None)
    finally:
        _stop(proc)
        log.close()


def server_command(spec: LocalServer, model_dir: str, port: int) -> list[str]:
    """The serve command line: the model id the server answers to is ``model_dir`` under either backend."""
    exe = os.path.join(os.path.dirname(sys.executable), spec.backend)
    if spec.backend == "vllm":
        if not os.path.isfile(exe):
            raise UserError(
                f"local_server.backend: vllm, but there is no {exe}; install vLLM in this environment on the GPU node "
                "(pip install vllm) or set backend: transformers"
            )
        cmd = [exe, "serve", model_dir, "--host", "127.0.0.1", "--port", str(port)]
    else:
        device = "cpu" if not _has_cuda() else "auto"
        cmd = [exe, "serve", model_dir, "--host", "127.0.0.1", "--port", str(port), "--device", device]
    return cmd + list(spec.extra_args)


def _port_answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _refuse_taken_port(port: int) -> None:
    """One line naming the port, what holds it (when this user may see it) and the two ways out."""
    if not _port_answers(port):
        return
    holder = ""
    owners = (
        _socket_owners(_listening_inodes(port), [p for p in os.listdir("/proc") if p.isdigit()])
        if os.path.isdir("/proc/net")
        else []
    )
    if owners:
        try:
            with open(f"/proc/{owners[0]}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            cmdline = "?"
        holder = f" by pid {owners[0]} ({cmdline[:100]})"
    raise EndpointError(
        f"local_server.port {port} is already in use on 127.0.0.1{holder}, perhaps a server an earlier "
        f"run left behind; stop that process or set local_server.port: 0 to pick a free port"
    )


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on TCP ``port`` on any address (Linux /proc; empty elsewhere)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()  # sl local_address rem_address st ... inode
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _socket_owners(inodes: set[str], pids: list) -> list[int]:
    """Those of ``pids`` holding one of the socket ``inodes`` (processes of other users cannot be looked into)."""
    targets = {f"socket:[{inode}]" for inode in inodes}
    owners = []
    for pid in pids if targets else []:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                    owners.append(int(pid))
                    break
            except OSError:
                continue
    return owners


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds the socket listening on ``port``; assumed true where /proc cannot tell."""
    inodes = _listening_inodes(port)
    if not inodes or not os.path.isdir(f"/proc/{pid}/fd"):  # the readiness check saw a listener: /proc is blind
        return True
    return bool(_socket_owners(inodes, [pid]))


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False
