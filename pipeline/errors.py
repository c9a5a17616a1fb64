"""One error tree for heal; third-party errors are translated at the boundary
(``raise ... from exc`` in storage/, the stream runtime and the git layer).

    HealError                       base; ``exit_code`` says what the CLI exits with
    ├── UsageError                  bad command-line usage (exit 2)
    ├── ConfigError                 invalid configuration or policy (exit 2)
    │   └── PolicyError             invalid heal.toml: names the key, the value and the rule
    ├── StateHomeFull               no space left where HEAL_HOME keeps its state (exit 1)
    ├── EngineError                 an engine cannot be reached or started (exit 1)
    │   ├── StreamUnavailable       Redis
    │   └── DatabaseUnavailable     PostgreSQL
    ├── QueryError                  PostgreSQL rejected a statement (carries ``sqlstate``)
    ├── DecodeError                 a stream payload that cannot be decoded (carries raw bytes)
    │   └── EventValidationError    decoded, but fails the contract (carries raw bytes)
    ├── DamagedFile                 an input file readable only in part (a truncated .gz)
    ├── GitError                    a git operation failed
    ├── FixError                    a fix cannot be rendered or applied
    │   └── ParameterError          a fix parameter is outside its declared bounds
    └── StageControl                control flow for stage handlers (not failures of heal)
        ├── Retry                   try again later (``delay`` seconds); the runtime backs off
        └── PermanentError          will never succeed; dead-letter at once with the reason
"""

from __future__ import annotations


class HealError(Exception):
    """Base of every error heal raises on purpose."""

    exit_code = 1


class UsageError(HealError):
    exit_code = 2


class ConfigError(HealError):
    exit_code = 2


def short_repr(value: object, limit: int = 200) -> str:
    """``repr(value)`` cut to ``limit`` characters: a hostile file's value may be huge."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"<{type(value).__name__} nested too deeply>"
    return text if len(text) <= limit else text[:limit] + "…"


class PolicyError(ConfigError):
    """Invalid ``heal.toml``; the message names the key, the value and the rule."""

    def __init__(self, key: str, value: object, rule: str) -> None:
        super().__init__(f"heal.toml: {key} = {short_repr(value)}: {rule}")
        self.key = key
        self.value = value
        self.rule = rule


class StateHomeFull(HealError):
    """A write under HEAL_HOME found its file system full (ENOSPC, or the user's quota):
    the work failed (exit 1); the message names the path and what to do. A HEAL_HOME that
    cannot be written at all (read-only, permission denied) is a ConfigError instead."""


class EngineError(HealError):
    pass


class StreamUnavailable(EngineError):
    pass


class DatabaseUnavailable(EngineError):
    pass


class QueryError(HealError):
    """A statement the database rejected (syntax, constraint, missing table): a bug or a schema
    mismatch, not an outage, so it is never retried as if the server were down."""

    def __init__(self, message: str, sqlstate: str = "") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class DecodeError(HealError):
    """A payload that cannot be decoded; ``raw`` keeps the bytes for the dead-letter stream."""

    def __init__(self, reason: str, raw: bytes) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw


class EventValidationError(DecodeError):
    pass


class DamagedFile(HealError):
    """A file that could be read only up to ``offset`` (decompressed bytes for a .gz): a
    truncated or corrupt archive, a read error. What came before was used."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"{path}: {reason}; "
                         + (f"read up to byte {offset} (whole lines), the rest cannot be read"
                            if offset else "nothing could be read"))
        self.path, self.offset, self.reason = path, offset, reason


class GitError(HealError):
    pass


class FixError(HealError):
    pass


class ParameterError(FixError):
    pass


class StageControl(HealError):
    """Raised by stage handlers to steer the runtime; never a bug in heal itself."""


class Retry(StageControl):
    """Try this event again after ``delay`` seconds (the runtime caps and backs off)."""

    def __init__(self, reason: str = "retry requested", delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class PermanentError(StageControl):
    """This event can never be handled; dead-letter it now with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
