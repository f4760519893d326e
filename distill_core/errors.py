"""Errors a user can act on, and the one place that turns them into an exit code."""

from __future__ import annotations

import sys
from typing import Callable, NoReturn

from .placement import host_name, spans_nodes, speaks_for_node

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_PREEMPTED = 143  # 128 + SIGTERM: stopped by the scheduler after saving a checkpoint; rerun to resume


class UserError(Exception):
    """A problem with the user's input (recipe, dataset, argument, endpoint).

    The message is one line that names the file or field at fault and says how to fix it.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class RecipeError(UserError):
    """A recipe or command-line override that does not validate."""


class DataError(UserError):
    """A dataset that is missing, unreadable or lacks the columns a stage needs."""


def first_line(exc: BaseException) -> str:
    """What a one-line error quotes of an exception from a library: its message's first line, else its type."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def fail(message: str) -> NoReturn:
    # Under a launch every rank meets the same bad input: one process per node says so. Not only global rank 0:
    # a problem met on another node (a path it lacks) would otherwise show only as a collective timeout elsewhere.
    if speaks_for_node():
        where = f"[{host_name()}] " if spans_nodes() else ""
        print(f"error: {where}{message}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_USER_ERROR)


def run_cli(main: Callable[[list[str]], int | None], argv: list[str] | None = None) -> NoReturn:
    """Run a script's main; user errors become one stderr line and a non-zero exit, never a traceback."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        code = main(argv)
    except UserError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        print("interrupted: partial outputs are kept; rerun the same command to resume", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED)
    raise SystemExit(code or 0)
