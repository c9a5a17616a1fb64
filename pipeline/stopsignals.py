"""SIGTERM/SIGHUP noted, not acted on, while a command such as ``heal run`` cannot act on
them yet (its imports, its argument checks) or no longer should (its status is decided, the
engines are being released): :func:`defer` installs the note, :func:`take` reads it.

``heal run``'s entry point defers them before its heavy imports (an early SIGTERM, from a
runner cancelling the job, is then a stop with the decision JSON written, not a death with
143 and nothing written), and they stay deferred after the run (then ignored, once its
last exit handler ran), so a second SIGTERM while heal releases its engines cannot change
the exit status the JSON already says. Imports only
the standard library: it runs before anything else is loaded.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

#: the stop signals a runner sends (SIGINT, Ctrl-C, is Python's KeyboardInterrupt)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)

#: the names of the stop signals noted and not taken yet, in arrival order
_pending: list[str] = []


def _note(signum: int, _frame: Any) -> None:
    _pending.append(signal.Signals(signum).name)


def defer() -> dict[int, Any]:
    """From now on (main thread only) SIGTERM/SIGHUP are noted for :func:`take` instead of
    ending the process; one already ignored (``nohup``) stays ignored. Returns the handlers
    replaced, for :func:`restore`."""
    replaced: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return replaced
    for sig in STOP_SIGNALS:
        current = signal.getsignal(sig)
        if current in (signal.SIG_IGN, _note):
            continue
        replaced[sig] = signal.signal(sig, _note)
    return replaced


def restore(replaced: dict[int, Any]) -> None:
    """Put back what :func:`defer` replaced."""
    for sig, handler in replaced.items():
        signal.signal(sig, handler)


def ignore() -> None:
    """SIGTERM/SIGHUP ignored from now on, by the kernel: for the last moments of a process
    whose exit status is decided (Python's finalization resets its own handlers to the
    default, which would make a late signal a death with 143 again). Main thread only."""
    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


def take() -> str:
    """The first stop signal noted since the last call ("SIGTERM", "SIGHUP"), "" when none;
    the notes are cleared."""
    first = _pending[0] if _pending else ""
    _pending.clear()
    return first
