"""Gathers the figures of one ``/metrics`` scrape.

Redis is required (streams, lag, dead letters, breaker): without it the scrape fails with
StreamUnavailable (503, so Prometheus marks the target down). PostgreSQL is optional here:
when it is down the storage figures are left out and ``heal_engine_up{engine="postgres"}``
is 0, so lag-based autoscaling keeps working during a database outage.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline.config import PIPELINE_STREAMS, STREAM_DEAD, Settings
from pipeline.errors import DatabaseUnavailable, QueryError
from pipeline.serve import prometheus
from pipeline.serve.engines import Engines
from storage.serve_queries import ServeQueries

log = logging.getLogger(__name__)


def _redis_figures(settings: Settings, client: Any
                   ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    from pipeline.cli.status import partitioned_status
    from pipeline.guardrails.breaker import breaker_status
    from pipeline.guardrails.execution import execution_status
    from pipeline.operator.deadletters import dead_streams

    streams = {settings.stream(s): partitioned_status(client, settings, s)
               for s in (*PIPELINE_STREAMS, STREAM_DEAD)}
    dead = settings.stream(STREAM_DEAD)
    # the dead-letter figures are over every dead stream, as `heal explain --dead` reads them:
    # each partition's (with HEAL_PARTITIONS > 1 no stage writes the plain one) and the plain
    # one (letters left from before partitioning), so the alert sees a letter in any of them
    figures = [stream_figures(client, name) for name in dead_streams(settings)]
    streams[dead]["dead_letters"] = sum(length for length, _ in figures)
    times = [ms for _, ms in figures if ms is not None]
    streams[dead]["last_added_ms"] = max(times) if times else None
    return streams, breaker_status(client, settings), execution_status(client, settings)


def stream_figures(client: Any, stream: str) -> tuple[int, int | None]:
    """(the length of ``stream``, the time (Unix ms) of the newest entry ever added to it),
    from one XINFO STREAM: the time is the millisecond part of its last generated id, which
    trimming and XDEL leave alone (Redis 6.2 reports it, unlike 7.0's ``entries-added``);
    None when the stream never had an entry. (0, None) when it does not exist."""
    import redis

    try:
        info = client.xinfo_stream(stream)
    except redis.ResponseError as exc:
        if "no such key" not in str(exc).lower():
            raise  # (another type under the name: an error, as XLEN would raise)
        return 0, None
    raw = info.get("last-generated-id") or "0-0"
    last = raw.decode() if isinstance(raw, bytes) else str(raw)
    ms, _, _ = last.partition("-")
    return int(info.get("length") or 0), int(ms) if ms.isdigit() and int(ms) > 0 else None


def top_errors(q: ServeQueries, limit: int) -> tuple[int, list[dict[str, Any]]]:
    """(open issue groups, the most frequent known patterns and unmatched groups). Unmatched
    errors count per mined template (``key`` = the cluster, ``label`` = the template, with
    its ``fines``), not per fine fingerprint: three ``user X not found`` are one entry."""
    from pipeline.console import clip
    from pipeline.operator.groups import MAX_MINED, summary

    groups, top = summary(q.open_issue_rows(MAX_MINED), limit)
    unmatched = [{"kind": "unmatched", "key": g["cluster"], "label": clip(g["template"], 120),
                  "count": g["count"], "last_seen": g["last_seen"], "fines": g["fines"],
                  "fingerprints": g["fingerprints"]} for g in top]
    rows = sorted(q.top_patterns(limit) + unmatched, key=lambda e: (-e["count"], e["key"]))
    return groups, rows[:limit]


def collect_metrics(settings: Settings, engines: Engines,
                    connections: tuple[int, int] | None = None) -> str:
    """The exposition text (``connections``: the server's served and most connections).
    Raises StreamUnavailable when Redis cannot be reached."""
    from pipeline.runtime.metrics import LATENCY_BUCKETS, snapshot

    streams, breaker, execution = engines.with_redis(
        lambda client: _redis_figures(settings, client))
    out = prometheus.Exposition()
    prometheus.add_up(out, "redis", True)
    prometheus.add_streams(out, streams, settings.stream(STREAM_DEAD))
    prometheus.add_breaker(out, breaker)
    prometheus.add_execution(out, execution)
    try:
        def storage(db: Any) -> None:
            from pipeline.operator.groups import MAX_MINED, summary

            q = ServeQueries(db)
            groups = summary(q.open_issue_rows(MAX_MINED), 0)[0]
            prometheus.add_storage(out, q.apply_counts(), q.funnel(), groups, q.open_issues())

        engines.with_db(storage)
        prometheus.add_up(out, "postgres", True)
    except (DatabaseUnavailable, QueryError) as exc:
        log.warning("metrics without storage figures: %s", exc)
        prometheus.add_up(out, "postgres", False)
    if connections is not None:
        prometheus.add_connections(out, *connections)
    prometheus.add_runtime(out, snapshot(), LATENCY_BUCKETS)
    return out.render()
