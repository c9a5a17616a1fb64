"""Patterns and fixes in PostgreSQL: idempotent seeding, the fingerprint index of tier 1,
the most used patterns (to warm the local cache) and the export.

Every method raises :class:`~pipeline.errors.DatabaseUnavailable` when PostgreSQL cannot be
reached and :class:`~pipeline.errors.QueryError` when it rejects a statement.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import asyncpg
import orjson

from pipeline.console import visible
from pipeline.lookup.catalog import Pattern
from storage.db import Database

log = logging.getLogger(__name__)

_UPSERT_PATTERN = """
INSERT INTO patterns (id, name, category, description, detection, params, examples, source)
VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7::jsonb, $8)
ON CONFLICT (id) DO UPDATE SET
    name = EXCLUDED.name, category = EXCLUDED.category, description = EXCLUDED.description,
    detection = EXCLUDED.detection, params = EXCLUDED.params, examples = EXCLUDED.examples,
    updated_at = now()
WHERE (patterns.name, patterns.category, patterns.description, patterns.detection,
       patterns.params, patterns.examples)
   IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.category, EXCLUDED.description,
       EXCLUDED.detection, EXCLUDED.params, EXCLUDED.examples)
RETURNING (xmax = 0) AS inserted
"""

# the lifecycle owns ``state`` and the statistics: re-seeding never resets them
_UPSERT_FIX = """
INSERT INTO fixes (id, pattern_id, kind, category, title, explanation, template)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
ON CONFLICT (id) DO UPDATE SET
    pattern_id = EXCLUDED.pattern_id, kind = EXCLUDED.kind, category = EXCLUDED.category,
    title = EXCLUDED.title, explanation = EXCLUDED.explanation, template = EXCLUDED.template,
    updated_at = now()
WHERE (fixes.pattern_id, fixes.kind, fixes.category, fixes.title, fixes.explanation,
       fixes.template)
   IS DISTINCT FROM (EXCLUDED.pattern_id, EXCLUDED.kind, EXCLUDED.category, EXCLUDED.title,
       EXCLUDED.explanation, EXCLUDED.template)
RETURNING (xmax = 0) AS inserted
"""


# A seed's id held as ``source = 'pack'``: before heal import compared a pack with the seed
# files, importing a seed file (or a pack reusing a seed's id) on a home whose seeds were not
# stored yet wrote the seed's rows as a pack's (DRAFT, its fixes DRAFT), and the seeding above
# never changes ``source``, so the row stayed a pack's: exported by ``heal export --pack`` as
# a taught pattern, listed by ``heal report`` as learned, its shipped fix suggestion-only.
# Once seeded, the row's content is the seed's (the upsert above); when every fix it holds is
# one of the seed's own (their content is the seed's too, by the same upsert), nothing in it
# is the pack's but the labels: it becomes the seed's again, and a fix never used since
# (DRAFT, no attempt, no statistics) gets a seed's fresh state back. A row holding a fix of
# its own (a pack's fix id under the seed) stays as it is and is reported.
_REOWN_PATTERN = """
UPDATE patterns SET source = 'seed', state = 'ACTIVE', updated_at = now()
WHERE id = $1 AND source = 'pack'
  AND NOT EXISTS (SELECT 1 FROM fixes WHERE pattern_id = $1 AND NOT (id = ANY($2::text[])))
RETURNING id
"""

_REOWN_FIXES = """
UPDATE fixes f SET state = 'ACTIVE', updated_at = now()
WHERE f.pattern_id = $1 AND f.state = 'DRAFT'
  AND f.attempts = 0 AND f.successes = 0 AND f.failures = 0 AND f.rollbacks = 0
  AND NOT EXISTS (SELECT 1 FROM fix_stats s WHERE s.fix_id = f.id)
