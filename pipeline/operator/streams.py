"""Reading back events still held in the pipeline's streams, newest first (bounded), for what
PostgreSQL does not keep: error texts and outcome details of escalations, error tags."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import redis

from pipeline.errors import HealError, StreamUnavailable

T = TypeVar("T")

#: at most this many entries are read per scan
SCAN_LIMIT = 100_000


def newest_first(client: redis.Redis, stream: str, decode: Callable[[bytes], T],
                 limit: int = SCAN_LIMIT) -> Iterator[T]:
    """Decoded events of ``stream``, newest first, at most ``limit`` entries read; malformed
    entries are skipped (they are the dead-letter stage's business). Raises
    StreamUnavailable when Redis cannot be reached."""
    last: Any = b"+"
    seen = 0
    try:
        while seen < limit:
            page: list[Any] = client.xrevrange(stream, max=last, count=1000) or []
            page = [e for e in page if e[0] != last]  # ``max`` is inclusive
            if not page:
                return
            seen += len(page)
            for _entry_id, fields in page:
                event = _decode((fields or {}).get(b"event"), decode)
                if event is not None:
                    yield event
            last = page[-1][0]
    except redis.RedisError as exc:
        raise StreamUnavailable(f"reading {stream}: Redis unreachable: {exc}") from exc


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
    """``newest_first`` over every partition of a pipeline stream (``HEAL_PARTITIONS``):
    each partition newest first, in turn, at most ``limit`` entries from each. Raises
    StreamUnavailable."""
    for view in settings.partition_views():
        yield from newest_first(client, view.stream(suffix), decode, limit)
