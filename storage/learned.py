"""Taught patterns and fixes in PostgreSQL: what ``heal learn``, a review, an agent transcript
or an imported pack adds next to the seeds, with its provenance; the extra tier 2 reference
texts of verified resolutions; and the rows a pack exports.

Every method raises :class:`~pipeline.errors.DatabaseUnavailable` when PostgreSQL cannot be
reached and :class:`~pipeline.errors.QueryError` when it rejects a statement.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from pipeline.errors import UsageError
from storage.db import Database

# a rule a person gave (``--regex``; the pattern's provenance says ``rule_given``) is kept by a
# later lesson that gives none: only another ``--regex`` replaces it; so is a name a person
# gave (``--name``; ``name_given``): only another ``--name`` replaces it. Returns the
# pattern's state, the detection and the name it holds after the lesson.
_PATTERN = """
INSERT INTO patterns (id, name, category, description, detection, params, examples, source,
                      state, priority, provenance, first_seen, last_seen)
VALUES ($1, $2, $3, $4, $5::jsonb, '{}'::jsonb, $6::jsonb, $7, 'DRAFT', $8,
        $9::jsonb || CASE WHEN $10 THEN '{"rule_given": true}'::jsonb ELSE '{}'::jsonb END
                  || CASE WHEN $11 THEN '{"name_given": true}'::jsonb ELSE '{}'::jsonb END,
        now(), now())
ON CONFLICT (id) DO UPDATE SET
    name = CASE WHEN $11 OR NOT COALESCE((patterns.provenance->>'name_given')::boolean, false)
                THEN EXCLUDED.name ELSE patterns.name END,
    category = EXCLUDED.category, description = EXCLUDED.description,
    detection = CASE WHEN $10 OR NOT COALESCE((patterns.provenance->>'rule_given')::boolean,
                                                  false)
                     THEN EXCLUDED.detection ELSE patterns.detection END,
    provenance = patterns.provenance
                 || CASE WHEN $10 THEN '{"rule_given": true}'::jsonb ELSE '{}'::jsonb END
                 || CASE WHEN $11 THEN '{"name_given": true}'::jsonb ELSE '{}'::jsonb END,
    examples = EXCLUDED.examples, priority = EXCLUDED.priority, updated_at = now()
RETURNING state, detection, name
"""

# a fix already known keeps its lifecycle state and statistics; taught again by a person
# ($9) it becomes the newest of its pattern (the one the lookup serves: they said again that
# it works). Its category changes only when a person gave one (``--category``, $10); else it
# keeps the one it has. A new fix always starts DRAFT. A fix id held by another pattern is
# left alone (no row).
_FIX = """
INSERT INTO fixes (id, pattern_id, kind, category, state, title, explanation, template,
                   provenance)
VALUES ($1, $2, $3, $4, 'DRAFT', $5, $6, $7::jsonb, $8::jsonb)
ON CONFLICT (id) DO UPDATE SET
    category = CASE WHEN $9 AND $10 THEN EXCLUDED.category ELSE fixes.category END,
    created_at = CASE WHEN $9 THEN now() ELSE fixes.created_at END,
    updated_at = CASE WHEN $9 THEN now() ELSE fixes.updated_at END
WHERE fixes.pattern_id = EXCLUDED.pattern_id
RETURNING state, category, (xmax = 0) AS inserted
"""

# a pattern's category is its served fix's (the newest), so ``heal export`` and ``heal
# explain`` never show a pattern RISKY whose fix is MODERATE
_PATTERN_CATEGORY = """
UPDATE patterns SET category = (SELECT category FROM fixes WHERE pattern_id = $1
                                ORDER BY created_at DESC, id DESC LIMIT 1)
WHERE id = $1 AND EXISTS (SELECT 1 FROM fixes WHERE pattern_id = $1)
"""

# an alternative fix of an imported pattern: older than every fix the pattern has, so the
# fix the pack names first stays the newest (the one the lookup serves) and the pack's order
# is kept
_OLDER_FIX = """
INSERT INTO fixes (id, pattern_id, kind, category, state, title, explanation, template,
                   provenance, created_at)