"""

_FOREIGN_FIXES = """
SELECT f.id FROM patterns p JOIN fixes f ON f.pattern_id = p.id
WHERE p.id = $1 AND p.source = 'pack' AND NOT (f.id = ANY($2::text[])) ORDER BY f.id
"""


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


class PatternRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def seed(self, patterns: Iterable[Pattern], source: str = "seed") -> dict[str, int]:
        """Insert or update every pattern and its fix in one transaction; a second run with
        the same seeds changes nothing. Returns counts of inserted / updated / unchanged, and
        ``reowned``: seed rows an old import had left as a pack's, the seed's again (see
        ``_REOWN_PATTERN``); one still holding a pack's fix is logged as a warning."""
        rows = list(patterns)

        async def run(conn: asyncpg.Connection) -> dict[str, int]:
            counts = {"inserted": 0, "updated": 0, "unchanged": 0, "reowned": 0}
            async with conn.transaction():
                for p in rows:
                    d = p.to_dict()
                    flag = await conn.fetchval(
                        _UPSERT_PATTERN, p.id, p.name, p.category.value, p.description,
                        _json(d["detect"]), _json(d["params"]), _json(d["examples"]), source,
                    )
                    flags = []
                    for spec in p.fixes:  # the fix and its alternatives
                        fix = spec.to_row()
                        flags.append(await conn.fetchval(
                            _UPSERT_FIX, fix["id"], p.id, fix["kind"], fix["category"],
                            fix["title"], fix["explanation"], _json(fix["template"]),
                        ))
                    if source == "seed":
                        own = [spec.to_row()["id"] for spec in p.fixes]
                        if await conn.fetchval(_REOWN_PATTERN, p.id, own) is not None:
                            await conn.execute(_REOWN_FIXES, p.id)
                            counts["reowned"] += 1
                        else:
                            foreign = [r["id"] for r in await conn.fetch(_FOREIGN_FIXES, p.id,
                                                                         own)]
                            if foreign:
                                log.warning(
                                    "seed pattern %s is held in PostgreSQL as an imported "
                                    "pack's, with fix(es) %s that are not the seed's (left by "
                                    "an import before heal refused a seed's id): the lookup "
                                    "serves the seed from its file and never these fixes, but "
                                    "heal export --pack writes them; delete them (DELETE FROM "
                                    "fixes WHERE id IN (...)) and the next seeding makes the "
                                    "row the seed's", p.id,
                                    ", ".join(visible(f) for f in foreign))
                    # True: something inserted; False: updated; None: nothing changed
                    fix_flag = True if True in flags else (False if False in flags else None)
                    if flag is True or fix_flag is True:
                        counts["inserted"] += 1
                    elif flag is None and fix_flag is None:
                        counts["unchanged"] += 1
                    else:
                        counts["updated"] += 1
            return counts

        return self.db.run(run)

    def pattern_for_fingerprint(self, fine: str, coarse: str) -> tuple[str, str, str] | None:
        """(pattern id, level, source) known for the fine fingerprint, else for the coarse one
        (source: ``rule`` learned from a detection rule's match, ``taught`` by a person)."""
        row = self.db.fetchrow(
            """SELECT pattern_id, level, source FROM pattern_fingerprints
               WHERE (fingerprint = $1 AND level = 'fine')
                  OR (fingerprint = $2 AND level = 'coarse')
               ORDER BY level DESC LIMIT 1""",
            fine, coarse,
        )
        return None if row is None else (row["pattern_id"], row["level"], row["source"])

    def most_used(self, limit: int = 100, max_rows: int = 100_000) -> list[dict[str, Any]]:
        """Known fingerprints of the ``limit`` most used patterns, most hit first, at most
        ``max_rows`` of them (to warm the cache)."""
        rows = self.db.fetch(
            """WITH top AS (SELECT id, occurrences FROM patterns
                            ORDER BY occurrences DESC, id LIMIT $1)
               SELECT f.fingerprint, f.level, f.pattern_id, f.source FROM pattern_fingerprints f
               JOIN top ON top.id = f.pattern_id
               ORDER BY top.occurrences DESC, f.hits DESC LIMIT $2""",
            limit, max_rows,
        )
        return [dict(r) for r in rows]

    def fix_states(self) -> dict[str, str]:
        """Current lifecycle state of every fix (the lifecycle stage changes them)."""
        return {r["id"]: r["state"] for r in self.db.fetch("SELECT id, state FROM fixes")}

    def ignored_fingerprints(self) -> frozenset[str]:
        """Fingerprints silenced with `heal ignore` (table of the lifecycle migrations)."""
        rows = self.db.fetch("SELECT fingerprint FROM fingerprint_controls WHERE ignored")
        return frozenset(r["fingerprint"] for r in rows)

    def export(self) -> list[dict[str, Any]]:
        """Every pattern with its fixes and their statistics."""
        rows = self.db.fetch(
            """SELECT p.id, p.name, p.category, p.description, p.detection, p.params,
                      p.examples, p.source, p.occurrences, p.first_seen, p.last_seen,
                      COALESCE(json_agg(json_build_object(
                          'id', f.id, 'kind', f.kind, 'category', f.category, 'state', f.state,
                          'title', f.title, 'explanation', f.explanation, 'template', f.template,
                          'attempts', f.attempts, 'successes', f.successes,
                          'failures', f.failures, 'rollbacks', f.rollbacks)
                        ORDER BY f.id) FILTER (WHERE f.id IS NOT NULL), '[]') AS fixes
               FROM patterns p LEFT JOIN fixes f ON f.pattern_id = p.id
               GROUP BY p.id ORDER BY p.id"""
        )
        out = []
        for r in rows:
            item = dict(r)
            for key in ("detection", "params", "examples", "fixes"):
                if isinstance(item[key], str):
                    item[key] = orjson.loads(item[key])
            for key in ("first_seen", "last_seen"):
                item[key] = item[key].isoformat() if item[key] else None
            out.append(item)
        return out
