"""Streams of another partition layout that still hold work nobody reads.

``HEAL_PARTITIONS`` decides which streams the workers read: ``<prefix>:<stream>`` when it is
1, ``<prefix>:<stream>:{k}`` for ``k`` in ``0..N-1`` otherwise. Entries written under another
layout (the count changed between runs, or a producer still runs with another one, e.g. a raw
``XADD heal:errors`` while N > 1) are read by no worker. :func:`stranded_streams` finds the
pipeline streams of other layouts that hold unread or pending entries:

- ``<prefix>:<stream>:{k}`` for ``k >= N`` (every ``k`` when N = 1),
- the plain ``<prefix>:<stream>`` when N > 1.

The plain names are checked directly; partition streams are found with a bounded ``SCAN``
(``MATCH`` on the prefix, ``TYPE stream``, at most ``SCAN_CALLS`` calls of ``SCAN_COUNT`` per
node; on a Redis Cluster, each master is scanned), so a large keyspace costs a bounded
walk and the answer says whether it was complete. ``heal status`` reports what it finds as
a problem; a worker logs it as a warning when it starts.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from typing import Any

from pipeline.config import PIPELINE_STREAMS, Settings
from pipeline.runtime.connection import glob_escape

log = logging.getLogger("heal.runtime")

#: keys asked per SCAN call, and SCAN calls per node at most (200,000 keys walked)
SCAN_COUNT = 1_000
SCAN_CALLS = 200
#: entries counted past a group's last delivered id on servers without ``lag`` (Redis < 7)
UNREAD_COUNT_CAP = 10_000
_PAGE = 1_000


@dataclass(frozen=True)
class Stranded:
    """One stream of another layout holding work: ``unread`` entries no group was given
    (a lower bound when ``unread_exact`` is false), ``pending`` ones delivered, never acked."""

    stream: str
    partition: int | None
    length: int
    unread: int
    unread_exact: bool
    pending: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        unread = f"{self.unread}{'' if self.unread_exact else '+'}"
        return f"{self.stream} ({self.length} entries: {unread} unread, {self.pending} pending)"


@dataclass(frozen=True)
class LayoutReport:
    stranded: list[Stranded]
    #: false when the scan stopped at its cap before walking every key
    complete: bool

    def problem(self, settings: Settings) -> str | None:
        """One message naming the streams and what to do, or None when nothing is stranded."""
        if not self.stranded:
            return None
        now = settings.partitions
        plain = [s for s in self.stranded if s.partition is None]
        parts = [s for s in self.stranded if s.partition is not None]
        lines = []
        if plain:
            lines.append(
                f"{', '.join(s.describe() for s in plain)}: written unpartitioned (a producer "
                f"with HEAL_PARTITIONS=1, or a raw XADD to {settings.stream('errors')}) while "
                f"HEAL_PARTITIONS={now}: no worker reads them. Give every producer "
                f"HEAL_PARTITIONS={now} (raw producers: see \"Routing\" in the README), and "
                "drain these with workers run with HEAL_PARTITIONS=1 until their unread and "
                "pending reach 0")
        if parts:
            written = max(s.partition for s in parts if s.partition is not None) + 1
            lines.append(
                f"{', '.join(s.describe() for s in parts)}: written with HEAL_PARTITIONS="
                f"{written} or more while HEAL_PARTITIONS={now}: no worker reads them. Run "
                f"the workers with the HEAL_PARTITIONS they were written with (at least "
                f"{written}) until their unread and pending reach 0, then switch every "
                f"producer and worker to HEAL_PARTITIONS={now} together")
        return "streams of another partition layout hold work: " + "; ".join(lines)


def stranded_streams(client: Any, settings: Settings, calls: int = SCAN_CALLS) -> LayoutReport:
    """The pipeline streams of other layouts holding unread or pending entries.

    Raises: redis.RedisError (the caller decides: status reports it, a worker logs it).
    """
    names: dict[str, int | None] = {}
    if settings.partitions > 1:
        names.update({f"{settings.prefix}:{s}": None for s in PIPELINE_STREAMS})
    tagged = re.compile(re.escape(settings.prefix) + r":(" + "|".join(PIPELINE_STREAMS)
                        + r"):\{(0|[1-9][0-9]{0,5})\}")
    match = glob_escape(settings.prefix) + ":*}"
    complete = True
    for batch, done in _scan(client, match, calls):
        complete = complete and done
        for raw in batch:
            key = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            found = tagged.fullmatch(key)
            if found and int(found.group(2)) >= (settings.partitions
                                                  if settings.partitions > 1 else 0):
                names[key] = int(found.group(2))
    stranded = [s for s in (_measure(client, name, part)
                            for name, part in sorted(names.items())) if s is not None]
    return LayoutReport(stranded, complete)


def warn_if_stranded(client: Any, settings: Settings) -> None:
    """Log a warning naming the streams of another layout that hold work (a worker at
    start). Never raises: a failure here must not keep a worker from starting."""
    try:
        report = stranded_streams(client, settings)
        problem = report.problem(settings)
    except Exception as exc:  # noqa: BLE001 - advice only; the worker's own reads report Redis
        log.debug("could not look for streams of another partition layout: %s", exc)
        return
    if problem:
        log.warning("%s", problem)


def _is_cluster(client: Any) -> bool:
    return hasattr(client, "get_primaries") and hasattr(client, "get_node_from_key")


def _scan(client: Any, match: str, calls: int) -> Any:
    """Yields (keys, walked_all) per node: SCAN with MATCH and TYPE stream, at most ``calls``
    calls per node (each master of a cluster)."""
    if _is_cluster(client):
        for node in client.get_primaries():
            keys: list[Any] = []
            cursor = 0
            for _ in range(calls):
                cursors, page = client.scan(cursor=cursor, match=match, count=SCAN_COUNT,
                                            _type="stream", target_nodes=node)
                keys.extend(page)
                cursor = int(next(iter(cursors.values()), 0)) if isinstance(cursors, dict) \
                    else int(cursors)
                if cursor == 0:
                    break
            yield keys, cursor == 0
        return
    keys = []
    cursor = 0
    for _ in range(calls):
        cursor, page = client.scan(cursor=cursor, match=match, count=SCAN_COUNT,
                                   _type="stream")
        keys.extend(page)
        if int(cursor) == 0:
            break
    yield keys, int(cursor) == 0


def text_of(value: Any) -> str:
    """A Redis reply's bytes (or str) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def xinfo_fields(raw: Any) -> dict[str, Any]:
    """XINFO replies as a dict with str keys (lists of pairs on some client versions)."""
    if isinstance(raw, dict):
        return {text_of(k): v for k, v in raw.items()}
    return {text_of(raw[i]): raw[i + 1] for i in range(0, len(raw), 2)}


