"""Reading back events still held in the pipeline's streams, newest first (bounded), for what
PostgreSQL does not keep: error texts and outcome details of escalations, error tags."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import redis

from pipeline.errors import AccessRefused, HealError, StreamUnavailable
from pipeline.runtime.connection import acl_refusal

T = TypeVar("T")

#: at most this many entries are read per scan
SCAN_LIMIT = 100_000


def newest_first(client: redis.Redis, stream: str, decode: Callable[[bytes], T],
                 limit: int = SCAN_LIMIT, prefix: str = "") -> Iterator[T]:
    """Decoded events of ``stream``, newest first, at most ``limit`` entries read; malformed
    entries are skipped (they are the dead-letter stage's business). Raises
    StreamUnavailable when Redis cannot be reached, AccessRefused when its ACL refuses
    (see :func:`newest_entries`)."""
    for _order, event in _newest_entries(client, stream, decode, limit, prefix):
        yield event


def newest_entries(client: redis.Redis, stream: str, limit: int, page_size: int = 1000,
                   prefix: str = "") -> Iterator[tuple[Any, dict[Any, Any]]]:
    """``(entry id, fields)`` of ``stream``, newest first, at most ``limit`` entries read
    (in pages of ``page_size``).

    Raises:
        StreamUnavailable: Redis cannot be reached.
        AccessRefused: Redis answered and its user's ACL refused the read: not an outage
            (the message says what to grant; ``prefix``: HEAL_STREAM_PREFIX, to name it).
    """
    last: Any = b"+"
    seen = 0
    try:
        while seen < limit:
            page: list[Any] = client.xrevrange(stream, max=last, count=page_size) or []
            page = [e for e in page if e[0] != last]  # ``max`` is inclusive
            if not page:
                return
            seen += len(page)
            for entry_id, fields in page:
                yield entry_id, fields or {}
            last = page[-1][0]
    except redis.RedisError as exc:
        refused = acl_refusal(exc, prefix or "<HEAL_STREAM_PREFIX>")
        if refused is not None:
            raise AccessRefused(f"reading {stream}: Redis refused it: {refused}") from exc
        raise StreamUnavailable(f"reading {stream}: Redis unreachable: {exc}") from exc


def _newest_entries(client: redis.Redis, stream: str, decode: Callable[[bytes], T],
                    limit: int, prefix: str = "") -> Iterator[tuple[tuple[int, str, int], T]]:
    """``(entry id as (ms, seq), event)`` of ``stream``, newest first (see newest_first)."""
    for entry_id, fields in newest_entries(client, stream, limit, prefix=prefix):
        event = _decode(fields.get(b"event"), decode)
        if event is not None:
            yield _order(entry_id, event), event


def _order(entry_id: Any, event: Any) -> tuple[int, str, int]:
    """Newest-first order across streams: the entry id's milliseconds, then (entries of
    different streams added in one millisecond share it: their sequence numbers count per
    stream) the event's own ``ts`` (microseconds when heal made it)."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    ms, _, seq = text.partition("-")
    return int(ms), str(getattr(event, "ts", "") or ""), int(seq or 0)


def _decode(raw: bytes | None, decode: Callable[[bytes], T]) -> T | None:
    if not raw:
        return None
    try:
        return decode(raw)
    except HealError:
        return None


def newest_first_everywhere(client: redis.Redis, settings: Any, suffix: str,
                            decode: Callable[[bytes], T], limit: int = SCAN_LIMIT
                            ) -> Iterator[T]:
    """``newest_first`` over every partition of a pipeline stream (``HEAL_PARTITIONS``),
    merged: newest first ACROSS the partitions (by stream entry id, the time Redis added
    the entry), so the first match is the newest anywhere; at most ``limit`` entries read
    from each. Raises StreamUnavailable."""
    views = settings.partition_views()
    if len(views) == 1:
        yield from newest_first(client, views[0].stream(suffix), decode, limit,
                                settings.prefix)
        return
    merged = heapq.merge(*(_newest_entries(client, view.stream(suffix), decode, limit,
                                           settings.prefix)
                           for view in views), key=lambda item: item[0], reverse=True)
    for _order_key, event in merged:
        yield event
