"""Apply local outbox operations to PostgreSQL, idempotently.

Each operation has a unique ``op_id`` (derived from the error id); ``applied_ops`` remembers
the ones applied, in the same transaction as their effect, so a sync interrupted anywhere can
simply be repeated. Kinds: ``occurrence`` (an error matched a pattern), ``issue`` (an error
matched nothing), ``fingerprint`` (a fingerprint learned for a pattern, also recorded in
``learnings``), ``ranking`` (a Thompson ranking of a pattern's fixes, in ``fix_rankings``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from storage.db import Database

Op = tuple[str, str, dict[str, Any]]  # (op_id, kind, payload)


def _ts(value: Any) -> datetime:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return datetime.now(UTC)


async def _counts(conn: asyncpg.Connection, p: dict[str, Any]) -> bool:
    """Whether the error of ``p`` counts in the pattern and issue-queue counters: always, but
    for a replay copy (``replay_of``: its original's id, ``pipeline/replayid.py``) only when
    its original was not counted, and then once for all copies of it. The original's own ops
    are only read, never claimed, so a copy seen first cannot keep the original from
    counting."""
    original = p.get("replay_of")
    if not original:
        return True
    if await conn.fetchval("SELECT 1 FROM applied_ops WHERE op_id = ANY($1::text[])",
                           [f"occ:{original}", f"issue:{original}"]):
        return False
    return bool(await conn.fetchval(
        "INSERT INTO applied_ops (op_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING 1",
        f"replay-counted:{original}"))


async def _occurrence(conn: asyncpg.Connection, p: dict[str, Any]) -> None:
    ts = _ts(p.get("ts"))
    inserted = await conn.fetchval(
        """INSERT INTO occurrences (error_id, pattern_id, fine, coarse, tier, score, seen_at)
           SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS (SELECT 1 FROM patterns WHERE id = $2)
           ON CONFLICT (error_id) DO NOTHING RETURNING 1""",
        p["error_id"], p["pattern_id"], p.get("fine", ""), p.get("coarse", ""),
        p.get("tier"), p.get("score"), ts,
    )
    if inserted and await _counts(conn, p):
        await conn.execute(
            """UPDATE patterns SET occurrences = occurrences + 1,
                   first_seen = LEAST(COALESCE(first_seen, $2), $2),
                   last_seen = GREATEST(COALESCE(last_seen, $2), $2)
               WHERE id = $1""",
            p["pattern_id"], ts,
        )
        await conn.execute(
            """UPDATE pattern_fingerprints SET hits = hits + 1
               WHERE (fingerprint = $1 AND level = 'fine')
                  OR (fingerprint = $2 AND level = 'coarse')""",
            p.get("fine", ""), p.get("coarse", ""),
        )


async def _issue(conn: asyncpg.Connection, p: dict[str, Any]) -> None:
    if not await _counts(conn, p):
        return  # a replay copy of an error already counted: the queue counts it once
    ts = _ts(p.get("ts"))
    await conn.execute(
        """INSERT INTO issue_queue (fine, coarse, count, first_seen, last_seen, sample, ended)
           VALUES ($1, $2, 1, $3, $3, $4, $5)
           ON CONFLICT (fine) DO UPDATE SET count = issue_queue.count + 1,
               first_seen = LEAST(issue_queue.first_seen, EXCLUDED.first_seen),
               last_seen = GREATEST(issue_queue.last_seen, EXCLUDED.last_seen),
               ended = CASE WHEN issue_queue.ended = '' THEN EXCLUDED.ended
                            ELSE issue_queue.ended END""",
        p["fine"], p.get("coarse", ""), ts, str(p.get("sample", ""))[:4000],
        str(p.get("ended") or ""),
    )


async def _fingerprint(conn: asyncpg.Connection, p: dict[str, Any]) -> None:
    learned = await conn.fetchval(
        """INSERT INTO pattern_fingerprints (fingerprint, level, pattern_id, source)
           SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM patterns WHERE id = $3)
           ON CONFLICT (fingerprint, level) DO NOTHING RETURNING 1""",
        # (an op queued before mappings had a source was the lookup's: learned from a rule)
        p["fingerprint"], p["level"], p["pattern_id"], str(p.get("source") or "rule"),
    )
    if learned:
        await conn.execute(
            "INSERT INTO learnings (kind, subject, data) VALUES ('fingerprint', $1, $2::jsonb)",
            p["fingerprint"], orjson.dumps({"level": p["level"],
                                            "pattern_id": p["pattern_id"]}).decode(),
        )


async def _ranking(conn: asyncpg.Connection, p: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO fix_rankings (fingerprint, chosen, draws, ts) VALUES ($1, $2, $3::jsonb, $4)",
        p["fingerprint"], p["chosen"], orjson.dumps(p["draws"]).decode(), _ts(p.get("ts")))


_APPLY = {"occurrence": _occurrence, "issue": _issue, "fingerprint": _fingerprint,
          "ranking": _ranking}


def apply_ops(db: Database, ops: Iterable[Op]) -> int:
    """Apply ``ops`` in one transaction; returns how many were new (not applied before).

    Raises:
        DatabaseUnavailable: PostgreSQL is unreachable (nothing was applied).
        ValueError: an unknown operation kind (a bug; nothing was applied).
    """
    batch = list(ops)
    for _, kind, _payload in batch:
        if kind not in _APPLY:
            raise ValueError(f"unknown outbox operation {kind!r}")

    async def run(conn: asyncpg.Connection) -> int:
        new = 0
        async with conn.transaction():
            for op_id, kind, payload in batch:
                fresh = await conn.fetchval(
                    "INSERT INTO applied_ops (op_id) VALUES ($1) "
                    "ON CONFLICT DO NOTHING RETURNING 1", op_id)
                if fresh:
                    await _APPLY[kind](conn, payload)
                    new += 1
        return new

    return db.run(run)
