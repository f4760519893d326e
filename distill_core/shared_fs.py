"""Check, before a multi-node job trains, that every node sees the same output_dir and datasets cache.

Nodes read what other nodes wrote there. A ZeRO-3 checkpoint is written by every rank (its shard) and by rank 0
(trainer_state.json, which marks it complete), and on resume every node must find it whole; the datasets cache holds
tokenized data and precomputed reference log-probs that one process writes and others read. On node-local disks the
nodes disagree about which checkpoint exists or miss each other's cache files, and the ranks hang in a collective.

The check writes a marker named after the job into each directory from the first node, then every node looks for
it. That tests the property itself, whatever the filesystem: a list of filesystem types (refuse tmpfs or ext4,
accept nfs or lustre) would both refuse a shared mount of an unlisted type and accept a local mount of a listed one.
"""

from __future__ import annotations

import os
import time

from .errors import UserError
from .placement import host_name

MARKER = ".shared-check-{token}"


def datasets_cache() -> str:
    """datasets.config.HF_DATASETS_CACHE's rule, without the 3 s import of datasets on every node."""
    if os.environ.get("HF_DATASETS_CACHE"):
        return os.environ["HF_DATASETS_CACHE"]
    xdg = os.environ.get("XDG_CACHE_HOME", "~/.cache")
    return os.path.join(os.path.expanduser(os.environ.get("HF_HOME", os.path.join(xdg, "huggingface"))), "datasets")


def directories(output_dir: str) -> dict[str, str]:
    return {"output_dir": output_dir, "datasets cache (HF_DATASETS_CACHE or HF_HOME)": datasets_cache()}


def mark(dirs: dict[str, str], token: str) -> None:
    for path in dirs.values():
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, MARKER.format(token=token)), "w", encoding="utf-8") as f:
            f.write(host_name() + "\n")


def check(dirs: dict[str, str], token: str, tries: int = 3, pause_s: float = 2.0) -> None:
    """Raise on the first directory whose marker this node cannot see; a few looks allow for NFS attribute caching."""
    for what, path in dirs.items():
        marker = os.path.join(path, MARKER.format(token=token))
        for attempt in range(tries):
            if os.path.exists(marker):
                break
            if attempt + 1 < tries:
                time.sleep(pause_s)
        else:
            raise UserError(
                f"{what} '{path}' is not shared: node {host_name()} does not see {marker} written by the "
                f"job's first node; put it on a filesystem every node mounts at the same path"
            )


def clear(dirs: dict[str, str], token: str) -> None:
    for path in dirs.values():
        try:
            os.remove(os.path.join(path, MARKER.format(token=token)))
        except FileNotFoundError:
            pass
