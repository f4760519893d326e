"""Where this process runs in a launch: its ranks, its node and the host's name.

torchrun (what `accelerate launch` runs on each node) gives every worker RANK, LOCAL_RANK, GROUP_RANK (the rank of
its node), WORLD_SIZE and LOCAL_WORLD_SIZE. A process started without a launcher has none of them: it is rank 0 of
a world of one, on one node. The host is named as Slurm names it (SLURMD_NODENAME) when there is one, so that a
line in a job log points at the node in `squeue`/`sinfo`, else by the machine's host name.
"""

from __future__ import annotations

import os
import socket


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def host_name() -> str:
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname()


def spans_nodes() -> bool:
    """True when the launch has processes on more than one node."""
    world = _env_int("WORLD_SIZE", 1)
    return world > _env_int("LOCAL_WORLD_SIZE", world)


def is_main_process() -> bool:
    """Global rank 0: the one process of the whole launch that prints results and writes shared outputs."""
    return _env_int("RANK", 0) == 0


def speaks_for_node() -> bool:
    """The one process per node that reports what every process on it meets: local rank 0.

    Without LOCAL_RANK (no launcher, or one that sets only RANK) it is the main process.
    """
    if "LOCAL_RANK" in os.environ:
        return _env_int("LOCAL_RANK", 0) == 0
    return is_main_process()


def describe_process(world_size: int, rank: int, local_rank: int) -> str:
    """One line per process at start-up: each node's log then shows the world it joined."""
    return (
        f"process rank={rank} local_rank={local_rank} node_rank={_env_int('GROUP_RANK', 0)} "
        f"world_size={world_size} host={host_name()}"
    )
