"""Bounded regex work over event text (issue 11, item 6).

Event text is attacker-controlled: a 64 KB line built from a pattern's own atoms makes a
backtracking pattern quadratic, and the standard ``re`` engine holds the GIL while it
works, so a slow search freezes every stage thread and the heartbeats of the process.

Detection and parameter rules therefore run on the ``regex`` engine, which

* takes a ``timeout`` per search (a rule that runs out of time counts as no match and is
  logged with its name; a whole detection pass has one shared budget, so 150 rules cannot
  add up to 150 timeouts),
* counts that timeout in CPU time of the searching thread (measured: a 0.3 s timeout ends
  after 0.30 s of CPU and 0.6-0.8 s of wall time on a loaded 2-core machine), and so does
  the pass budget here (``time.thread_time``): the bounds are a work budget, so a loaded
  machine neither makes a rule give up on a text it would match (a wall-clock budget
  would, at a load of 4, after a quarter of the work) nor lets a hostile text buy more
  work; the wall time of a pass is its CPU time times the machine's load,
* releases the GIL while it matches an immutable ``str`` (the heartbeat thread keeps
  beating while a worker thread searches), and
* avoids most of the pathological backtracking ``re`` falls into (``^\\s*\\d+`` over
  64 K newlines: 113 s with ``re``, 60 us with ``regex``).

The normalization table (``pipeline/fingerprint/rules.py``) stays on ``re`` for throughput:
it runs behind a linear blob pre-pass and a guard, and the fuzz test
(``tests/security/test_regex_bounds.py``) holds every table, seed and parameter regex to
well under a second on 64 KB adversarial lines.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import regex

log = logging.getLogger("heal.regex")

#: the most CPU time one search may take before it counts as no match
SEARCH_TIMEOUT_S = 0.25
#: the most CPU time one detection pass over a text (every rule of the catalog) may take
PASS_BUDGET_S = 1.0
#: parameter rules read each line up to this many characters (the window: a line that
#: names a port, host or path is short; what backtracking remains stays per line)
MAX_LINE_CHARS = 512

BoundedPattern = Any  # a regex.Pattern[str]; the stubs' generic is not worth the import


def compile_bounded(pattern: str, flags: int = 0) -> BoundedPattern:
    """Compile with the ``regex`` engine (``re`` syntax, ``re`` flag values).

    Raises:
        regex.error: the pattern does not compile.
    """
    return regex.compile(pattern, flags)


class Budget:
    """The CPU time left for one pass of searches over one text (in the thread that made
    the budget and searches with it: each stage worker thread makes its own)."""

    def __init__(self, seconds: float = PASS_BUDGET_S) -> None:
        self.deadline = time.thread_time() + seconds
        self.timeouts: list[str] = []

    def remaining(self) -> float:
        return self.deadline - time.thread_time()

    def search(self, pattern: BoundedPattern, text: str, name: str) -> Any:
        """``pattern.search(text)`` within the budget; ``None`` when out of time (logged)."""
        left = min(SEARCH_TIMEOUT_S, self.remaining())
        if left <= 0:
            self._timed_out(name, len(text), "the pass budget is spent")
            return None
        try:
            return pattern.search(text, timeout=left)
        except TimeoutError:
            self._timed_out(name, len(text), f"more than {left:.2f}s of CPU")
            return None

    def _timed_out(self, name: str, size: int, why: str) -> None:
        self.timeouts.append(name)
        if len(self.timeouts) == 1:  # one line per pass: a hostile text must not flood logs
            log.warning("regex %s gave up on a %d-character text (%s): treated as no match;"
                        " the text is hostile or the rule backtracks", name, size, why)


def clip_lines(text: str, limit: int = MAX_LINE_CHARS) -> str:
    """``text`` with every line cut to ``limit`` characters (linear; short texts as is)."""
    if len(text) <= limit:
        return text
    return "\n".join(line[:limit] for line in text.split("\n"))
