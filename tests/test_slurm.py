"""The multi-node launcher builds one accelerate launch per node and never touches gradient accumulation.

Slurm itself is not available here, so `srun` and `scontrol` are stood in for by small scripts that run
each task locally (task i as node-i, from NODE<i>_DIR when set, so that a "node" can lack a directory the first
node sees) and record their options, and `accelerate` by one that records its arguments; everything else is the
real script.
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys

import pytest
from conftest import REPO


def _exe(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


# srun: options first, then the command, run once per task (as node-i, with SLURM_PROCID=i); exits with the
# highest task exit code, as srun does
FAKE_SRUN = """#!/bin/bash
n=1; opts=()
while [[ $# -gt 0 && $1 == --* ]]; do opts+=("$1"); case $1 in --ntasks=*) n=${1#--ntasks=};; esac; shift; done
echo "${opts[*]}" >> "$FAKE_LOGS/srun.txt"
rc=0
for ((i=0; i<n; i++)); do
  dir_var=NODE${i}_DIR
  (cd "${!dir_var:-.}" && SLURM_PROCID=$i SLURMD_NODENAME=node-$i "$@") || { c=$?; [ $c -gt $rc ] && rc=$c; }
done
exit $rc
"""
# accelerate: records its arguments and the environment the launcher set for it
FAKE_ACCELERATE = """#!/bin/bash
{ printf '%q ' "$@"; echo; } >> "$FAKE_LOGS/launches.txt"
env | grep -E '^(TORCH_)?NCCL_ASYNC_ERROR_HANDLING=|^TORCH_ELASTIC_SHUTDOWN_TIMEOUT=' | sort >> "$FAKE_LOGS/env.txt"
"""


def fake_slurm(workspace, tmp_path, accelerate: str = FAKE_ACCELERATE, **env_vars: str) -> dict:
    """A workspace where slurm/launch.sbatch finds srun, scontrol, accelerate and python; returns the environment."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _exe(
        bin_dir / "scontrol",
        "#!/bin/bash\n"
        'if [ "$1" = requeue ]; then echo "$*" >> "$FAKE_LOGS/scontrol.txt"; exit 0; fi\n'
        "printf 'node-a\\nnode-b\\n'\n",
    )
    _exe(bin_dir / "srun", FAKE_SRUN)
    _exe(bin_dir / "accelerate", accelerate)
    _exe(bin_dir / "python", f'#!/bin/bash\nexec {sys.executable} "$@"\n')
    os.symlink(os.path.join(REPO, "scripts"), workspace / "scripts")
    os.symlink(os.path.join(REPO, "slurm"), workspace / "slurm")
    logs = tmp_path / "fake-logs"
    logs.mkdir()
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SLURM_NNODES": "2",
        "SLURM_JOB_NODELIST": "node-[a-b]",
        "SLURM_JOB_ID": "4242",
        "PYTHONPATH": REPO,
        "FAKE_LOGS": str(logs),
        "HF_DATASETS_CACHE": str(tmp_path / "hf-datasets"),
        **env_vars,
    }


def sbatch(workspace, env, *args: str):
    return subprocess.run(
        [
            "bash",
            "slurm/launch.sbatch",
            "sft",
            "recipes/zephyr-7b-beta/sft.yaml",
            "recipes/accelerate/zero3.yaml",
            *args,
        ],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_sbatch_launches_every_node_with_the_recipe_batch(workspace, tmp_path):
    env = fake_slurm(workspace, tmp_path, SLURM_CPUS_PER_TASK="12")
    log = tmp_path / "fake-logs" / "launches.txt"
    proc = sbatch(workspace, env, "--learning_rate", "1e-5", "--run_name", "two words")
    assert proc.returncode == 0, proc.stderr
    assert ("effective global batch 256 = 16 per device x 1 gradient accumulation x 16 processes") in proc.stdout
    launches = log.read_text().splitlines()
    assert len(launches) == 2
    for rank, line in enumerate(launches):
        args = shlex.split(line)
        assert args[:3] == ["launch", "--config_file", "recipes/accelerate/zero3.yaml"]
        assert args[args.index("--num_machines") + 1] == "2" and args[args.index("--num_processes") + 1] == "16"
        assert args[args.index("--machine_rank") + 1] == str(rank)
        assert args[args.index("--main_process_ip") + 1] == "node-a"
        assert args[-5:] == ["recipes/zephyr-7b-beta/sft.yaml", "--learning_rate", "1e-5", "--run_name", "two words"]
        assert "--gradient_accumulation_steps" not in args, "accumulation comes from the recipe only"
        assert "--rdzv_backend" not in args, "the config's static rendezvous: node rank = SLURM_PROCID"

    # every srun (the shared-directory check, then the launch) stops all nodes when one fails, and gives its task
    # the job's CPUs
    sruns = (tmp_path / "fake-logs" / "srun.txt").read_text().splitlines()
    assert len(sruns) == 2
    for options in sruns:
        assert {"--kill-on-bad-exit=1", "--wait=60", "--cpus-per-task=12", "--ntasks=2"} <= set(options.split())
    assert (tmp_path / "fake-logs" / "env.txt").read_text().splitlines() == [
        "TORCH_ELASTIC_SHUTDOWN_TIMEOUT=110",
        "TORCH_NCCL_ASYNC_ERROR_HANDLING=1",
    ] * 2
    assert not list((workspace / "runs").rglob(".shared-check-*")), "the markers are removed after the check"


def test_sbatch_header_asks_for_requeue_and_an_early_sigterm():
    header = [
        line.split()[1] for line in open(os.path.join(REPO, "slurm", "launch.sbatch")) if line.startswith("#SBATCH")
    ]
    assert "--requeue" in header and "--signal=TERM@120" in header
    assert not any(h.startswith("--cpus-per-task") for h in header), "CPUs come from the job, not a fixed count"


def test_srun_takes_the_cpus_of_the_node_without_cpus_per_task(workspace, tmp_path):
    env = fake_slurm(workspace, tmp_path, SLURM_CPUS_ON_NODE="64")
    env.pop("SLURM_CPUS_PER_TASK", None)
    proc = sbatch(workspace, env)
    assert proc.returncode == 0, proc.stderr
    for options in (tmp_path / "fake-logs" / "srun.txt").read_text().splitlines():
        assert "--cpus-per-task=64" in options.split()


def test_a_node_without_the_shared_output_dir_refuses_before_launching(workspace, tmp_path):
    # node-1 runs from a directory of its own: the recipe's relative output_dir there is not the one node-0 marked
    node1 = tmp_path / "node1"
    node1.mkdir()
    for name in ("scripts", "recipes"):
        os.symlink(workspace / name, node1 / name)
    env = fake_slurm(workspace, tmp_path, NODE1_DIR=str(node1))
    proc = sbatch(workspace, env)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    assert "output_dir 'runs/zephyr-7b-sft-full' is not shared: node node-1 does not see" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "fake-logs" / "launches.txt").exists(), "nothing launched"
    assert not list((workspace / "runs").rglob(".shared-check-*")), "the markers are removed after a refusal too"


def test_a_step_stopped_by_sigterm_exits_143_and_requeues_the_job(workspace, tmp_path):
    # accelerate stands in for a launch whose node got SIGTERM from Slurm: the node's shell sees the signal, the
    # launcher returns 1 once its workers have saved (as accelerate does), and the step reports 143
    stopped = "#!/bin/bash\nkill -TERM $PPID\nsleep 0.2\nexit 1\n"
    env = fake_slurm(workspace, tmp_path, accelerate=stopped)
    proc = sbatch(workspace, env)
    assert proc.returncode == 143, proc.stderr
    assert (tmp_path / "fake-logs" / "scontrol.txt").read_text().split() == ["requeue", "4242"]
    assert "requeueing job 4242" in proc.stderr


def test_sbatch_refuses_a_bad_recipe_before_launching(workspace, tmp_path):
    os.symlink(os.path.join(REPO, "scripts"), workspace / "scripts")
    os.symlink(os.path.join(REPO, "slurm"), workspace / "slurm")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _exe(bin_dir / "scontrol", "#!/bin/bash\necho node-a\n")
    _exe(bin_dir / "python", f'#!/bin/bash\nexec {sys.executable} "$@"\n')
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SLURM_NNODES": "1",
        "SLURM_JOB_NODELIST": "node-a",
        "PYTHONPATH": REPO,
    }
    proc = subprocess.run(
        [
            "bash",
            "slurm/launch.sbatch",
            "dpo",
            "recipes/zephyr-7b-beta/dpo.yaml",
            "recipes/accelerate/zero3.yaml",
            "--max_completion_length",
            "512",
        ],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "error: command line override --max_completion_length" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"HF_HOME": "/shared/hf"},
        {"XDG_CACHE_HOME": "/shared/cache"},
        {"HF_HOME": "/shared/hf", "HF_DATASETS_CACHE": "/lustre/datasets"},
    ],
)
def test_the_checked_datasets_cache_is_the_one_datasets_uses(env):
    clean = {k: v for k, v in os.environ.items() if k not in ("HF_HOME", "HF_DATASETS_CACHE", "XDG_CACHE_HOME")}
    code = (
        "from distill_core.shared_fs import datasets_cache; from datasets import config; "
        "print(datasets_cache()); print(config.HF_DATASETS_CACHE)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env, "PYTHONPATH": REPO},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out[0] == out[1]


@pytest.mark.parametrize(
    "gpu_mib,preflight,launched,code",
    [
        ("81559", None, 2, 0),  # 80 GB GPUs: the Zephyr dSFT plan fits, both nodes launch
        ("24576", None, 0, 2),  # 24 GB GPUs: refused before any launch
        ("24576", "warn", 2, 0),  # told to go on anyway
    ],
)
def test_memory_plan_gates_the_launch(workspace, tmp_path, gpu_mib, preflight, launched, code):
    import json

    from test_preflight import MISTRAL_7B

    model = workspace / "mistral-config"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(MISTRAL_7B))
    env = fake_slurm(workspace, tmp_path, HF_HUB_OFFLINE="1", **({"PREFLIGHT": preflight} if preflight else {}))
    _exe(tmp_path / "bin" / "nvidia-smi", f"#!/bin/bash\necho {gpu_mib}\necho {gpu_mib}\n")
    proc = sbatch(workspace, env, "--model_name_or_path", str(model))
    assert proc.returncode == code, proc.stderr
    assert "per GPU" in proc.stdout, "the plan is printed"
    log = tmp_path / "fake-logs" / "launches.txt"
    assert (len(log.read_text().splitlines()) if log.exists() else 0) == launched
    if code:
        assert "the plan needs" in proc.stderr and "set PREFLIGHT=warn to launch anyway" in proc.stderr


def test_memory_plan_is_skipped_with_a_note_without_nvidia_smi(workspace, tmp_path):
    env = fake_slurm(workspace, tmp_path)
    env["PATH"] = ":".join(p for p in env["PATH"].split(":") if not os.path.exists(os.path.join(p, "nvidia-smi")))
    proc = sbatch(workspace, env)
    assert proc.returncode == 0, proc.stderr
    assert "memory plan skipped: nvidia-smi gave no GPU memory; set GPU_MEMORY_GB" in proc.stderr
