"""The lookup stage's batch work on the real engines: a batch's Thompson rankings read their
posteriors in one query (sent by ``prepare`` before the events are handled) and record the
rankings through the outbox; the answers are those of one event at a time, and an outcome
recorded between two batches counts in the next one (nothing is kept across batches)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from pipeline.config import Settings
from pipeline.events import CandidateEvent, ErrorEvent, FingerprintEvent
from pipeline.lookup import rankings
from pipeline.lookup.catalog import Catalog, parse_pattern
from pipeline.lookup.service import Lookup
from pipeline.runtime.drain import drain_inline
from pipeline.trust.seal import seal, unseal
from storage.cache import LocalCache
from storage.db import Database
from storage.lifecycle import LifecycleStore

CLEAR, REBUILD = "tool.cache_broken/clear", "tool.cache_broken/rebuild"
PATTERN = {
    "id": "tool.cache_broken", "name": "Tool cache broken", "category": "MODERATE",
    "detect": [{"regex": "^tool cache broken$"}], "params": {},
    "fix": {"id": CLEAR, "kind": "command", "category": "MODERATE",
            "title": "Clear the cache", "argv": ["false"], "timeout_s": 10},
    "alternatives": [{"id": REBUILD, "kind": "command", "category": "MODERATE",
                      "title": "Rebuild the cache", "argv": ["touch", "cache.ok"],
                      "timeout_s": 10}],
}
TEXT = "tool cache broken"


@pytest.fixture
def lookup(stage_settings: Settings, db: Database) -> Iterator[Lookup]:
    found = Lookup(Catalog([parse_pattern(PATTERN)]), LocalCache.at_home(stage_settings.home),
                   db)
    yield found
    found.close()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often the posteriors are read one fingerprint at a time and for a whole batch."""
    counts = {"one": 0, "batch": 0}
    one, batch = LifecycleStore.posteriors, LifecycleStore.start_posteriors_of

    def read_one(self: LifecycleStore, *args: Any) -> Any:
        counts["one"] += 1
        return one(self, *args)

    def read_batch(self: LifecycleStore, *args: Any) -> Any:
        counts["batch"] += 1
        return batch(self, *args)

    monkeypatch.setattr(LifecycleStore, "posteriors", read_one)
    monkeypatch.setattr(LifecycleStore, "start_posteriors_of", read_batch)
    return counts


def favour(db: Database, fp: str, good: str, bad: str) -> None:
    """The record of ``fp``: ``good`` always worked, ``bad`` never did (Thompson sampling then
    ranks ``good`` first: Beta(61, 1) against Beta(1, 61))."""
    db.execute("DELETE FROM fix_stats WHERE fingerprint = $1", fp)
    db.execute("INSERT INTO fix_stats (fingerprint, fix_id, state, successes, failures)"
               " VALUES ($1, $2, 'ACTIVE', 60, 0), ($1, $3, 'ACTIVE', 0, 60)", fp, good, bad)


def ranked(lookup: Lookup, error_id: str, fp: str) -> list[str]:
    found = lookup.lookup(error_id=error_id, text=TEXT, fine=fp, coarse="")
    assert found.fix is not None
    return [found.fix["id"], *(a["id"] for a in found.fix["alternatives"])]


def test_a_batch_reads_its_posteriors_once_and_ranks_each_fingerprint_by_its_own(
        lookup: Lookup, db: Database, reads: dict[str, int]) -> None:
    tag = uuid.uuid4().hex[:8]
    fp_clear, fp_rebuild = f"fp-clear-{tag}", f"fp-rebuild-{tag}"
    favour(db, fp_clear, CLEAR, REBUILD)
    favour(db, fp_rebuild, REBUILD, CLEAR)
    batch = [(f"e-{tag}-{i}", fp_clear if i % 2 else fp_rebuild) for i in range(6)]
    # Given the batch prepared (as the runtime does before handling it)
    lookup.prepare([(TEXT, fp, "") for _, fp in batch])
    # When each event is looked up, Then each is ranked by its own fingerprint's record
    for error_id, fp in batch:
        assert ranked(lookup, error_id, fp) == (
            [CLEAR, REBUILD] if fp == fp_clear else [REBUILD, CLEAR])
    # And the posteriors were read once for the batch, never one event at a time
    assert reads == {"one": 0, "batch": 1}
    # And the rankings reach fix_rankings with the outbox sync, once per event even when an
    # event is delivered twice
    assert ranked(lookup, batch[0][0], batch[0][1])[0] == REBUILD
    lookup.sync()
    counts = dict(db.fetch("SELECT fingerprint, count(*) FROM fix_rankings"
                           " WHERE fingerprint = ANY($1::text[]) GROUP BY fingerprint",
                           [fp_clear, fp_rebuild]))
    assert counts == {fp_clear: 3, fp_rebuild: 3}


