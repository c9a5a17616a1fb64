"""Wait for the pipeline's decision about one error (used by ``heal run``).

The decision is the OutcomeEvent whose ``error_id`` is ours on ``<prefix>:outcomes``. We XREAD
from the newest id taken *before* publishing, so an outcome written quickly is not missed.
When no worker serves a stage (no heartbeat from a ``heal worker`` / ``heal up`` process),
the missing stages that are built
are run in this process with ``pipeline.runtime.drain_inline``; the timeout bounds the wait
for workers, while stages run inline go to completion. A dead letter naming our id ends the
wait early.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from pipeline.config import STAGES, STREAM_DEAD, STREAM_OUTCOMES, Settings
from pipeline.errors import DecodeError, HealError, StreamUnavailable
from pipeline.events import OutcomeEvent
from pipeline.runtime import drain_inline
from pipeline.runtime import live_stages as runtime_live_stages
from pipeline.runtime.loader import built_stages
from pipeline.runtime.metrics import MetricsHook
from producers.progress import Progress, phase_hooks

POLL_MS = 250


@dataclass(frozen=True)
class Decision:
    """What the pipeline decided; ``outcome`` is None when it did not answer in time or the
    event was dead-lettered (``dead_reason``)."""

    outcome: OutcomeEvent | None
    dead_reason: str = ""
    inline: bool = False

    @property
    def applied(self) -> bool:
        return self.outcome is not None and self.outcome.status == "applied"

    @property
    def flaky(self) -> bool:
        """The failure did not reproduce on heal's plain re-run (no fix was applied)."""
        return self.outcome is not None and self.outcome.status == "flaky"


def live_stages(client: Any, settings: Settings) -> set[str]:
    """Stages with at least one running worker (from the runtime's heartbeats; a ``heal run``
    drain sends none, so it never counts as a worker).

    Raises:
        StreamUnavailable: Redis cannot be reached.
    """
    return set(runtime_live_stages(client, settings))


def _drain(settings: Settings, client: Any, stages: list[str],
           progress: Progress | None = None) -> int:
    built = {spec.name for spec in built_stages(None)}
    todo = [stage for stage in stages if stage in built]  # unbuilt stages cannot run anywhere
    if not todo:
        return 0
    if progress is not None and settings.database_url is None and any(
            s in todo for s in ("lookup", "apply", "lifecycle")):
        progress.phase("opening the pattern database…")
    hooks = [MetricsHook(), *phase_hooks(progress)]
    return int(drain_inline(settings, client, stages=todo, hooks=hooks))


class DecisionWaiter:
    """Waits (bounded) for the outcome of one error id."""

    def __init__(
        self,
        client: Any,
        settings: Settings,
        drain: Callable[[Settings, Any, list[str]], int] | None = None,
        live: Callable[[Any, Settings], set[str]] = live_stages,
        progress: Progress | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.progress = progress
        self.outcomes = settings.stream(STREAM_OUTCOMES)
        self.dead = settings.stream(STREAM_DEAD)
        self._drain = drain or (lambda s, c, stages: _drain(s, c, stages, progress))
        self._live = live
        self._cursor: dict[str, str] = {}

    def mark(self) -> None:
        """Remember the newest outcome/dead ids; call BEFORE publishing the error.

        Raises:
            StreamUnavailable: Redis cannot be reached.
        """
        for stream in (self.outcomes, self.dead):
            try:
                rows = self.client.xrevrange(stream, count=1)
            except redis.RedisError as exc:
                raise _read_error(exc, stream, self.settings.prefix) from exc
            self._cursor[stream] = _s(rows[0][0]) if rows else "0-0"

    def wait(self, error_id: str, timeout_s: float) -> Decision:
        """The decision about ``error_id``, or ``Decision(None)`` after ``timeout_s``.

        Raises:
            StreamUnavailable: Redis cannot be reached.
        """
        deadline = time.monotonic() + timeout_s
        inline = False
        while True:
            found = self._read(error_id, block_ms=0)
            if found is not None:
                return Decision(*found, inline=inline)
            missing = [s for s in STAGES if s not in self._live(self.client, self.settings)]
            if self.progress is not None and len(missing) < len(STAGES):
                self.progress.phase("waiting for the workers…")
            if missing:
                inline = True
                self._drain(self.settings, self.client, missing)
                found = self._read(error_id, block_ms=0)
                if found is not None:
                    return Decision(*found, inline=inline)
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                return Decision(None, inline=inline)
            found = self._read(error_id, block_ms=min(POLL_MS if missing else 1000, left_ms))
            if found is not None:
                return Decision(*found, inline=inline)

    def _read(self, error_id: str, block_ms: int) -> tuple[OutcomeEvent | None, str] | None:
        try:
            reply = self.client.xread(self._cursor, block=block_ms or None, count=500)
        except redis.RedisError as exc:
            raise _read_error(exc, self.outcomes, self.settings.prefix) from exc
        needle = error_id.encode()
        for stream, entries in reply or []:
            name = _s(stream)
            for entry_id, fields in entries:
                self._cursor[name] = _s(entry_id)
                payload = fields.get(b"event", b"")
                if name == self.dead:
                    if _names(fields, needle):
                        reason = fields.get(b"reason", b"dead-lettered")
                        return None, _s(reason)
                    continue
                if needle not in payload:
                    continue
                try:
                    outcome = OutcomeEvent.decode(payload)
                except DecodeError:
                    continue  # not ours to judge; the runtime dead-letters it
                if outcome.error_id == error_id:
                    return outcome, ""
        return None


def _names(fields: dict[bytes, Any], needle: bytes) -> bool:
    """Does this dead letter belong to our error? Its ``error_id`` field says so; entries
    without one are matched on the raw payload."""
    if b"error_id" in fields:
        return bool(fields[b"error_id"] == needle)
    return any(needle in v for v in fields.values() if isinstance(v, bytes))


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _read_error(exc: redis.RedisError, stream: str, prefix: str) -> HealError:
    """ConfigError when the ACL of Redis's user refused (see ``acl_refusal``), else
    StreamUnavailable naming the stream."""
    from pipeline.runtime.connection import acl_refusal

    return acl_refusal(exc, prefix) or StreamUnavailable(f"cannot read {stream}: {exc}")
