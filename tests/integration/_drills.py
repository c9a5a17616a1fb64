"""Shared by the kill drills (single Redis and cluster): wait on a condition with a deadline,
and signal a worker process at a moment it is known to hold pending entries."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def signal_while_holding(victim: subprocess.Popen[bytes], held: Callable[[], int],
                         ended: Callable[[], bool], signum: int = signal.SIGKILL,
                         timeout: float = 120) -> int:
    """Send ``signum`` to ``victim`` at a moment ``held()`` (what XPENDING shows it holding:
    a batch read and not yet handed off) is above zero, and return that count.

    Waits until the victim holds entries, then freezes it (SIGSTOP) and looks again: a
    stopped process acknowledges nothing more, so what it holds then is what it holds when
    the signal arrives (SIGKILL acts at once; any other signal is handled as SIGCONT resumes
    it, before the held batch can be finished). If an acknowledgement landed in between,
    the victim is resumed and the wait goes on. Fails if the run ends first (``ended()``):
    a signal after the work is done tests nothing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert not ended(), "the run ended before the signal; nothing was tested"
        if held() > 0:
            victim.send_signal(signal.SIGSTOP)
            time.sleep(0.2)  # an acknowledgement already on its socket lands meanwhile
            count = held()
            if count > 0:
                victim.send_signal(signum)
                if signum == signal.SIGKILL:
                    victim.wait(60)
                else:
                    victim.send_signal(signal.SIGCONT)
                return count
            victim.send_signal(signal.SIGCONT)
        time.sleep(0.005)
    raise AssertionError(f"the victim never held an entry in {timeout:g} s")


def kill_while_holding(victim: subprocess.Popen[bytes], held: Callable[[], int],
                       ended: Callable[[], bool], timeout: float = 120) -> int:
    """SIGKILL ``victim`` while it holds entries (:func:`signal_while_holding`)."""
    return signal_while_holding(victim, held, ended, signal.SIGKILL, timeout)