def test_an_outcome_recorded_between_two_batches_counts_in_the_next(
        lookup: Lookup, db: Database, reads: dict[str, int]) -> None:
    fp = f"fp-next-{uuid.uuid4().hex[:8]}"
    favour(db, fp, CLEAR, REBUILD)
    lookup.prepare([(TEXT, fp, "")])
    assert ranked(lookup, f"e-{fp}-1", fp) == [CLEAR, REBUILD]
    # When the record changes (the lifecycle recorded outcomes) before the next batch
    favour(db, fp, REBUILD, CLEAR)
    lookup.prepare([(TEXT, fp, "")])
    # Then the next batch ranks by the new record
    assert ranked(lookup, f"e-{fp}-2", fp) == [REBUILD, CLEAR]
    assert reads == {"one": 0, "batch": 2}


def test_a_lookup_outside_a_fresh_batch_reads_its_own_posteriors(
        lookup: Lookup, db: Database, reads: dict[str, int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    fp = f"fp-own-{uuid.uuid4().hex[:8]}"
    favour(db, fp, CLEAR, REBUILD)
    # not prepared (heal diagnose, a direct call): read for the event
    assert ranked(lookup, f"e-{fp}-1", fp) == [CLEAR, REBUILD]
    assert reads == {"one": 1, "batch": 0}
    # prepared for another fingerprint: read for the event
    lookup.prepare([(TEXT, f"{fp}-other", "")])
    assert ranked(lookup, f"e-{fp}-2", fp) == [CLEAR, REBUILD]
    assert reads == {"one": 2, "batch": 1}
    # prepared longer ago than PREFETCH_TTL_S: read again, with what the record says now
    lookup.prepare([(TEXT, fp, "")])
    favour(db, fp, REBUILD, CLEAR)
    monkeypatch.setattr(rankings, "PREFETCH_TTL_S", 0.0)
    assert ranked(lookup, f"e-{fp}-3", fp) == [REBUILD, CLEAR]
    assert reads == {"one": 3, "batch": 2}


def test_the_stage_prepares_each_batch_through_the_runtime(
        stage_settings: Settings, db: Database, lookup: Lookup, client: redis.Redis,
        reads: dict[str, int]) -> None:
    tag = uuid.uuid4().hex[:8]
    fp_clear, fp_rebuild = f"fp-rt-clear-{tag}", f"fp-rt-rebuild-{tag}"
    favour(db, fp_clear, CLEAR, REBUILD)
    favour(db, fp_rebuild, REBUILD, CLEAR)
    for i in range(8):
        fp = fp_clear if i % 2 else fp_rebuild
        error = ErrorEvent(id=f"e-rt-{tag}-{i}", text=TEXT)
        event = FingerprintEvent(id=f"{error.id}:fingerprint", error_id=error.id, error=error,
                                 fine=fp, coarse="", version="fp-v4")
        # sealed, as the fingerprint stage publishes it
        client.xadd(stage_settings.stream("fingerprints"),
                    {"event": seal(stage_settings, "fingerprints", event.encode())})
    # When the lookup stage drains them (one batch) through the stream runtime
    handled = drain_inline(stage_settings, client, stages=["lookup"],
                           ctx_resources={"db": db, "lookup": lookup})
    assert handled == 8
    # Then every candidate carries its own fingerprint's ranking, from one batch read
    chosen = {}
    for _, fields in client.xrange(stage_settings.stream("candidates")):
        body = unseal(stage_settings, "candidates", fields[b"event"])
        assert body is not None
        candidate = CandidateEvent.decode(body)
        assert candidate.fix is not None
        chosen[candidate.error_id] = (candidate.fine, candidate.fix["id"])
    assert len(chosen) == 8
    assert all(fix == (CLEAR if fp == fp_clear else REBUILD) for fp, fix in chosen.values())
    assert reads == {"one": 0, "batch": 1}
    # And the drain's end synced the rankings to PostgreSQL
    assert db.fetchval("SELECT count(*) FROM fix_rankings WHERE fingerprint = ANY($1::text[])",
                       [fp_clear, fp_rebuild]) == 8


def test_a_logic_bug_is_refused_every_time_its_text_recurs(lookup: Lookup) -> None:
    bug = "tool cache broken\nTraceback (most recent call last):\nKeyError: 'cache'\n"
    for i in range(3):  # the verdict is memoized by the text's digest after the first
        found = lookup.lookup(error_id=f"e-bug-{i}-{uuid.uuid4().hex[:6]}", text=bug,
                              fine=f"fp-bug-{i}", coarse="", record=False)
        assert found.fix is None and found.details.get("logic_bug") == "KeyError"
