"""The multi-node launcher builds one accelerate launch per node and never touches gradient accumulation.

Slurm itself is not available here, so `srun` and `scontrol` are stood in for by small scripts that run
each task locally, and `accelerate` by one that records its arguments; everything else is the real script.
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys

from conftest import REPO


def _exe(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_sbatch_launches_every_node_with_the_recipe_batch(workspace, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "launches.txt"
    _exe(bin_dir / "scontrol", "#!/bin/bash\nprintf 'node-a\\nnode-b\\n'\n")
    # run each of the --ntasks tasks with its SLURM_PROCID, as srun would on each node
    _exe(bin_dir / "srun", "#!/bin/bash\nn=1\nfor a in \"$@\"; do case $a in --ntasks=*) n=${a#--ntasks=};; esac; done\n"
                           "cmd=\"${@: -1}\"\nfor ((i=0; i<n; i++)); do SLURM_PROCID=$i bash -c \"$cmd\" || exit $?; done\n")
    _exe(bin_dir / "accelerate", f"#!/bin/bash\n{{ printf '%q ' \"$@\"; echo; }} >> {log}\n")
    _exe(bin_dir / "python", f"#!/bin/bash\nexec {sys.executable} \"$@\"\n")
    os.symlink(os.path.join(REPO, "scripts"), workspace / "scripts")
    os.symlink(os.path.join(REPO, "slurm"), workspace / "slurm")

    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "node-[a-b]",
           "PYTHONPATH": REPO}
    proc = subprocess.run(["bash", "slurm/launch.sbatch", "sft", "recipes/zephyr-7b-beta/sft.yaml",
                           "recipes/accelerate/zero3.yaml", "--learning_rate", "1e-5", "--run_name", "two words"],
                          cwd=workspace, env=env, capture_output=True, text=True, timeout=120)
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


def test_sbatch_refuses_a_bad_recipe_before_launching(workspace, tmp_path):
    os.symlink(os.path.join(REPO, "scripts"), workspace / "scripts")
    os.symlink(os.path.join(REPO, "slurm"), workspace / "slurm")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _exe(bin_dir / "scontrol", "#!/bin/bash\necho node-a\n")
    _exe(bin_dir / "python", f"#!/bin/bash\nexec {sys.executable} \"$@\"\n")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_NNODES": "1", "SLURM_JOB_NODELIST": "node-a",
           "PYTHONPATH": REPO}
    proc = subprocess.run(["bash", "slurm/launch.sbatch", "dpo", "recipes/zephyr-7b-beta/dpo.yaml",
                           "recipes/accelerate/zero3.yaml", "--max_prompt_length", "512"],
                          cwd=workspace, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "error: command line override --max_prompt_length" in proc.stderr and "Traceback" not in proc.stderr
