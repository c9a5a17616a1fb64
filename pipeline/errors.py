"""One error tree for heal; third-party errors are translated at the boundary
(``raise ... from exc`` in storage/, the stream runtime and the git layer).

    HealError                       base; ``exit_code`` says what the CLI exits with
    ├── UsageError                  bad command-line usage (exit 2)
    ├── ConfigError                 invalid configuration or policy (exit 2)
    │   ├── PolicyError             invalid heal.toml: names the key, the value and the rule
    │   ├── StateHomeUnusable       HEAL_HOME cannot be created (every command refuses it)
    │   └── AccessRefused           Redis's ACL refused heal's keys or commands (stops a worker)
    ├── StateHomeFull               no space left where HEAL_HOME keeps its state (exit 1)
    ├── EngineError                 an engine cannot be reached or started (exit 1)
    │   ├── StreamUnavailable       Redis
    │   ├── DatabaseUnavailable     PostgreSQL
    │   └── DamagedCache            the local lookup cache is damaged and holds writes
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

import datetime as dt
import json
import math


class HealError(Exception):
    """Base of every error heal raises on purpose."""

    exit_code = 1
    #: a fault of heal's configuration or state that every event would meet and no wait
    #: mends (Redis's ACL refusing heal's keys, an audit chain heal cannot extend): the stage
    #: stops saying what to change, and its event stays pending, neither parked for ever nor
    #: dead-lettered (pipeline.runtime.processing)
    stops_stage = False


class UsageError(HealError):
    exit_code = 2


class ConfigError(HealError):
    exit_code = 2


class AccessRefused(ConfigError):
    """The ACL of HEAL_REDIS_URL's user refused heal's keys or a command (NOPERM): no event's
    fault and no wait ends it, so a stage worker stops on it (the entry stays pending) rather
    than retrying or dead-lettering; any other ConfigError met while handling one event is
    handled as that event's failure."""

    stops_stage = True


class StateHomeUnusable(ConfigError):
    """HEAL_HOME could not be created (``HEAL_HOME=/proc/x``): nothing heal keeps can be read
    or written there, so a command that reports what it could not reach (``heal audit
    verify``'s witnesses) refuses it like every other command."""


def toml_value(value: object, limit: int = 200) -> str:
    """``value`` spelled as in a TOML file (``true``, ``"text"``, ``01:00:00``, ``[1, 2]``,
    ``{ a = 1 }``), cut to ``limit`` characters: the value as its author wrote it, never a
    Python repr (``True``, ``datetime.time(1, 0)``); a hostile file's value may be huge or
    deeply nested, so the spelling stops once it is long enough."""
    out: list[str] = []
    size = 0

    def put(text: str) -> bool:
        nonlocal size
        out.append(text)
        size += len(text)
        return size <= limit

    def spell(item: object, depth: int) -> bool:
        if depth > 32:
            return put("…")
        if isinstance(item, list | tuple):
            if not put("["):
                return False
            for i, sub in enumerate(item):
                if (i and not put(", ")) or not spell(sub, depth + 1):
                    return False
            return put("]")
        if isinstance(item, dict):
            if not put("{"):
                return False
            for i, (key, sub) in enumerate(item.items()):
                if not put((", " if i else " ") + _toml_key(str(key)) + " = ") or \
                        not spell(sub, depth + 1):
                    return False
            return put(" }" if item else "}")
        return put(_toml_scalar(item))

    spell(value, 0)
    text = "".join(out)
    return text if len(text) <= limit else text[:limit] + "…"


def bound(number: float) -> str:
    """A limit of a rule as the README writes it: ``1000000``, ``0.5``, never ``1e+06``."""
    if float(number).is_integer() and abs(number) < 1e16:
        return str(int(number))
    return repr(float(number)).replace("e+", "e")


def _toml_key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key)
    return key if bare else json.dumps(key, ensure_ascii=False)


def _toml_scalar(value: object) -> str:
    if value is None:  # a required key that is missing: TOML has no null
        return "(not set)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        # (1e308 as written, not Python's 1e+308; both are TOML)
        return repr(value).replace("e+", "e")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value[:10_000], ensure_ascii=False)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return repr(value)[:10_000]


class PolicyError(ConfigError):
    """Invalid ``heal.toml``; the message names the key, the value and the rule."""

    def __init__(self, key: str, value: object, rule: str) -> None:
        super().__init__(f"heal.toml: {key} = {toml_value(value)}: {rule}")
        self.key = key
        self.value = value
        self.rule = rule

    @classmethod
    def whole_file(cls, path: str, why: str) -> PolicyError:
        """The file itself is refused (not TOML, a symbolic link, too large): the message
        names the file, not a key (``heal.toml: /repo/heal.toml: not valid TOML: ...``)."""
        exc = cls("(file)", path, why)
        sep = " " if why.startswith(("is ", "cannot ")) else ": "
        exc.args = (f"heal.toml: {path}{sep}{why}",)
        return exc


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


class DamagedCache(EngineError):
    """The local lookup cache under HEAL_HOME is damaged (found at open or by a query) and its
    outbox still holds writes that can be read, so heal does not replace it (or ``heal
    status``, which creates no state, found it damaged): the message says how many and what to
    do. No wait mends it, so a stage stops on it (``stops_stage``), its event left pending,
    not parked for ever as in an outage."""

    stops_stage = True


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
    """Try this event again after ``delay`` seconds (the runtime caps and backs off).

    ``counted=False``: the wait is not the event's failure (it waits for something that
    ends on its own, e.g. another live worker's claim that lapses when that worker dies),
    so this delivery does not count towards ``max_deliveries``."""

    def __init__(self, reason: str = "retry requested", delay: float | None = None,
                 *, counted: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay
        self.counted = counted


class PermanentError(StageControl):
    """This event can never be handled; dead-letter it now with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