VALUES ($1, $2, $3, $4, 'DRAFT', $5, $6, $7::jsonb, $8::jsonb,
        (SELECT COALESCE(min(created_at), now()) FROM fixes WHERE pattern_id = $2)
        - interval '1 millisecond')
ON CONFLICT (id) DO NOTHING RETURNING id
"""

# the newest fix (``{limit}`` = LIMIT 1) or every fix, newest first, of every taught pattern,
# with its pattern (the catalog's shape); neither the seeds (loaded from their files) nor the
# placeholders a review's ``y`` leaves for a person to complete (an escalation with no fix)
_TAUGHT = """
SELECT p.id, p.name, p.category, p.description, p.detection, p.params, p.examples, p.source,
       p.priority, p.provenance, p.created_at, f.id AS fix_id, f.kind, f.category AS fix_category,
       f.state AS fix_state, f.title, f.explanation, f.template, f.provenance AS fix_provenance,
       f.attempts, f.successes, f.failures, f.rollbacks
FROM patterns p
JOIN LATERAL (SELECT * FROM fixes WHERE pattern_id = p.id
              ORDER BY created_at DESC, id DESC {limit}) f ON true
WHERE p.source NOT IN ('seed', 'review') {where}
ORDER BY p.id, f.created_at DESC, f.id DESC
"""


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _decoded(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


@dataclass(frozen=True)
class SavedLesson:
    pattern_id: str
    fix_id: str
    new_fix: bool  # False: the same fix was taught before (its state and statistics kept)
    fix_state: str = "DRAFT"  # the fix's lifecycle state after the lesson (kept when known)
    pattern_state: str = "DRAFT"
    #: the pattern's rules after the lesson: a rule a person gave is kept by a lesson that
    #: gives none, so they may differ from the lesson's own
    detection: tuple[dict[str, Any], ...] = ()
    new_alternatives: tuple[str, ...] = ()  # the ids of ``alternatives`` that were stored
    #: the pattern's name after the lesson: a name a person gave is kept by a lesson that
    #: gives none
    name: str = ""
    #: the fix's category after the lesson: a fix taught again keeps its category unless a
    #: person gave one (``category_given``)
    fix_category: str = ""


@dataclass(frozen=True)
class HeldPattern:
    """A pattern held here as an import compares it: its detection rules' key, its source
    and every fix (id, kind and template), the one served first."""

    id: str
    detection: str
    source: str
    fixes: tuple[tuple[str, dict[str, Any]], ...]


class LearnedRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def save(self, raw: dict[str, Any], *, source: str, provenance: dict[str, Any],
             fingerprints: Iterable[tuple[str, str]] = (), issue: str = "",
             alternatives: Sequence[tuple[dict[str, Any], dict[str, Any]]] = (),
             move_fingerprints: bool = True, rule_given: bool = False,
             name_given: bool = False, serve_again: bool = True,
             category_given: bool = False) -> SavedLesson:
        """Store one taught pattern (``raw``: the seeds' YAML shape, already validated) and
        its fix as DRAFT, map ``fingerprints`` (fingerprint, level) to it (a fingerprint known
        for another pattern moves to this one: the person said what fixes it), record the
        lesson in ``learnings`` and mark the issue ``learned``; one transaction.

        A fix taught before keeps its state and statistics and, with ``serve_again`` (a
        person's lesson, not one mined from a history or a transcript run again), becomes
        the newest of its pattern again (the one served). ``rule_given``: ``raw``'s rules
        are a person's (``--regex``); without it, a rule a person gave before is kept.
        ``name_given``: ``raw``'s name is a person's (``--name``); without it, a name a person
        gave before is kept. ``category_given``: the fix's category is a person's
        (``--category``); a fix taught before takes it (with ``serve_again``), else keeps its
        own. The pattern's category is its served fix's.

        ``alternatives`` (fix mapping, its provenance), newest first: the pattern's other
        fixes (an imported pack's), stored DRAFT as older than ``raw``'s fix.

        ``move_fingerprints=False`` (an import): a fingerprint mapped to another pattern
        stays where it is.

        Raises:
            UsageError: the fix's id is held here by another pattern (nothing is stored).
        """
        fix = dict(raw["fix"])
        template = _fix_template(fix)
        fps = list(fingerprints)
        others = [(dict(f), prov) for f, prov in alternatives]

        async def go(conn: asyncpg.Connection) -> SavedLesson:
            async with conn.transaction():
                pattern = await conn.fetchrow(
                    _PATTERN, raw["id"], raw["name"], raw["category"], raw["description"],
                    _json(raw["detect"]), _json(raw["examples"]), source,
                    int(raw.get("priority", 50)), _json(provenance), rule_given, name_given)
                row = await conn.fetchrow(
                    _FIX, fix["id"], raw["id"], fix["kind"], fix["category"], fix["title"],
                    fix["explanation"], _json(template), _json(provenance), serve_again,
                    category_given)
                if row is None:  # rolls the lesson back
                    owner = await conn.fetchval("SELECT pattern_id FROM fixes WHERE id = $1",
                                                fix["id"])
                    raise UsageError(f"fix id {fix['id']} is held here by pattern {owner}; "
                                     "nothing was stored: give the fix an id of its own")
                added = [str(alt["id"]) for alt, alt_provenance in others
                         if await _insert_older(conn, raw["id"], alt, alt_provenance)]
                await conn.execute(_PATTERN_CATEGORY, raw["id"])
                on_conflict = ("DO UPDATE SET pattern_id = EXCLUDED.pattern_id, source = 'taught'"
                               if move_fingerprints else "DO NOTHING")
                for fp, level in fps:
                    await conn.execute(
                        f"""INSERT INTO pattern_fingerprints (fingerprint, level, pattern_id,
                                                              source)
                           VALUES ($1, $2, $3, 'taught') ON CONFLICT (fingerprint, level)
                           {on_conflict}""", fp, level, raw["id"])
                await conn.execute(
                    "INSERT INTO learnings (kind, subject, data) VALUES ('taught', $1, $2::jsonb)",
                    raw["id"], _json({**provenance, "fix_id": fix["id"], "source": source}))
                if issue:
                    await conn.execute(
                        "UPDATE issue_queue SET status = 'learned' WHERE fine = $1", issue)
                return SavedLesson(raw["id"], fix["id"], bool(row["inserted"]),
                                   str(row["state"]), str(pattern["state"]),
                                   tuple(_decoded(pattern["detection"]) or ()), tuple(added),
                                   str(pattern["name"]), str(row["category"]))

        result: SavedLesson = self.db.run(go)
        return result

    def add_older_fixes(self, pattern_id: str,
                        fixes: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> list[str]:
        """Store ``fixes`` (fix mapping, provenance), newest first, as DRAFT alternatives of a
        pattern held already, older than each fix it has (the one served does not change);
        the ids of those that were new."""
        async def go(conn: asyncpg.Connection) -> list[str]:
            added = []
            async with conn.transaction():
                for fix, provenance in fixes:
                    if await _insert_older(conn, pattern_id, dict(fix), provenance):
                        added.append(str(fix["id"]))
            return added

        result: list[str] = self.db.run(go)
        return result

    def taught(self, pattern_ids: list[str] | None = None, *,
               every_fix: bool = False) -> list[dict[str, Any]]:
        """Every pattern that is not a seed with its newest fix (with ``every_fix``, one row
        per fix, newest first), statistics and provenance (JSON decoded, timestamps as ISO
        text)."""
        limit = "" if every_fix else "LIMIT 1"
        if pattern_ids is None:
            rows = self.db.fetch(_TAUGHT.format(where="", limit=limit))
        else:
            rows = self.db.fetch(_TAUGHT.format(where="AND p.id = ANY($1::text[])",
                                                limit=limit), pattern_ids)
        out = []
        for r in rows:
            item = dict(r)
            for key in ("detection", "params", "examples", "provenance", "template",
                        "fix_provenance"):
                item[key] = _decoded(item[key])
            item["created_at"] = item["created_at"].isoformat()
            out.append(item)
        return out

    def held_patterns(self) -> list[HeldPattern]:
        """Every pattern held here, seeds included, with every fix (the newest first: the
        one a taught pattern serves): what an import compares a pack with."""
        rows = self.db.fetch(
            """SELECT p.id, p.detection::text AS detection, p.source, f.id AS fix_id, f.kind,
                      f.template::text AS template
               FROM patterns p LEFT JOIN fixes f ON f.pattern_id = p.id
               ORDER BY p.id, f.created_at DESC, f.id DESC""")
        out: list[HeldPattern] = []
        for r in rows:
            if not out or out[-1].id != r["id"]:
                out.append(HeldPattern(r["id"], _canonical(r["detection"]), r["source"], ()))
            if r["fix_id"] is not None:
                fix = (r["fix_id"], {"kind": r["kind"], **_decoded(r["template"])})
                out[-1] = HeldPattern(out[-1].id, out[-1].detection, out[-1].source,
                                      (*out[-1].fixes, fix))
        return out

    def fingerprint_owner(self, fingerprint: str, level: str) -> str | None:
        """The pattern ``fingerprint`` (at ``level``: fine or coarse) is mapped to, if any."""
        value = self.db.fetchval("SELECT pattern_id FROM pattern_fingerprints"
                                 " WHERE fingerprint = $1 AND level = $2", fingerprint, level)
        return None if value is None else str(value)

    def fix_statistics(self) -> dict[str, dict[str, Any]]:
        """Verified outcomes per fix (summed over fingerprints) and its latest state."""
        rows = self.db.fetch(
            """SELECT fix_id, sum(successes) AS successes, sum(failures) AS failures,
                      sum(reverts) AS reverts, count(*) AS fingerprints FROM fix_stats
               GROUP BY fix_id""")
        return {r["fix_id"]: {"successes": int(r["successes"]), "failures": int(r["failures"]),
                              "reverts": int(r["reverts"]),
                              "fingerprints": int(r["fingerprints"])} for r in rows}

    # -- tier 2 references -----------------------------------------------------------------
    def pattern_of_fix(self, fix_id: str) -> str | None:
        value = self.db.fetchval("SELECT pattern_id FROM fixes WHERE id = $1", fix_id)
        return None if value is None else str(value)

    def add_reference(self, ref_id: str, pattern_id: str, text: str, error_id: str = "",
                      source: str = "resolution") -> bool:
        """One more reference text of ``pattern_id``; False when it was known already."""
        row = self.db.fetchval(
            """INSERT INTO pattern_references (id, pattern_id, text, source, error_id)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING RETURNING id""",
            ref_id, pattern_id, text, source, error_id)
        return row is not None

    def reference_count(self) -> int:
        return int(self.db.fetchval("SELECT count(*) FROM pattern_references") or 0)

    def references(self) -> list[tuple[str, str, str]]:
        """(id, pattern id, text) of every extra reference text."""
        rows = self.db.fetch("SELECT id, pattern_id, text FROM pattern_references ORDER BY id")
        return [(r["id"], r["pattern_id"], r["text"]) for r in rows]

    # -- report ----------------------------------------------------------------------------
    def new_since(self, since: dt.datetime) -> list[dict[str, Any]]:
        rows = self.db.fetch(
            """SELECT p.id, p.name, p.source, p.provenance, p.created_at FROM patterns p
               WHERE p.source <> 'seed' AND p.created_at >= $1 ORDER BY p.created_at""", since)
        return [{**dict(r), "provenance": _decoded(r["provenance"]),
                 "created_at": r["created_at"].isoformat()} for r in rows]


def _fix_template(fix: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fix.items()
            if k not in ("id", "kind", "category", "state", "title", "explanation")}


async def _insert_older(conn: asyncpg.Connection, pattern_id: str, fix: dict[str, Any],
                        provenance: dict[str, Any]) -> bool:
    new = await conn.fetchval(
        _OLDER_FIX, fix["id"], pattern_id, fix["kind"], fix["category"], fix.get("title", ""),
        fix.get("explanation", ""), _json(_fix_template(fix)), _json(provenance))
    return new is not None


def _canonical(detection: Any) -> str:
    items = _decoded(detection) or []
    return _json(sorted(orjson.dumps(d, option=orjson.OPT_SORT_KEYS).decode() for d in items))


def detection_key(detect: Sequence[dict[str, Any]]) -> str:
    """The key :class:`HeldPattern` holds for a pattern's rules (the same rules in any
    order give the same key)."""
    return _canonical(detect)
