"""storage.leases: which processes hold an embedded engine, and mutual exclusion."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from storage.leases import PINNED, LeaseRegistry


def test_own_lease_is_live_until_removed(tmp_path: Path) -> None:
    leases = LeaseRegistry(tmp_path)
    with leases.locked():
        leases.add()
        assert leases.live() == [str(os.getpid())]
        leases.remove()
        assert leases.live() == []


def test_lease_of_an_exited_process_is_pruned(tmp_path: Path) -> None:
    leases = LeaseRegistry(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with leases.locked():
        leases.add(child.pid)  # a lease left by a process that has since exited
        assert leases.live() == []
    assert not (leases.users / str(child.pid)).exists()


def test_lease_of_a_reused_pid_is_pruned(tmp_path: Path) -> None:
    # Given a lease whose pid is alive but started at another time (pid reuse)
    leases = LeaseRegistry(tmp_path)
    with leases.locked():
        leases.users.mkdir(parents=True, exist_ok=True)
        (leases.users / str(os.getpid())).write_text("12.5")
        assert leases.live() == []


def test_pin_survives_pruning_until_unpinned(tmp_path: Path) -> None:
    leases = LeaseRegistry(tmp_path)
    with leases.locked():
        leases.pin()
        assert leases.live() == [PINNED]
        leases.unpin()
        assert leases.live() == []


def test_lock_excludes_other_threads_of_the_same_process(tmp_path: Path) -> None:
    leases = LeaseRegistry(tmp_path)
    inside = 0
    overlap = False
    guard = threading.Lock()

    def critical() -> None:
        nonlocal inside, overlap
        with leases.locked():
            with guard:
                inside += 1
                overlap = overlap or inside > 1
            time.sleep(0.02)
            with guard:
                inside -= 1

    threads = [threading.Thread(target=critical) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlap
