"""Shared fixtures: a workspace holding the tiny model and smoke data, and a way to run the real scripts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")
sys.path.insert(0, REPO)

# No test may reach a hub; DeepSpeed's compiled op is cached once per checkout.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "WANDB_MODE": "disabled",
    "TOKENIZERS_PARALLELISM": "false",
    "TORCH_EXTENSIONS_DIR": os.environ.get("TORCH_EXTENSIONS_DIR", os.path.join(REPO, ".cache", "torch_extensions")),
}
os.environ.update(OFFLINE_ENV)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_script(args: list[str], cwd: str, timeout: int = 600, env: dict | None = None) -> Result:
    """Run a repository script (or accelerate) as a user would, from cwd."""
    full_env = {**os.environ, **OFFLINE_ENV, **(env or {})}
    full_env["PYTHONPATH"] = REPO
    proc = subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def script(name: str) -> str:
    return os.path.join(REPO, "scripts", name)


def shared_benchmarks(recipe: str) -> list:
    """A decontaminate recipe's ``benchmarks`` with their ``../shared/data/`` paths made absolute: the shared data lies
    beside the checkout, not beside a test's workspace."""
    import yaml

    with open(recipe, encoding="utf-8") as f:
        entries = yaml.safe_load(f)["benchmarks"]

    def absolute(path: str) -> str:
        return os.path.join(SHARED_DATA, path.removeprefix("../shared/data/"))

    return [{**e, "path": absolute(e["path"])} if isinstance(e, dict) else absolute(e) for e in entries]


# Servers a test may start as processes: a local model under `transformers serve`, or the fault-injecting server
# run as its own interpreter.
SERVER_PROCESSES = ("transformers serve", "openai_fault_server")


def servers_running(marker: str) -> list[str]:
    """Live server processes whose command line mentions ``marker`` (a test's tmp path: tests running beside it
    have their own), as "pid: command line"."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):  # gone meanwhile
            continue
        if state != b"Z" and marker in cmdline and any(name in cmdline for name in SERVER_PROCESSES):
            found.append(f"{pid}: {cmdline}")
    return found


def assert_no_server_left(marker: str, wait_s: float = 5.0) -> None:
    """Every server process started under ``marker`` is gone (waiting up to ``wait_s`` for ones still exiting)."""
    import time

    deadline = time.monotonic() + wait_s
    while (left := servers_running(str(marker))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"server processes outlived the run that started them: {left}"


@pytest.fixture(scope="session")
def smoke_assets(tmp_path_factory):
    """runs/smoke/{data,tiny-model} built by the real builders, in a directory of its own."""
    from training.smoke_data import build_smoke_datasets, corpus_lines
    from training.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("assets")
    build_smoke_datasets(str(root / "runs" / "smoke" / "data"), n_sft=64, n_pref=64, n_test=8)
    build_tiny_model(str(root / "runs" / "smoke" / "tiny-model"), corpus_lines())
    return root


@pytest.fixture
def workspace(smoke_assets, tmp_path):
    """A fresh working directory where the smoke recipes' relative paths resolve."""
    runs = tmp_path / "runs" / "smoke"
    runs.mkdir(parents=True)
    for name in ("data", "tiny-model"):
        os.symlink(smoke_assets / "runs" / "smoke" / name, runs / name)
    shutil.copytree(os.path.join(REPO, "recipes"), tmp_path / "recipes")
    shutil.copytree(os.path.join(REPO, "ds_configs"), tmp_path / "ds_configs")
    return tmp_path
