"""Two nodes on one machine: one `accelerate launch` per "node" joins a single ZeRO-3 world (gloo, fp32).

Each launch is what slurm/launch.sbatch starts on a node: the same config, --num_machines 2, its own
--machine_rank, rendezvous at --main_process_ip:--main_process_port. SLURMD_NODENAME names each "node" as Slurm
would, so that each side's lines can be told apart on one host. A config check, with no launch, follows the
launcher choice through accelerate's own code for every config in recipes/accelerate/.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess

import pytest
import yaml
from conftest import OFFLINE_ENV, REPO, Result, script
from test_zero3 import ACCELERATE, free_port


def launch_two_nodes(workspace, processes_per_node: int, *script_args: str, timeout: int = 600) -> list[Result]:
    """Start both nodes' launches at once (as srun does) and wait for both; output goes to files, not pipes,
    so that one side blocked on a full pipe cannot stall the other in a collective."""
    port = str(free_port())
    procs = []
    for node in (0, 1):
        env = {**os.environ, **OFFLINE_ENV, "PYTHONPATH": REPO, "SLURMD_NODENAME": f"node-{node}"}
        out, err = (open(workspace / f"node{node}.{name}", "w+") for name in ("out", "err"))
        cmd = [
            ACCELERATE,
            "launch",
            "--config_file",
            "recipes/accelerate/zero3_cpu.yaml",
            "--num_machines",
            "2",
            "--num_processes",
            str(2 * processes_per_node),
            "--machine_rank",
            str(node),
            "--main_process_ip",
            "127.0.0.1",
            "--main_process_port",
            port,
            *script_args,
        ]
        procs.append((subprocess.Popen(cmd, cwd=workspace, env=env, stdout=out, stderr=err, text=True), out, err))
    results = []
    try:
        for proc, out, err in procs:
            proc.wait(timeout=timeout)
            out.seek(0)
            err.seek(0)
            results.append(Result(proc.returncode, out.read(), err.read()))
    finally:
        for proc, out, err in procs:
            if proc.poll() is None:
                proc.kill()
            out.close()
            err.close()
    return results


PROCESS_LINE = re.compile(
    r"\[(\S+) rank(\d+)\] INFO training\.setup: process rank=(\d+) local_rank=(\d+) "
    r"node_rank=(\d+) world_size=(\d+) host=(\S+)"
)


@pytest.mark.slow
def test_two_nodes_form_one_world_and_train(workspace):
    nodes = launch_two_nodes(
        workspace,
        1,
        script("run_sft.py"),
        "recipes/smoke/sft.yaml",
        "--max_steps",
        "2",
        "--eval_strategy",
        "no",
        "--log_samples",
        "0",
        "--output_dir",
        "runs/two-nodes",
    )
    for node, res in enumerate(nodes):
        assert res.returncode == 0, f"node {node}:\n{res.output[-4000:]}"
        seen = PROCESS_LINE.findall(res.stdout)
        assert len(seen) == 1, f"node {node} should log its one process:\n{res.stdout[-3000:]}"
        prefix_host, prefix_rank, rank, local_rank, node_rank, world_size, host = seen[0]
        assert world_size == "2", f"node {node} joined a world of {world_size}, not one world across both nodes"
        assert (rank, local_rank, node_rank) == (str(node), "0", str(node))
        assert prefix_host == host == f"node-{node}" and prefix_rank == str(node), "log lines name their node"
    batch = "world_size=2 per_device_train_batch_size=4 gradient_accumulation_steps=2 effective_global_batch=16"
    assert batch in nodes[0].stdout and batch not in nodes[1].stdout, "rank 0 alone states the global batch"
    assert "done: runs/two-nodes" in nodes[0].stdout
    assert os.path.exists(workspace / "runs/two-nodes/model.safetensors")


@pytest.mark.slow
def test_a_bad_input_is_reported_once_by_each_node(workspace):
    # 2 processes on each of 2 nodes meet the same missing model: each node says so once, naming itself
    nodes = launch_two_nodes(
        workspace,
        2,
        script("run_sft.py"),
        "recipes/smoke/sft.yaml",
        "--model_name_or_path",
        "runs/smoke/missing/model",
    )
    for node, res in enumerate(nodes):
        assert res.returncode != 0
        ours = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
        assert len(ours) == 1, f"node {node}:\n{res.stderr[-3000:]}"
        assert ours[0].startswith(f"error: [node-{node}] ") and "runs/smoke/missing/model" in ours[0]


def launcher_choice(config: str, monkeypatch, tmp_path) -> dict:
    """What `accelerate launch --config_file CONFIG --num_machines 2 ...` on node 1 would start, by accelerate's own
    launch_command: torchrun's arguments, or the command line of DeepSpeed's own (pdsh, ssh-based) runner."""
    import torch.distributed.run as torchrun
    from accelerate.commands.launch import launch_command, launch_command_parser

    seen: dict = {}

    class NoProcess:
        returncode = 0

        def __init__(self, cmd, env=None):
            seen["deepspeed_runner"] = cmd

        def wait(self):
            return 0

    monkeypatch.setattr(torchrun, "run", lambda args: seen.update(torchrun=vars(args)))
    monkeypatch.setattr(subprocess, "Popen", NoProcess)
    monkeypatch.chdir(tmp_path)  # the pdsh path writes .deepspeed_env into the working directory
    args = launch_command_parser().parse_args(
        [
            "--config_file",
            config,
            "--num_machines",
            "2",
            "--num_processes",
            "16",
            "--machine_rank",
            "1",
            "--main_process_ip",
            "10.0.0.1",
            "--main_process_port",
            "29500",
            "train.py",
            "recipe.yaml",
        ]
    )
    launch_command(args)
    return seen


@pytest.mark.parametrize(
    "config", sorted(glob.glob(os.path.join(REPO, "recipes", "accelerate", "*.yaml"))), ids=os.path.basename
)
def test_every_launcher_config_joins_nodes_with_torchrun(config, monkeypatch, tmp_path):
    from accelerate.utils.constants import DEEPSPEED_MULTINODE_LAUNCHERS

    settings = yaml.safe_load(open(config))
    if settings["distributed_type"] == "DEEPSPEED":
        launcher = settings["deepspeed_config"].get("deepspeed_multinode_launcher")
        assert launcher == DEEPSPEED_MULTINODE_LAUNCHERS[1] == "standard", (
            f"{config}: set deepspeed_config.deepspeed_multinode_launcher: standard (accelerate's default is pdsh)"
        )
    seen = launcher_choice(config, monkeypatch, tmp_path)
    assert "deepspeed_runner" not in seen, f"{config} would start DeepSpeed's ssh runner: {seen['deepspeed_runner']}"
    run = seen["torchrun"]
    # static rendezvous at the main node: the node rank is the launch's --machine_rank
    assert (run["nnodes"], run["node_rank"], run["nproc_per_node"]) == ("2", 1, "8")
    assert run["rdzv_backend"] == "static" and run["rdzv_endpoint"] == "10.0.0.1:29500"


def test_without_the_setting_accelerate_picks_the_pdsh_runner(monkeypatch, tmp_path):
    """The check above can fail: the same config minus deepspeed_multinode_launcher goes to pdsh."""
    settings = yaml.safe_load(open(os.path.join(REPO, "recipes", "accelerate", "zero3.yaml")))
    del settings["deepspeed_config"]["deepspeed_multinode_launcher"]
    config = tmp_path / "zero3-default-launcher.yaml"
    config.write_text(yaml.safe_dump(settings))
    seen = launcher_choice(str(config), monkeypatch, tmp_path)
    assert "torchrun" not in seen
    runner = seen["deepspeed_runner"]
    assert runner[0] == "deepspeed" and runner[runner.index("--launcher") + 1] == "pdsh"
