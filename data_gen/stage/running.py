"""How every generation stage runs: a dry run's estimate or a locked run, and its requests in one session."""

from __future__ import annotations

import contextlib
from typing import Callable

from distill_core import locks

from ..client import BudgetExceeded
from ..endpoints import TeacherConfig
from ..session import GenerationSession
from .arguments import GenerationArguments
from .estimates import print_estimate
from .outcome import request_failures


def stage_lock(out_dir: str) -> locks.DirectoryLock:
    """Hold ``out_dir`` for the whole run (``with stage_lock(dir):``); a second run on it stops at once."""
    return locks.acquire(out_dir)


def estimate_or_run(args: GenerationArguments, estimate: Callable[[], list[dict]], run: Callable[[], str]) -> str:
    """A dry run prints ``estimate()``'s rows and sends nothing; a run holds output_dir while ``run()`` goes."""
    if args.dry_run:
        print_estimate(estimate())
        return "dry run: nothing sent"
    with stage_lock(args.output_dir):  # the whole run, outputs included: a second run on this directory stops at once
        return run()


def generate(
    args: GenerationArguments, roles: dict[str, TeacherConfig], work: Callable[[GenerationSession], None]
) -> tuple[dict, dict]:
    """``work(gen)`` in the stage's generation session; the session's stats and this run's request failures.

    A budget stop ends ``work`` early and keeps whatever it had gathered so far; the stats say
    ``stopped_by_budget``, and the stage writes that partial result.
    """
    with GenerationSession.for_stage(args, roles) as gen:
        with contextlib.suppress(BudgetExceeded):
            work(gen)
        return gen.stats(), request_failures(gen)
