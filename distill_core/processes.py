"""Child processes that stop when their parent is stopped, and take their own children with them.

A pipeline runs each stage in a process group of its own. A signal sent to the pipeline alone (by a scheduler or
a parent script; a terminal's Ctrl-C reaches the whole foreground group, a ``kill PID`` does not) would otherwise
leave the stage, and the model server the stage started, running with no parent. So:

- :func:`run_process_group` forwards SIGINT and SIGTERM to the stage's whole group, gives it ``grace_s`` seconds to
  run its ``finally`` blocks (stop its server, save a checkpoint), then kills what is left of the group and raises
  :class:`Stopped`, which exits 130 (SIGINT) or 143 (SIGTERM).
- :func:`sigterm_stops` makes SIGTERM unwind a stage like Ctrl-C does, so the same ``finally`` blocks run.
- :func:`dies_with_parent` asks the kernel (Linux ``PR_SET_PDEATHSIG``) to signal a child when its parent dies
  even by ``kill -9``, when no ``finally`` runs at all.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import IO, Iterator

# A stopped stage's time to finish: a training stage completes its step and saves a checkpoint first. Slurm signals
# 120 s before it kills a job (slurm/launch.sbatch), so this is never the tighter limit there.
STOP_GRACE_S = 120.0

# Runs in the child between fork and the real program: set the parent-death signal, then exec. A shim rather than
# Popen(preexec_fn=...), which is unsafe once the parent has threads. The signal is only sent if the parent dies
# after prctl; the getppid check covers a parent that died before.
_DEATH_SIGNAL_SHIM = """\
import ctypes, os, sys
ctypes.CDLL(None, use_errno=True).prctl(1, int(sys.argv[2]))  # 1 = PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
os.execvp(sys.argv[3], sys.argv[3:])
"""


class Stopped(SystemExit):
    """This process was stopped by SIGINT or SIGTERM; ``finally`` blocks run on the way out, exit code 128 + signal."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum
        self.name = signal.Signals(signum).name


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now, for a child process to serve on.

    The kernel picks it; it is free when this returns, not reserved, so the child must still report a port taken
    in between.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dies_with_parent(cmd: list[str], sig: int = signal.SIGKILL) -> list[str]:
    """``cmd`` wrapped so the kernel sends it ``sig`` when this process dies; ``cmd`` unchanged off Linux."""
    if not sys.platform.startswith("linux"):
        return list(cmd)
    return [sys.executable, "-c", _DEATH_SIGNAL_SHIM, str(os.getpid()), str(int(sig)), *cmd]


def run_process_group(cmd: list[str], *, stdout: IO, env: dict, grace_s: float = STOP_GRACE_S) -> int:
    """Run ``cmd`` in a new process group (and session) and return its exit code.

    SIGINT or SIGTERM received meanwhile is forwarded to the whole group, which then has ``grace_s`` seconds to
    exit before it is killed; :class:`Stopped` is raised once it is gone. If this process is killed outright, the
    child gets SIGTERM from the kernel and stops the same way.
    """
    received: list[int] = []
    child: list[subprocess.Popen] = []

    def forward(signum, frame) -> None:
        received.append(signum)
        if child:
            _signal_group(child[0].pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        proc = subprocess.Popen(
            dies_with_parent(cmd, signal.SIGTERM),
            stdout=stdout,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        child.append(proc)
        if received:  # arrived while it was starting
            _signal_group(proc.pid, received[0])
        returncode = _wait(proc, received, grace_s)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        raise Stopped(received[0])
    return returncode


def _wait(proc: subprocess.Popen, received: list[int], grace_s: float) -> int:
    deadline = None
    while True:
        try:
            returncode = proc.wait(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            if received and deadline is None:
                deadline = time.monotonic() + grace_s
            if deadline is not None and time.monotonic() > deadline:
                _signal_group(proc.pid, signal.SIGKILL)
                returncode = proc.wait()
                break
    if received:  # whatever the stage left in its group (launcher workers) goes with it
        _signal_group(proc.pid, signal.SIGKILL)
    return returncode


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@contextlib.contextmanager
def sigterm_stops() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`Stopped`, as Ctrl-C raises KeyboardInterrupt, so cleanup runs."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    def stop(signum, frame) -> None:
        raise Stopped(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
