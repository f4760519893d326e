"""An OpenAI-compatible server on 127.0.0.1 for a local model directory (``transformers serve``).

Started for ``teacher: local`` and stopped on every exit path: success, error, Ctrl-C, SIGTERM (which the
recipe scripts turn into the same unwinding), and ``kill -9`` of this process (the kernel's parent-death signal).
The model id the server answers to is the directory path it was given.
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
from distill_core.processes import dies_with_parent

from .endpoints import Endpoint, LocalServer

logger = logging.getLogger(__name__)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
        raise UserError(f"local_server.model_dir '{spec.model_dir}' is not a model directory (no config.json); "
                        f"build one with scripts/build_tiny_model.py or point at a saved model")
    port = spec.port or _free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    exe = os.path.join(os.path.dirname(sys.executable), "transformers")
    cmd = [exe, "serve", model_dir, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"
           if not _has_cuda() else "auto"]
    log = tempfile.NamedTemporaryFile(prefix="local-server-", suffix=".log", delete=False)
    logger.info("starting local OpenAI-compatible server for %s on %s (log: %s)", model_dir, base_url, log.name)
    # its own session: a terminal's Ctrl-C reaches this process, whose `finally` stops the server; and if this
    # process dies without running it (kill -9), the kernel kills the server
    proc = subprocess.Popen(dies_with_parent(cmd), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + spec.startup_timeout_s
        while not _ready(base_url):
            if proc.poll() is not None:
                raise UserError(f"local server for {model_dir} exited with code {proc.returncode} while starting; "
                                f"see {log.name}")
            if time.monotonic() > deadline:
                raise UserError(f"local server for {model_dir} not ready after {spec.startup_timeout_s:.0f} s; "
                                f"see {log.name} or raise local_server.startup_timeout_s")
            time.sleep(0.25)
        logger.info("local server ready: %s", base_url)
        yield Endpoint(base_url=base_url, model=model_dir, api_key_env=None)
    finally:
        _stop(proc)
        log.close()


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
