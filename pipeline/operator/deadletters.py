"""Reading back dead letters (``<prefix>:dead``, one per partition when partitioned) for
``heal explain --dead`` and for ``heal explain ERROR_ID`` of an event the pipeline could not
process. Bounded: at most :data:`DEAD_SCAN_LIMIT` entries are read per stream.

Each letter is a JSON-ready dict of the fields :mod:`pipeline.runtime.deadletter` writes
(``reason``, ``stage``, ``group``, ``stream``, ``entry_id``, ``attempts``, ``error_id``,
``ts``, ``raw_truncated_bytes``) plus ``id`` (the dead stream's entry id), ``dead_stream``
and ``event`` (the raw bytes as text, cut to :data:`EVENT_CHARS`; untrusted: render it
through ``pipeline.console.visible``).
"""

from __future__ import annotations

from typing import Any

import redis

from pipeline.config import STREAM_DEAD, Settings
from pipeline.operator.streams import newest_entries

#: dead-stream entries read per stream, newest first
DEAD_SCAN_LIMIT = 10_000
#: characters of the raw event kept in a letter
EVENT_CHARS = 2_000

#: what an operator does about a dead letter
ADVICE = ("the event was not processed and nothing was decided about it; fix what the reason "
          "names (usually the producer that sent it) and send the error again")


def dead_streams(settings: Settings) -> list[str]:
    """Every dead-letter stream: the unpartitioned one and each partition's."""
    names = [settings.stream(STREAM_DEAD)]
    for view in settings.partition_views():
        name = view.stream(STREAM_DEAD)
        if name not in names:
            names.append(name)
    return names


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _letter(stream: str, entry_id: Any, fields: dict[Any, Any]) -> dict[str, Any]:
    plain = {_text(k): _text(v) for k, v in (fields or {}).items()}
    event = plain.pop("event", "")
    letter: dict[str, Any] = {
        key: plain.get(key, "") for key in
        ("error_id", "stage", "group", "stream", "entry_id", "reason", "attempts", "ts")}
    letter["raw_truncated_bytes"] = int(plain.get("raw_truncated_bytes") or 0)
    letter.update(id=_text(entry_id), dead_stream=stream, event=event[:EVENT_CHARS],
                  event_cut=len(event) > EVENT_CHARS)
    return letter


def read_dead(client: redis.Redis, settings: Settings, limit: int = 50,
              error_id: str | None = None, scan: int = DEAD_SCAN_LIMIT) -> list[dict[str, Any]]:
    """The newest ``limit`` dead letters (of ``error_id`` only, when given), newest first.

    Raises:
        StreamUnavailable: Redis cannot be reached.
        AccessRefused: its user's ACL refused the read.
    """
    found: list[dict[str, Any]] = []
    wanted = error_id.encode() if error_id is not None else None
    for stream in dead_streams(settings):
        for entry_id, fields in newest_entries(client, stream, scan, page_size=500,
                                                prefix=settings.prefix):
            if wanted is None or fields.get(b"error_id") == wanted:
                found.append(_letter(stream, entry_id, fields))
    found.sort(key=lambda d: _order(d["id"]), reverse=True)
    return found[:limit]


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return 0, 0


def summary(letter: dict[str, Any]) -> str:
    """One line: which stage dead-lettered the event, when, after how many deliveries, why."""
    stage = letter["stage"] or "?"
    tries = letter["attempts"] or "?"
    return (f"dead-lettered by the {stage} stage at {letter['ts'] or '?'} after {tries} "
            f"delivery(ies): {letter['reason'] or 'no reason recorded'}")
