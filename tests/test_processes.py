"""Stopping a child process group: forwarded signals, a bounded wait, and the kernel's parent-death signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import REPO

from distill_core.processes import Stopped, run_process_group

# A stage that ignores SIGTERM and leaves a grandchild in its group: only the bounded wait's SIGKILL ends them.
STUBBORN = """\
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen(
    [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"]
)
print(child.pid, flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def _signal_self_when(path, signum) -> threading.Thread:
    def go():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (path.exists() and path.read_text().strip()):
            time.sleep(0.02)
        os.kill(os.getpid(), signum)

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_is_forwarded_and_a_group_that_ignores_it_is_killed_after_the_grace_period(tmp_path, signum, code):
    out = tmp_path / "out.txt"
    _signal_self_when(out, signum)
    started = time.monotonic()
    with open(out, "w") as f, pytest.raises(Stopped) as stop:
        run_process_group([sys.executable, "-c", STUBBORN], stdout=f, env=dict(os.environ), grace_s=1.0)
    assert stop.value.code == code and stop.value.name == signal.Signals(signum).name
    assert time.monotonic() - started < 20
    grandchild = int(out.read_text().split()[0])
    time.sleep(0.2)
    assert not _alive(grandchild), "what the stage left in its group is killed with it"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "the pipeline's own handlers are restored"


def test_a_child_that_exits_returns_its_code_and_nothing_is_raised(tmp_path):
    with open(tmp_path / "out.txt", "w") as f:
        assert run_process_group([sys.executable, "-c", "raise SystemExit(3)"], stdout=f, env=dict(os.environ)) == 3


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_a_child_dies_with_its_parent_even_on_kill_9():
    parent_code = (
        "import subprocess, sys, time\n"
        "from distill_core.processes import dies_with_parent\n"
        "p = subprocess.Popen(dies_with_parent(['sleep', '60']), start_new_session=True)\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": REPO}
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True, env=env)
    child = int(parent.stdout.readline())
    deadline = time.monotonic() + 10
    while _comm(child) != "sleep" and time.monotonic() < deadline:  # the shim has exec'd the real program
        time.sleep(0.02)
    assert _alive(child)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the child outlived its parent"


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""
