"""Stable, versioned hashes (in the spirit of Sentry's named grouping configurations).

Every hash carries the algorithm version as a prefix (``fp-v2:3f2a...``), so a fingerprint
computed by another algorithm can never be mistaken for this one. Changing anything that
alters a hash (the rule table, extraction, what goes into the coarse or fine key) means a
new entry in ``VERSIONS`` and a new ``ALGORITHM_VERSION``, never silently different hashes;
the snapshot tests under ``tests/unit/snapshots/<version>/`` make such a change visible.
"""

from __future__ import annotations

import hashlib

ALGORITHM_VERSION = "fp-v2"

#: changelog of the fingerprint algorithm versions
VERSIONS: dict[str, str] = {
    "fp-v1": "rules table v1 (url..num), extraction of python/pytest/java/node/go/compiler/"
    "shell/log errors; coarse = kind + error class + top project frame function; fine = "
    "coarse parts + normalized message + project frames; templates by frequency mining",
    "fp-v2": "rules table v2: the 'code' rule keeps HTTP statuses, exit codes, signal and "
    "errno numbers (1-3 digits after their keyword) instead of masking them as <num>; a log "
    "line's header no longer takes a bare number before ':' for a logger name, and a message "
    "that starts with a number keeps its level word ('Error 429: ...'); unittest's 'FAILED "
    "(errors=1)' tally is not read as a pytest test id (the traceback decides)",
}


def stable_hash(*parts: str, version: str = ALGORITHM_VERSION) -> str:
    """``<version>:<16 hex>`` of the parts (joined with a separator no part contains)."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(version.encode())
    for part in parts:
        digest.update(b"\x1f")
        digest.update(part.replace("\x1f", " ").encode("utf-8", "replace"))
    return f"{version}:{digest.hexdigest()}"
