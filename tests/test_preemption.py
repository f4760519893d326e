"""SIGTERM mid-training under a real 2-process ZeRO-3 launch, as Slurm sends it before a preemption or the time limit.

Slurm signals every process of the job step; here the test sends SIGTERM itself, either to one worker only (the
ranks must still stop together at the same step, or ZeRO-3 would hang in a collective) or to the launcher and both
workers at once (torchrun's agent then forwards SIGTERM and waits for the workers before exiting). Only the
preemption saves: save_steps is larger than the run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest
from conftest import OFFLINE_ENV, REPO, run_script, script
from test_zero3 import ACCELERATE, free_port

pytestmark = pytest.mark.slow

OUT = "runs/preempted"


def command() -> list[str]:
    return [
        ACCELERATE,
        "launch",
        "--config_file",
        "recipes/accelerate/zero3_cpu.yaml",
        "--main_process_port",
        str(free_port()),
        script("run_sft.py"),
        "recipes/smoke/sft.yaml",
        "--output_dir",
        OUT,
        "--max_steps",
        "16",
        "--save_strategy",
        "steps",
        "--save_steps",
        "1000",
        "--eval_strategy",
        "no",
        "--logging_steps",
        "1",
        "--log_samples",
        "0",
    ]


def launch_and_signal(workspace, pick) -> tuple[int, str, int]:
    """Start the launch, wait until it has logged two steps, send SIGTERM to the processes pick(launcher, workers)
    returns; the launch's exit code, its output, and how many workers it had."""
    import psutil

    log_path = workspace / "first.log"
    env = {**os.environ, **OFFLINE_ENV, "PYTHONPATH": REPO}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command(), cwd=workspace, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 300
            while log_path.read_text().count("'loss'") < 2:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                assert time.time() < deadline, "training did not start"
                time.sleep(0.2)
            launcher = psutil.Process(proc.pid)
            workers = launcher.children()
            for p in pick(launcher, workers):
                p.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
    return code, log_path.read_text(), len(workers)


def rank_of(process) -> int:
    return int(process.environ()["RANK"])


def stopped_checkpoint(workspace, output: str) -> int:
    match = re.search(
        rf"stopped by SIGTERM at step (\d+): saved {OUT}/checkpoint-(\d+); exiting with code 143", output
    )
    assert match and match.group(1) == match.group(2), output[-3000:]
    step = int(match.group(1))
    state = json.load(open(workspace / OUT / f"checkpoint-{step}" / "trainer_state.json"))
    assert state["global_step"] == step < 16
    assert not os.path.exists(workspace / OUT / "model.safetensors"), "an unfinished run saves no final model"
    return step


def test_sigterm_to_one_rank_stops_all_at_one_checkpoint_then_a_rerun_resumes(workspace):
    code, output, n_workers = launch_and_signal(
        workspace, lambda launcher, workers: [w for w in workers if rank_of(w) == 1]
    )
    assert n_workers == 2
    step = stopped_checkpoint(workspace, output)
    # rank 0 was never signalled, yet it stopped at the same step: both workers exit 143 and the launcher, whose
    # agent counts any non-zero worker as a failure, exits 1
    assert code == 1, output[-3000:]
    assert len(re.findall(r"exitcode\s*: 143 ", output)) == 2, output[-3000:]
    assert len(list((workspace / OUT).glob("checkpoint-*"))) == 1

    res = run_script(command(), cwd=workspace)
    assert res.returncode == 0, res.output[-3000:]
    assert f"resuming from {OUT}/checkpoint-{step}" in res.output
    assert f"done: {OUT}" in res.stdout and os.path.exists(workspace / OUT / "model.safetensors")


def test_sigterm_to_the_whole_step_lets_the_workers_save_before_the_launcher_exits(workspace):
    # as slurmstepd signals a step: the launcher (torchrun's agent) and its workers all get SIGTERM; the agent
    # forwards it and waits up to TORCH_ELASTIC_SHUTDOWN_TIMEOUT before killing the workers
    code, output, _ = launch_and_signal(workspace, lambda launcher, workers: [launcher, *workers])
    stopped_checkpoint(workspace, output)
    assert "Received 15 death signal, shutting down workers" in output
    assert code == 1, output[-3000:]  # the agent re-raises the signal as an exception: accelerate launch exits 1
