"""One run per output directory: an exclusive lock held for the whole run.

Two runs writing one directory would both pay for the same requests and then overwrite each other's datasets,
so a run takes ``<dir>/.lock`` with ``flock(LOCK_EX | LOCK_NB)`` on a descriptor it keeps open until it ends. The
kernel drops the lock when the process exits, however it exits (``kill -9`` included), so a lock file left behind
by a dead run never blocks the next one: the next run simply takes the lock and writes its own PID into the file.

The file's content (PID, host, start time, program) names the last holder; only the flock says whether that
holder is still alive. A second run finds the flock taken and stops at once with one line naming the holder.

Within one process the lock is re-entrant: a stage holds its directory for the whole run and the generation
session it opens inside takes the same directory again without blocking itself.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sys
import threading
import time

from .errors import UserError
from .placement import host_name

LOCK_NAME = ".lock"

_held: dict[str, "DirectoryLock"] = {}  # real path of the directory -> this process's lock on it
_held_guard = threading.Lock()


class DirectoryInUse(UserError):
    """Another live process holds the directory's lock."""


class DirectoryLock:
    """This process's hold on one directory; ``release`` as often as it was acquired (or let the process end)."""

    def __init__(self, directory: str, key: str, fd: int):
        self.directory = directory
        self.key = key
        self.fd = fd
        self.depth = 1

    @property
    def path(self) -> str:
        return os.path.join(self.directory, LOCK_NAME)

    def release(self) -> None:
        with _held_guard:
            if self.fd is None:
                return
            self.depth -= 1
            if self.depth > 0:
                return
            _held.pop(self.key, None)
            fd, self.fd = self.fd, None
        # Closing the last descriptor drops the flock. The file stays: deleting it would let a run that opened the
        # old file and one that creates a new one both believe they hold the lock.
        os.close(fd)

    def __enter__(self) -> "DirectoryLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _key(directory: str) -> str:
    return os.path.realpath(directory)


def _holder_text(directory: str, fd: int | None = None) -> dict:
    """The holder's record; the holder writes it just after taking the flock, so an empty file is retried briefly."""
    path = os.path.join(directory, LOCK_NAME)
    deadline = time.monotonic() + 1.0
    while True:
        try:
            if fd is not None:
                raw = os.pread(fd, 4096, 0)
            else:
                with open(path, "rb") as f:
                    raw = f.read(4096)
            record = json.loads(raw)
            if isinstance(record, dict) and record.get("pid"):
                return record
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            return {}
        time.sleep(0.02)


def describe_holder(directory: str, holder: dict) -> str:
    """One line: who holds ``directory`` and what to do about it."""
    if not holder:
        return (
            f"{directory} is in use by another run (its lock file {os.path.join(directory, LOCK_NAME)} names no "
            f"PID yet); wait for it or stop it"
        )
    program = f" ({holder['program']})" if holder.get("program") else ""
    started = f" (started {holder['started']})" if holder.get("started") else ""
    return (
        f"{directory} is in use by PID {holder.get('pid')}{program} on host {holder.get('host', '?')}{started}; "
        f"wait for it or stop it"
    )


def acquire(directory: str) -> DirectoryLock:
    """Lock ``directory`` (created if missing) for this process, or raise DirectoryInUse naming the live holder."""
    os.makedirs(directory, exist_ok=True)
    key = _key(directory)
    with _held_guard:
        mine = _held.get(key)
        if mine is not None:
            mine.depth += 1
            return mine
        # O_CLOEXEC (Python's default): a child process, such as a local model server, must not inherit the lock
        # and keep the directory locked after this run has ended.
        fd = os.open(os.path.join(directory, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
            holder = _holder_text(directory, fd)
            os.close(fd)
            raise DirectoryInUse(describe_holder(directory, holder)) from None
        record = {
            "pid": os.getpid(),
            "host": host_name(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "program": os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "",
        }
        data = (json.dumps(record) + "\n").encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        lock = DirectoryLock(directory, key, fd)
        _held[key] = lock
        return lock


def holder(directory: str) -> dict | None:
    """The record of another live process holding ``directory``, or None when it is free (or held by this process).

    A probe: it takes the flock for an instant when it is free and creates nothing.
    """
    key = _key(directory)
    with _held_guard:
        if key in _held:
            return None
    try:
        fd = os.open(os.path.join(directory, LOCK_NAME), os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            return _holder_text(directory, fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def check_free(directory: str) -> None:
    """Raise DirectoryInUse when another live process holds ``directory``."""
    found = holder(directory)
    if found is not None:
        raise DirectoryInUse(describe_holder(directory, found))
