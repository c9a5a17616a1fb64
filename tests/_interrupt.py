"""For tests that press Ctrl-C on a `heal run` they start: its SIGINT back to the default.

A program started in the background by a shell without job control (`cmd &` inside a
script or a subshell, as some CI wrappers do) inherits SIGINT *ignored*, and Python then keeps
it ignored: `heal run` and its command would never see the test's Ctrl-C, and the command
would run to its end. Passed as ``preexec_fn``, this gives the started process the
disposition a terminal's foreground job has."""

from __future__ import annotations

import signal


def sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
