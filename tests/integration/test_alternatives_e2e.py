"""Alternatives and ranking end to end on the real engines (real git, Redis, PostgreSQL): a
pattern carries two fixes; the lookup ranks them by Thompson sampling on this fingerprint's
record and records the choice; the chosen fix fails when applied, so the ranked fallback is
tried in the same attempt; the lifecycle credits each with its own result; explain shows the
ranking."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis

import consumers.lifecycle as lifecycle_stage
from pipeline.apply.applier import Applier
from pipeline.config import Settings
from pipeline.lookup.catalog import Catalog, parse_pattern
from pipeline.lookup.service import Lookup
from pipeline.operator.explain import explain
from pipeline.operator.render_explain import render
from pipeline.stage import StageContext
from pipeline.validate.validator import Validator
from storage.cache import LocalCache
from storage.db import Database
from storage.reports import ReportStore
from tests.integration._heal_validate_support import candidate, sample_repo

PATTERN = {
    "id": "tool.cache_broken", "name": "Tool cache broken", "category": "MODERATE",
    "detect": [{"regex": "^tool cache broken$"}], "params": {},
    "fix": {"id": "tool.cache_broken/clear", "kind": "command", "category": "MODERATE",
            "title": "Clear the cache", "argv": ["false"], "timeout_s": 10},
    "alternatives": [{"id": "tool.cache_broken/rebuild", "kind": "command",
                      "category": "MODERATE", "title": "Rebuild the cache",
                      "argv": ["touch", "cache.ok"], "timeout_s": 10}],
}
COMMAND = ("sh", "-c", "test -f cache.ok || { echo 'tool cache broken'; exit 1; }")


@pytest.fixture
def lookup(stage_settings: Settings, db: Database) -> Iterator[Lookup]:
    found = Lookup(Catalog([parse_pattern(PATTERN)]), LocalCache.at_home(stage_settings.home),
                   db)
    yield found
    found.close()


def test_the_ranked_fallback_is_tried_when_the_chosen_fix_fails(
        tmp_path: Path, lookup: Lookup, validator: Validator, applier: Applier, db: Database,
        stage_settings: Settings, client: redis.Redis) -> None:
    fp = f"fp-alt-{uuid.uuid4().hex[:10]}"
    # Given the record says "clear" always worked here and "rebuild" never did
    db.execute("INSERT INTO fix_stats (fingerprint, fix_id, state, successes, failures)"
               " VALUES ($1, 'tool.cache_broken/clear', 'ACTIVE', 60, 0),"
               " ($1, 'tool.cache_broken/rebuild', 'ACTIVE', 0, 60)", fp)
    # When the lookup answers, Then Thompson sampling chose "clear", "rebuild" follows
    found = lookup.lookup(error_id=f"e-{fp}", text="tool cache broken", fine=fp, coarse="")
    assert found.fix is not None and found.fix["id"] == "tool.cache_broken/clear"
    assert [a["id"] for a in found.fix["alternatives"]] == ["tool.cache_broken/rebuild"]
    assert [d["fix_id"] for d in found.fix["ranking"]] == [
        "tool.cache_broken/clear", "tool.cache_broken/rebuild"]
    # the ranking is recorded through the outbox, like occurrences (the stage syncs every 2 s)
    assert db.fetchval("SELECT chosen FROM fix_rankings WHERE fingerprint = $1", fp) is None
    lookup.sync()
    assert db.fetchval("SELECT chosen FROM fix_rankings WHERE fingerprint = $1", fp) == (
        "tool.cache_broken/clear")

    # When it is applied and the chosen fix fails
    root = sample_repo(tmp_path)
    cand = candidate(root, COMMAND, found.fix, mode="suggest", fine=fp)
    verdict = validator.validate(cand)
    assert verdict.decision == "suggest", verdict.reason
    outcome = applier.apply_suggested(replace(verdict, decision="apply"))
    # Then the fallback ran in the same attempt and the step passes
    assert outcome.status == "applied", outcome.detail
    assert outcome.fix_id == "tool.cache_broken/rebuild"
    assert outcome.failed_fixes == ["tool.cache_broken/clear"]
    assert "fallback tool.cache_broken/rebuild (ranked next)" in outcome.detail
    assert (root / "cache.ok").exists()

    # And the lifecycle credits each fix with its own result
    handler = lifecycle_stage.build(StageContext(stage_settings, "lifecycle",
                                                 resources={"db": db, "redis": client}))
    try:
        handler.handle(outcome)
    finally:
        assert handler.sweeper is not None
        handler.sweeper.stop()
    rows = {r["fix_id"]: (r["successes"], r["failures"]) for r in db.fetch(
        "SELECT fix_id, successes, failures FROM fix_stats WHERE fingerprint = $1", fp)}
    assert rows == {"tool.cache_broken/clear": (60, 1), "tool.cache_broken/rebuild": (1, 60)}

    # And explain shows the ranking with its draws
    text = render(explain(ReportStore(db), fp))
    assert "last ranking chose tool.cache_broken/clear" in text
    assert "tool.cache_broken/rebuild" in text and "Beta(61, 1)" in text
