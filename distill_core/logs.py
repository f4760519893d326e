"""Logging set-up shared by every script: one format, the process rank (and on several nodes the host) in each line."""

from __future__ import annotations

import logging
import os
import sys
import warnings

from .placement import host_name, spans_nodes


def setup_logging(level: int = logging.INFO) -> None:
    rank = os.environ.get("RANK", "0")
    where = f"{host_name()} " if spans_nodes() else ""  # on several nodes a line also says which one wrote it
    fmt = f"%(asctime)s [{where}rank{rank}] %(levelname)s %(name)s: %(message)s"
    root = logging.getLogger()
    if not any(getattr(h, "_distill", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter(fmt, datefmt="%H:%M:%S"))
        handler._distill = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name in ("training", "data_gen", "distill_core", "__main__"):
        logging.getLogger(name).setLevel(level)
    # torch's own collectives warn about their deprecated names on every DeepSpeed step
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed")
    warnings.filterwarnings("ignore", message=".*pin_memory.*no accelerator is found.*")
    # TRL 1.16 still passes transformers 5's deprecated gradient_checkpointing names internally
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*deprecated.*", category=FutureWarning)
    # bitsandbytes warns at import about an optional CPU kernel package it can do without
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
