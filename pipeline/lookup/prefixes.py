"""Line prefixes that CI systems, log collectors and test runners put in front of a tool's
own output, removed before the detection rules look at a line.

A rule anchored at the start of a line (``^fatal: Unable to create ...``) would otherwise miss
``2024-05-01T10:00:00Z fatal: ...``, ``##[error]fatal: ...``, ``[build] fatal: ...``,
``remote: fatal: ...`` or a coloured line. The catalog tries the text as it is first, then
this view of it, so rules written for the bare tool output keep their parameters.

One regex, anchored, each alternative starting with a distinct literal shape and nothing
after the repetition that could force backtracking: linear on any input.
"""

from __future__ import annotations

import re

from pipeline.ansi import strip_ansi

PREFIX = re.compile(
    r"""^(?:
        \d{4}-\d\d-\d\d[T\ ]\d\d:\d\d:\d\d(?:[.,]\d{1,9})?(?:Z|\ ?[+-]\d\d:?\d\d)?[\ \t]
                                                        # ISO timestamp (GitHub, GitLab, k8s)
      | [A-Z][a-z]{2}\ {1,2}\d{1,2}\ \d\d:\d\d:\d\d[\ \t]   # syslog
      | \[?\d\d:\d\d:\d\d(?:[.,]\d{1,9})?\]?[\ \t]        # a time of day, bracketed or not
      | \#\#\[(?:error|warning|notice|debug|command)\]      # GitHub Actions annotations
      | \[[A-Za-z][\w.:/@-]{0,40}\][\ \t]                   # [build] [app-1] [ERROR] tags
      | remote:\                                            # git server messages
      | [A-Za-z][\w.-]{0,39}\ {0,8}\|\                      # docker compose: "web_1  | "
      | \#\d{1,4}\ \d{1,6}\.\d{1,3}\                        # BuildKit: "#8 0.512 "
      | E\ {3}                                              # pytest's error lines
    ){1,6}""",
    re.VERBOSE,
)

MAX_CHARS = 1 << 17


def strip_prefixes(text: str) -> str:
    """The text with ANSI codes and each line's CI/log prefix removed (see the module)."""
    text = strip_ansi(text[:MAX_CHARS])
    return "\n".join(PREFIX.sub("", line, count=1) for line in text.split("\n"))
