"""Who is using an embedded engine: a lock file plus one lease file per process.

An embedded engine (Redis, PostgreSQL) is shared by every ``heal`` process on one
``$HEAL_HOME``. Each process that uses it holds a *lease*: a file ``users/<pid>`` whose content
is the process start time, so a lease left behind by a killed process (SIGKILL, power loss) is
recognised as stale even when the pid is later reused, and pruned. ``heal engines start``
adds the special lease ``pinned``, which keeps the engine running after its last process exits
until ``heal engines stop``.

All reads and writes happen under an exclusive ``flock`` on ``engine.lock``: starting the
server, adding a lease, removing the last lease and stopping the server are one critical
section, so two processes never start two servers and a server is never stopped while a
newcomer is attaching to it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import psutil

PINNED = "pinned"


def _start_time(pid: int) -> str | None:
    try:
        return repr(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


class LeaseRegistry:
    """The lock and the leases of one embedded engine, kept in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.users = directory / "users"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the engine's exclusive lock (blocks until free); raises OSError if the folder
        cannot be created."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.users.mkdir(mode=0o700, exist_ok=True)
        # A fresh open file description per call: flock then excludes other threads of this
        # process too, not only other processes.
        fd = os.open(self.directory / "engine.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def add(self, pid: int | None = None) -> None:
        """Record that process ``pid`` (default: this one) uses the engine. Call under lock."""
        pid = os.getpid() if pid is None else pid
        _write_private(self.users / str(pid), _start_time(pid) or "")

    def remove(self, pid: int | None = None) -> None:
        """Drop the lease of ``pid`` (default: this one). Call under lock."""
        pid = os.getpid() if pid is None else pid
        (self.users / str(pid)).unlink(missing_ok=True)

    def holds(self, pid: int | None = None) -> bool:
        """Whether ``pid`` (default: this one) has a lease file (``heal engines stop --force``
        deletes it under a running process)."""
        pid = os.getpid() if pid is None else pid
        return (self.users / str(pid)).exists()

    def pin(self) -> None:
        _write_private(self.users / PINNED, "")

    def unpin(self) -> None:
        (self.users / PINNED).unlink(missing_ok=True)

    def clear(self) -> None:
        """Drop every lease (used by an explicit stop). Call under lock."""
        for path in self.users.glob("*"):
            path.unlink(missing_ok=True)

    def live(self) -> list[str]:
        """Names of the live leases (pids, and ``pinned``); stale ones are deleted. Call under
        lock."""
        if not self.users.is_dir():
            return []
        alive: list[str] = []
        for path in sorted(self.users.iterdir()):
            if path.name == PINNED:
                alive.append(PINNED)
                continue
            if not path.name.isdigit():
                continue
            started = _start_time(int(path.name))
            recorded = path.read_text().strip()
            if started is not None and (not recorded or recorded == started):
                alive.append(path.name)
            else:
                path.unlink(missing_ok=True)
        return alive


def _write_private(path: Path, text: str) -> None:
    """``path`` holding ``text``, created 0600 (whatever the umask)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
