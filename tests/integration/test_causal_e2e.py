"""Tier 3 with real edges, on the real engines (a scratch database of its own, so the edges it
teaches never reach other tests): seeded edges are loaded with the catalog, the lifecycle
stage learns "fixing A cleared B" from applied outcomes, the lookup walks the learned edge to
A's fix for a later B, and explain shows the chain."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis

import consumers.lifecycle as lifecycle_stage
from pipeline.config import Settings
from pipeline.events import ErrorEvent, OutcomeEvent, Repo, Workflow
from pipeline.fingerprint import fingerprint_text
from pipeline.lookup.setup import build_lookup
from pipeline.operator.explain import explain
from pipeline.operator.render_explain import render
from pipeline.stage import StageContext
from storage.causal import CausalGraph
from storage.db import Database
from storage.migrate import migrate
from storage.reports import ReportStore
from storage.scratch import create_scratch_database

BAD_MAGIC = "ImportError: bad magic number in 'app': b'\\x03\\xf3\\r\\n'"
NAME_ERROR = "ImportError: cannot import name 'url_quote' from 'werkzeug.urls'"


@pytest.fixture
def scratch_db(database_url: str) -> Iterator[Database]:
    url, drop = create_scratch_database(database_url, f"heal_causal_{uuid.uuid4().hex[:10]}")
    db = Database(url)
    migrate(db)
    yield db
    db.close()
    drop()


def applied(n: int, text: str, fix_id: str) -> OutcomeEvent:
    error = ErrorEvent(id=f"causal-{uuid.uuid4().hex[:8]}-{n}", text=text,
                       workflow=Workflow(id="ci", run_id=str(n), step="import"),
                       repo=Repo(commit=f"c{n}"))
    return OutcomeEvent(id=f"{error.id}:apply", error_id=error.id, error=error,
                        fine=f"fp-{error.id}", fix_id=fix_id, status="applied")


def test_a_learned_causal_edge_is_walked_by_tier_3_and_explained(
        scratch_db: Database, redis_url: str, tmp_path: Path, prefix: str) -> None:
    settings = Settings(redis_url, None, tmp_path / "home", prefix)
    client = redis.Redis.from_url(redis_url)
    lookup = build_lookup(settings, scratch_db, semantic=False)  # seeds patterns and edges
    graph = CausalGraph(scratch_db)
    # Given the seeded edges are in the graph
    seeded = {(c, e) for c, e, _ in graph.edges()}
    assert ("deps.pip_no_matching_distribution", "python.module_not_found") in seeded

    # Given B alone: its own pattern has no mechanical fix, and no edge leads anywhere yet
    fp = fingerprint_text(NAME_ERROR)
    before = lookup.lookup(error_id="b0", text=NAME_ERROR, fine=fp.fine, coarse=fp.coarse,
                           record=False)
    assert before.tier == 1 and before.pattern_id == "python.import_name_error"

    # When two runs show that removing the stale bytecode (A) also cleared B
    handler = lifecycle_stage.build(StageContext(settings, "lifecycle", resources={
        "db": scratch_db, "redis": client}))
    try:
        for n in range(2):
            handler.handle(applied(n, f"{BAD_MAGIC}\n{NAME_ERROR}\n",
                                   "python.stale_bytecode/fix"))
        # (a run where the fix did not hold proves nothing)
        failed = applied(9, f"{BAD_MAGIC}\n{NAME_ERROR}\n", "python.stale_bytecode/fix")
        handler.handle(replace(failed, status="rolled_back"))
    finally:
        assert handler.sweeper is not None
        handler.sweeper.stop()
    learned = {(c, e): conf for c, e, conf in graph.edges()}
    assert learned[("python.stale_bytecode", "python.import_name_error")] == pytest.approx(0.5)

    # Then the lookup's tier 3 walks the learned edge (now the most confident) to A's fix
    lookup._cause_cache.clear()  # (the walk is memoized for 30 s)
    after = lookup.lookup(error_id=f"b-{prefix}", text=NAME_ERROR, fine=fp.fine,
                          coarse=fp.coarse)
    assert after.tier == 3 and after.pattern_id == "python.stale_bytecode", after.reason
    assert after.path[-1] == "python.stale_bytecode"
    assert after.fix is not None and after.fix["id"] == "python.stale_bytecode/fix"
    assert "causal:" in after.reason
    lookup.sync()

    # And explain shows the chain it walks
    story = explain(ReportStore(scratch_db), fp.fine)
    chains = [c["path"] for c in story["causal"]]
    assert ["python.import_name_error", "python.stale_bytecode"] in chains, story["causal"]
    assert "tier 3 chain: python.import_name_error <- python.stale_bytecode" in render(story)
    lookup.close()
    client.close()