def _measure(client: Any, stream: str, partition: int | None) -> Stranded | None:
    length = int(client.xlen(stream) or 0)
    if not length:
        return None
    groups = [xinfo_fields(g) for g in client.xinfo_groups(stream)]
    if not groups:
        return Stranded(stream, partition, length, length, True, 0)
    pending = sum(int(g.get("pending") or 0) for g in groups)
    unread, exact = 0, True
    for group in groups:
        lag, lag_exact = _unread(client, stream, group, length)
        if lag > unread:
            unread, exact = lag, lag_exact
    if not unread and not pending:
        return None  # read and acknowledged: history, not stranded work
    return Stranded(stream, partition, length, unread, exact, pending)


def _unread(client: Any, stream: str, group: dict[str, Any], length: int) -> tuple[int, bool]:
    """Entries not yet delivered to ``group``: Redis 7 says; on 6.2 count the entries after
    its last delivered id (up to UNREAD_COUNT_CAP)."""
    if group.get("lag") is not None:
        return int(group["lag"]), True
    last = text_of(group.get("last-delivered-id", "0-0"))
    if last == "0-0":
        return length, True
    counted, start = 0, f"({last}"
    while counted < UNREAD_COUNT_CAP:
        page = list(client.xrange(stream, min=start, max="+", count=_PAGE) or [])
        counted += len(page)
        if len(page) < _PAGE:
            return counted, True
        start = f"({text_of(page[-1][0])}"
    return counted, False
