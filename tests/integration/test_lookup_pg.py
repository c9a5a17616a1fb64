"""Lookup against the real embedded PostgreSQL (pgvector): schema, seeding, the three tiers,
the issue queue and the offline outbox."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.errors import DatabaseUnavailable
from pipeline.lookup.catalog import load_catalog
from pipeline.lookup.service import Lookup
from pipeline.lookup.setup import build_lookup, seed_database
from storage.cache import LocalCache
from storage.causal import CausalGraph
from storage.db import Database
from storage.engines import open_database
from storage.patterns import PatternRepository
from storage.reports import ReportStore

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "errors"


def _fp() -> str:
    return f"fp-test:{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="module")
def db(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    home = tmp_path_factory.mktemp("lookup-home")
    settings = Settings.from_env({"HEAL_DATABASE_URL": database_url, "HEAL_HOME": str(home)})
    database = open_database(settings)
    yield database
    database.close()


@pytest.fixture(scope="module")
def lookup_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lookup-cache")


@pytest.fixture(scope="module")
def lookup(db: Database, database_url: str, lookup_home: Path) -> Iterator[Lookup]:
    settings = Settings.from_env({"HEAL_DATABASE_URL": database_url,
                                  "HEAL_HOME": str(lookup_home)})
    service = build_lookup(settings, db)
    yield service
    service.close()


def test_schema_has_tables_and_hnsw_index(db: Database) -> None:
    tables = {r["tablename"] for r in db.fetch("SELECT tablename FROM pg_tables")}
    for name in ("patterns", "fixes", "occurrences", "learnings", "causal_edges",
                 "pattern_embeddings", "pattern_fingerprints", "issue_queue", "applied_ops"):
        assert name in tables
    index = db.fetchval(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'pattern_embeddings_hnsw'")
    assert "hnsw" in index and "vector_cosine_ops" in index


def test_seeding_is_idempotent(db: Database, lookup: Lookup) -> None:
    catalog = load_catalog()
    again = PatternRepository(db).seed(catalog.patterns.values())
    assert again == {"inserted": 0, "updated": 0, "unchanged": len(catalog), "reowned": 0}
    assert db.fetchval("SELECT count(*) FROM fixes WHERE pattern_id = ANY($1::text[])",
                       list(catalog.patterns)) == sum(len(p.fixes)  # (with alternatives)
                                                      for p in catalog.patterns.values())
    # the lifecycle's state survives a re-seed
    db.execute("UPDATE fixes SET state = 'AUTOMATED' WHERE id = 'format.black/fix'")
    seed_database(db, catalog, None)
    assert db.fetchval("SELECT state FROM fixes WHERE id = 'format.black/fix'") == "AUTOMATED"
    db.execute("UPDATE fixes SET state = 'ACTIVE' WHERE id = 'format.black/fix'")


def test_tier1_learns_fingerprints_and_serves_them_from_postgres(
        db: Database, lookup: Lookup, tmp_path: Path) -> None:
    text = (FIXTURES / "git.index_lock" / "add.txt").read_text()
    fine, coarse = _fp(), _fp()
    first = lookup.lookup(error_id=f"e-{uuid.uuid4()}", text=text, fine=fine, coarse=coarse)
    assert (first.pattern_id, first.tier) == ("git.index_lock", 1)
    assert first.fix is not None
    assert first.fix["rendered"]["steps"]["primary"][0]["action"] == "remove_stale_lock"
    lookup.sync()
    assert PatternRepository(db).pattern_for_fingerprint(fine, "") == ("git.index_lock", "fine",
                                                                     "rule")
    assert db.fetchval("SELECT data->>'pattern_id' FROM learnings WHERE subject = $1",
                       fine) == "git.index_lock"
    # a fresh process with an empty cache finds the fingerprint in PostgreSQL, with where it
    # came from: a rule, so it answers only where that rule matches, never for another text
    fresh = Lookup(load_catalog(), LocalCache(tmp_path / "c.sqlite3"), db)
    again = fresh.lookup(error_id="x", text="unrelated text", fine=fine, coarse="", record=False)
    assert again.pattern_id is None
    assert "mapping to git.index_lock was learned from its detection rule" in again.reason
    # and from the cache once warmed
    assert fresh.cache.pattern_for(fine, "fine") == ("git.index_lock", "rule")


def test_occurrences_count_once_per_error(db: Database, lookup: Lookup) -> None:
    text = (FIXTURES / "format.black" / "check.txt").read_text()
    before = db.fetchval("SELECT occurrences FROM patterns WHERE id = 'format.black'")
    error_id = f"e-{uuid.uuid4()}"
    for _ in range(3):  # redelivery of the same error
        lookup.lookup(error_id=error_id, text=text, fine=_fp(), coarse=_fp())
    lookup.sync()
    assert db.fetchval("SELECT occurrences FROM patterns WHERE id = 'format.black'") == before + 1


def test_unmatched_errors_accumulate_in_the_issue_queue(db: Database, lookup: Lookup) -> None:
    fine = _fp()
    text = "Traceback (most recent call last):\nKeyError: 'tenant_id'\n"
    for i in range(3):
        result = lookup.lookup(error_id=f"e-{uuid.uuid4()}-{i}", text=text, fine=fine, coarse="c")
        assert result.pattern_id is None and result.fix is None
    lookup.sync()
    [row] = ReportStore(db).issues_for([fine])
    assert row["count"] == 3 and "tenant_id" in row["sample"]
    assert row["first_seen"] <= row["last_seen"]


def test_tier2_semantic_match_says_pattern_similarity_and_why(lookup: Lookup) -> None:
    # worded differently from every detection rule, same meaning as python.module_not_found
    text = "ModuleNotFound: no module called 'requests' could be located"
    result = lookup.lookup(error_id="sem-1", text=text, fine=_fp(), coarse=_fp(),
                           headline="ModuleNotFound: no module called <module> could be located",
                           record=False)
    assert result.tier == 2, result.reason
    assert result.pattern_id == "python.module_not_found"
    assert result.score >= lookup.threshold and "similarity" in result.reason


def test_tier2_below_threshold_is_unmatched(lookup: Lookup) -> None:
    result = lookup.lookup(error_id="sem-2", text="the quarterly report looks great",
                           fine=_fp(), coarse=_fp(), record=False)
    assert result.pattern_id is None and "below the threshold" in result.reason


def test_tier3_walks_causal_edges_to_the_root_cause(db: Database, lookup: Lookup) -> None:
    effect = _fp()
    middle = _fp()
    graph = CausalGraph(db)
    assert graph.seed([(middle, effect, 0.9), ("python.stale_bytecode", middle, 0.8)]) == 2
    causes = graph.causes([effect])
    assert causes[-1].path == (effect, middle, "python.stale_bytecode")
    result = lookup.lookup(error_id="c-1", text="weird loader failure 0x1f", fine=effect,
                           coarse="", record=False)
    assert result.tier == 3 and result.pattern_id == "python.stale_bytecode"
    assert result.path == (effect, middle, "python.stale_bytecode")
    assert result.score == pytest.approx(0.72)
    assert result.fix is not None and result.fix["kind"] == "command"
    with pytest.raises(ValueError):  # a learned self-loop is refused
        graph.observe(effect, effect)


def test_offline_answers_from_cache_and_outbox_syncs_idempotently(
        db: Database, lookup: Lookup, lookup_home: Path) -> None:
    text = (FIXTURES / "net.dns_failure" / "curl.txt").read_text()
    fine = _fp()
    lookup.lookup(error_id=f"e-{uuid.uuid4()}", text=text, fine=fine, coarse="")
    lookup.sync()

    class DownDatabase:
        def __getattr__(self, name: str) -> object:
            def fail(*args: object, **kwargs: object) -> object:
                raise DatabaseUnavailable("PostgreSQL is down (test)")
            return fail

    offline = Lookup(load_catalog(), LocalCache.at_home(lookup_home), DownDatabase())  # type: ignore[arg-type]
    before = db.fetchval("SELECT occurrences FROM patterns WHERE id = 'net.dns_failure'")
    error_id = f"e-{uuid.uuid4()}"
    # learned from the rule: served again only where the rule matches, from the SQLite cache
    assert offline.lookup(error_id="x", text="no rules match this", fine=fine, coarse="",
                          record=False).pattern_id is None
    # a mapping taught on this machine (heal learn writes it to the cache too) answers alone
    offline.cache.replace_fingerprints([(fine, "fine", "net.dns_failure")])
    offline._known.clear()
    result = offline.lookup(error_id=error_id, text="no rules match this", fine=fine, coarse="")
    assert result.pattern_id == "net.dns_failure"  # served from the SQLite cache
    assert offline.sync() == 0 and offline.cache.pending_count() >= 1  # kept in the outbox
    # PostgreSQL is back: the same outbox syncs, twice applying nothing twice
    offline.db = db
    offline._offline_since = None
    assert offline.sync() >= 1
    offline.cache.enqueue([(f"occ:{error_id}", "occurrence", {
        "error_id": error_id, "pattern_id": "net.dns_failure", "fine": fine})])
    assert offline.sync() == 0
    after = db.fetchval("SELECT occurrences FROM patterns WHERE id = 'net.dns_failure'")
    assert after == before + 1


def test_quarantined_fix_is_no_longer_offered(db: Database, lookup: Lookup) -> None:
    text = (FIXTURES / "format.black" / "check.txt").read_text()
    db.execute("UPDATE fixes SET state = 'QUARANTINED' WHERE id = 'format.black/fix'")
    try:
        lookup.refresh_states()
        result = lookup.lookup(error_id="q-1", text=text, fine=_fp(), coarse="", record=False)
        assert result.pattern_id == "format.black" and result.fix is None
        assert "QUARANTINED" in result.reason
    finally:
        db.execute("UPDATE fixes SET state = 'ACTIVE' WHERE id = 'format.black/fix'")
        lookup.refresh_states()
    result = lookup.lookup(error_id="q-2", text=text, fine=_fp(), coarse="", record=False)
    assert result.fix is not None and result.fix["state"] == "ACTIVE"


def test_background_sync_delivers_quiet_writes(db: Database, tmp_path: Path) -> None:
    import time

    service = Lookup(load_catalog(), LocalCache(tmp_path / "bg.sqlite3"), db)
    service.start_background_sync(interval_s=0.05)
    fine = _fp()
    try:
        service.lookup(error_id=f"e-{uuid.uuid4()}", text="zzz unknown failure", fine=fine,
                       coarse="")
        deadline = time.monotonic() + 120
        while not ReportStore(db).issues_for([fine]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ReportStore(db).issues_for([fine])  # no explicit flush or sync was called
    finally:
        service.close()


def test_warm_fills_a_fresh_cache_from_the_most_used_patterns(
        db: Database, lookup: Lookup, tmp_path: Path) -> None:
    text = (FIXTURES / "net.timeout" / "curl.txt").read_text()
    fine = _fp()
    lookup.lookup(error_id=f"e-{uuid.uuid4()}", text=text, fine=fine, coarse="")
    lookup.sync()
    cache = LocalCache(tmp_path / "warm.sqlite3")
    fresh = Lookup(load_catalog(), cache, db)
    assert fresh.warm(limit=100) >= 1
    assert cache.pattern_for(fine, "fine") == ("net.timeout", "rule")
    assert cache.fix_states()["net.timeout/fix"] == "ACTIVE"
    assert len(cache.pattern_vectors()) > 0


def test_a_pool_opened_before_another_process_migrated_gets_the_vector_codec(
        db: Database, database_url: str) -> None:
    """Two ``heal run`` on a new HEAL_HOME: one pool connects before the other process
    creates the vector extension; its own migrate then has nothing to apply, and must still
    set up the codec (before: every vector write failed with 'expected str, got ndarray'
    and the lookup stage dead-lettered the events)."""
    import numpy as np

    from storage.embeddings import EmbeddingRepository
    from storage.migrate import migrate

    name = f"lookup_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE DATABASE {name}")
    base, _, query = database_url.partition("?")
    url = base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")
    early, other = Database(url), Database(url)
    try:
        assert early.untyped  # connected before the extension existed
        assert migrate(other)  # the other process applies everything
        assert migrate(early) == []  # nothing left here...
        assert not early.untyped  # ...and the codec is set up anyway
        vector = np.zeros(384, dtype=np.float32)
        vector[0] = 1.0
        catalog = load_catalog()
        seed_database(early, catalog, None)
        pattern = next(iter(catalog.patterns))
        assert EmbeddingRepository(early).upsert([("v1", pattern, "text", vector)]) == 1
        assert EmbeddingRepository(early).nearest(vector, 1)[0][0] == pattern
    finally:
        early.close()
        other.close()
        db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_seeding_from_several_workers_at_once_on_a_fresh_database(
        db: Database, database_url: str) -> None:
    import concurrent.futures

    from storage.migrate import migrate

    name = f"lookup_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE DATABASE {name}")
    base, _, query = database_url.partition("?")
    url = base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")
    catalog = load_catalog()

    def start_worker(_: int) -> dict[str, int]:
        worker_db = Database(url)
        try:
            migrate(worker_db)  # (the codec is set up by migrate, whoever applied it)
            return seed_database(worker_db, catalog, None)
        finally:
            worker_db.close()

    try:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            results = list(pool.map(start_worker, range(3)))
        assert sum(r["inserted"] for r in results) == len(catalog)
        check = Database(url)
        try:
            assert check.fetchval("SELECT count(*) FROM patterns") == len(catalog)
            assert check.fetchval("SELECT count(*) FROM fixes") == sum(
                len(p.fixes) for p in catalog.patterns.values())  # (with alternatives)
        finally:
            check.close()
    finally:
        db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
