"""The one line of an error text that says what failed, and the project file and line it
names (used by CI reports and ``heal issues list``). Both regexes run in linear time: no
nested quantifiers, bounded repetitions, and at most the last 2,000 lines / 64 KiB are read."""

from __future__ import annotations

import re
from pathlib import Path

#: ``path/to/file.ext:LINE`` (optionally ``:COL``); no nested quantifiers, so linear time
_LOCATION = re.compile(r"(?<![\w./-])([\w.-][\w./-]{0,300}\.[A-Za-z]{1,10}):(\d{1,7})\b")
#: lines that only point at a location (ruff's ``--> file:1:8``, rustc's ``--> src/x.rs:3:5``)
_POINTER = re.compile(r"^\s{0,20}-->\s")


def locate(text: str, repo: str) -> tuple[str, int] | None:
    """The first ``file:line`` in ``text`` naming a file that exists in ``repo``."""
    root = Path(repo) if repo else None
    for m in _LOCATION.finditer(text[-65536:]):
        rel = m.group(1).removeprefix("./")
        if root is not None and (root / rel).is_file():
            return rel, int(m.group(2))
    return None


def headline(text: str, status: int) -> str:
    """The line of ``text`` that says what failed: the first one naming a location (with the
    line before it when that line only points there), else the last non-empty line."""
    lines = [ln.rstrip() for ln in text.splitlines()[-2000:]]
    for i, line in enumerate(lines):
        if _LOCATION.search(line):
            if _POINTER.match(line):
                before = next((p.strip() for p in reversed(lines[:i]) if p.strip()), "")
                return f"{before} ({line.strip().removeprefix('-->').strip()})"[:300]
            return line.strip()[:300]
    for line in reversed(lines):
        if line.strip():
            return line.strip()[:300]
    return f"command exited with status {status}"
