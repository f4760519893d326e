"""No local model server outlives the stage that started it, and a rerun never talks to a stale one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml
from conftest import OFFLINE_ENV, REPO, assert_no_server_left, run_script
from openai_fault_server import ScriptedOpenAIServer
from test_generation import self_instruct_cmd

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG is Linux only"
)


def stage_cmd(out: str, **local_server) -> list[str]:
    """A Self-Instruct stage whose teacher is the tiny model under a local server; long enough to be stopped."""
    teacher = yaml.safe_dump(
        {
            "local_server": {"model_dir": "runs/smoke/tiny-model", **local_server},
            "max_concurrency": 2,
            "max_retries": 0,
        },
        default_flow_style=True,
    ).strip()
    return self_instruct_cmd(out, teacher, "--num_instructions", "500", "--max_rounds", "100")


def _status(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/status") as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except OSError:
        return {}


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    """Running, not a zombie: an orphan is reaped by whoever adopts it, which may take its time in a container."""
    return _status(pid).get("State", "Z")[:1] not in ("Z", "X", "")


def _server_child(parent: int) -> int | None:
    """The `transformers serve` process among ``parent``'s children (once the shim has exec'd it)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if _status(int(pid)).get("PPid") == str(parent) and "serve" in _cmdline(int(pid))[1:3]:
            return int(pid)
    return None


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1) as reply:
            return reply.status == 200
    except OSError:
        return False


def test_kill_9_of_the_stage_takes_its_local_server_with_it(workspace):
    env = {**os.environ, **OFFLINE_ENV, "PYTHONPATH": REPO}
    stage = subprocess.Popen(
        stage_cmd("runs/k9"), cwd=workspace, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    server = port = None
    try:
        deadline = time.monotonic() + 120
        while stage.poll() is None and time.monotonic() < deadline:
            server = server or _server_child(stage.pid)
            if server is not None:
                args = _cmdline(server)
                port = int(args[args.index("--port") + 1])
                if _answers(port):
                    break
            time.sleep(0.1)
        assert stage.poll() is None and server is not None and _answers(port), (
            "the stage never served its local model: "
            f"{stage.stdout.read()[-2000:] if stage.poll() is not None else ''}"
        )
        # the real server, forked by the stage itself (so the stage's death is the parent death the kernel watches)
        assert _cmdline(server)[1].endswith("transformers") and _status(server)["PPid"] == str(stage.pid)

        stage.send_signal(signal.SIGKILL)  # no `finally`, no handler: only the kernel can stop the server now
        stage.wait(timeout=10)
        killed = time.monotonic()
        while _alive(server) and time.monotonic() - killed < 5:
            time.sleep(0.05)
        assert not _alive(server), f"pid {server} outlived the kill -9 of its stage: {_cmdline(server)}"
        assert not _answers(port), "nothing answers on the dead server's port"
        assert_no_server_left(workspace)
    finally:  # a failing run must not leave its processes behind for the tests after it
        if stage.poll() is None:
            stage.kill()
            stage.wait()
        if server is not None and _alive(server):
            os.kill(server, signal.SIGKILL)


def test_a_fixed_port_already_in_use_is_refused_with_one_line(workspace):
    # a stale OpenAI-compatible server holds the port: it would pass the readiness check if it were ever asked
    with ScriptedOpenAIServer() as stale:
        res = run_script(stage_cmd("runs/busy", port=stale.port), cwd=workspace, timeout=120)
        assert stale.stats.total_attempts == 0, "not one request reached the stale server"
    assert res.returncode == 2, res.output[-2000:]
    assert "Traceback" not in res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, res.stderr[-2000:]
    line = errors[0]
    for fragment in (
        f"local_server.port {stale.port} is already in use",
        f"by pid {os.getpid()} ",
        "stop that process",
        "local_server.port: 0",
    ):
        assert fragment in line, line
    assert_no_server_left(workspace, wait_s=0)


def test_a_listener_that_takes_the_port_while_the_server_starts_is_never_used(workspace, monkeypatch):
    """The race the up-front check cannot close: the port is free when checked, taken before the server binds.
    The readiness check must not accept the other listener's answer; the start fails with the same one line."""
    from data_gen import local_server
    from data_gen.client import EndpointError
    from data_gen.endpoints import LocalServer

    with ScriptedOpenAIServer() as stale:
        checks = []
        answers = local_server._port_answers
        monkeypatch.setattr(
            local_server,
            "_port_answers",
            lambda port: bool(checks.append(port)) or (len(checks) > 1 and answers(port)),
        )  # the up-front check sees a free port
        spec = LocalServer(model_dir=str(workspace / "runs/smoke/tiny-model"), port=stale.port, startup_timeout_s=120)
        with pytest.raises(EndpointError, match=f"local_server.port {stale.port} is already in use"):
            with local_server.serve_local_model(spec):
                pytest.fail("the stale listener was taken for the local server")
        assert stale.stats.total_attempts == 0
    assert_no_server_left(workspace, wait_s=0)


def test_the_vllm_backend_serves_the_directory_under_its_path_or_says_how_to_install_it(tmp_path, monkeypatch):
    from data_gen import local_server
    from data_gen.endpoints import LocalServer
    from distill_core.errors import UserError

    spec = LocalServer(model_dir=str(tmp_path), backend="vllm", extra_args=["--max-model-len", "8192"])
    with pytest.raises(
        UserError, match="install vLLM in this environment on the GPU node.*or set backend: transformers"
    ):
        local_server.server_command(spec, str(tmp_path), 8123)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "vllm").write_text("#!/bin/sh\n")
    monkeypatch.setattr(local_server.sys, "executable", str(bin_dir / "python"))
    cmd = local_server.server_command(spec, str(tmp_path), 8123)
    # the same model id (the directory) and address as under transformers serve, and the user's extra arguments
    assert cmd == [str(bin_dir / "vllm"), "serve", str(tmp_path), "--host", "127.0.0.1", "--port", "8123",
                   "--max-model-len", "8192"]  # fmt: skip
    plain = local_server.server_command(LocalServer(model_dir=str(tmp_path)), str(tmp_path), 8123)
    assert plain[:3] == [str(bin_dir / "transformers"), "serve", str(tmp_path)] and "--device" in plain
