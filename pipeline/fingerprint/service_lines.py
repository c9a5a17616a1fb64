"""The lines of a multi-service log, one service at a time.

``docker compose logs`` (and ``docker compose up``) prints every service's output with the
service's name in front, ``api-1  | ...`` (``project_api_1 | ...`` before Compose v2), and
interleaves the services line by line as they write. A Java trace of ``api-1`` may be cut by
a ``db-1`` line anywhere: where it falls must not change what the trace is, and the name is
the log's column, not the program's output. :func:`by_service` gives each service's lines
without the prefix and together, at the place of the service's first line; a line without
the prefix stays where it is. Linear in the text (the prefix regex is bounded per line).
"""

from __future__ import annotations

import re

#: a Compose service prefix: the container name (``<service>-<n>`` or ``<project>_<service>_<n>``),
#: padded, then ``|`` and one blank (or the line's end: an empty line of the service)
_PREFIX = re.compile(r"([A-Za-z0-9][\w.-]{0,99}?[-_]\d{1,4}) *\|(?: |$)")
#: prefixed lines a text needs for its prefix to be a log's (a line or two may be prose)
_MIN_LINES = 3


def by_service(text: str) -> str | None:
    """``text`` with each Compose service's lines grouped and unprefixed, or None when the
    text is no multi-service log (fewer than three prefixed lines)."""
    if "|" not in text:
        return None
    lines = text.splitlines()
    matches = [_PREFIX.match(line) if "|" in line else None for line in lines]
    if sum(1 for m in matches if m) < _MIN_LINES:
        return None
    order: list[list[str] | str] = []
    buckets: dict[str, list[str]] = {}
    for line, found in zip(lines, matches, strict=True):
        if found is None:
            order.append(line)
            continue
        bucket = buckets.get(found.group(1))
        if bucket is None:
            bucket = buckets[found.group(1)] = []
            order.append(bucket)
        bucket.append(line[found.end():])
    out: list[str] = []
    for part in order:
        if isinstance(part, str):
            out.append(part)
        else:
            out.extend(part)
    return "\n".join(out)
