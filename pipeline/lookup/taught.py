"""Taught patterns in the lookup's catalog: the patterns ``heal learn``, reviews, agents and
packs stored in PostgreSQL, parsed by the same parser as the seeds, so tier 1 (fingerprints and
detection rules), tier 2 (their examples, embedded) and tier 3 serve them exactly like seeds.

Read from PostgreSQL and kept in the local cache (``meta`` key ``taught:patterns``), so a lookup
without PostgreSQL still knows what was taught before it went away. A row that no longer
parses is skipped with a warning: one bad lesson never stops the lookup.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import orjson

from pipeline.errors import ConfigError, DatabaseUnavailable
from pipeline.lookup.catalog import Catalog, Pattern, parse_pattern
from storage.cache import LocalCache
from storage.db import Database

log = logging.getLogger(__name__)

CACHE_KEY = "taught:patterns"
#: taught rules are tried before the seeds' (a person's answer beats the generic one)
TAUGHT_PRIORITY = 90


def raw_pattern(row: dict[str, Any]) -> dict[str, Any]:
    """The seeds' YAML shape of one :meth:`storage.learned.LearnedRepository.taught` row."""
    return {
        "id": row["id"], "name": row["name"], "category": row["category"],
        "priority": row.get("priority", TAUGHT_PRIORITY), "description": row["description"],
        "detect": row["detection"] or [], "params": row["params"] or {},
        "examples": row["examples"] or [],
        "fix": {"id": row["fix_id"], "kind": row["kind"], "category": row["fix_category"],
                "state": row["fix_state"], "title": row["title"],
                "explanation": row["explanation"], **(row["template"] or {})},
    }


def _with_origin(raw: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """A taught command knows the repository it was taught in (its provenance's ``repo``),
    rendered as ``taught_in``: verification runs it only there or on an exact match
    (:func:`pipeline.validate.verify.taught_elsewhere`)."""
    fix = raw["fix"]
    origin = (row.get("fix_provenance") or {}).get("repo")
    if fix.get("verify_in_worktree") and origin and "taught_in" not in fix:
        raw = {**raw, "fix": {**fix, "taught_in": str(origin)}}
    return raw


def parse_taught(raws: Iterable[dict[str, Any]], seeds: Catalog) -> list[Pattern]:
    out = []
    for raw in raws:
        if raw.get("id") in seeds.patterns:
            continue  # a seed's own id is the seed
        try:
            out.append(parse_pattern(raw))
        except (ConfigError, KeyError, TypeError, ValueError) as exc:
            log.warning("taught pattern %s skipped: %s", raw.get("id"), exc)
    return out


def load_taught(db: Database | None, cache: LocalCache, seeds: Catalog) -> list[Pattern]:
    """The taught patterns from PostgreSQL (refreshing the cache), else from the cache."""
    from storage.learned import LearnedRepository

    raws: list[dict[str, Any]] | None = None
    if db is not None:
        try:
            raws = [_with_origin(raw_pattern(r), r) for r in LearnedRepository(db).taught()]
        except DatabaseUnavailable:
            raws = None
    if raws is not None:
        cache.set_meta(CACHE_KEY, orjson.dumps(raws, default=str).decode())
    else:
        cached = cache.get_meta(CACHE_KEY)
        raws = orjson.loads(cached) if cached else []
    return parse_taught(raws or [], seeds)


def with_taught(seeds: Catalog, taught: Iterable[Pattern]) -> Catalog:
    return Catalog([*seeds.patterns.values(), *taught])
