"""Attacks 10 and 12: one NUL in an event id blocked the lookup outbox for good; a 20 MB
``tags`` was copied into every stream.

Ids with control characters and oversized fields are refused at decode with a reason (the
runtime dead-letters them with their raw bytes, capped); a lookup outbox op that PostgreSQL
rejects is parked with its reason and the ops after it still reach the database.
"""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

import orjson
import pytest
import redis

from pipeline.config import Settings
from pipeline.errors import EventValidationError
from pipeline.events import MAX_EVENT_BYTES, ErrorEvent
from pipeline.lookup.setup import build_lookup
from pipeline.runtime.drain import drain_inline
from storage.db import Database
from storage.migrate import migrate


@pytest.fixture(scope="module")
def db(database_url: str) -> Database:
    database = Database(database_url)
    migrate(database)
    yield database  # type: ignore[misc]
    database.close()


@pytest.mark.parametrize("bad_id", ["a\x00b", "line\nbreak", "bell\x07", "del\x7f"])
def test_control_characters_in_an_id_are_refused_at_decode(bad_id: str) -> None:
    raw = orjson.dumps({"v": 1, "id": bad_id, "text": "boom"})
    with pytest.raises(EventValidationError, match="control character"):
        ErrorEvent.decode(raw)


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("tags", {"blob": "x" * (MAX_EVENT_BYTES * 80)}, "'tags' is"),
    ("command", ["sh"] * 5000, "'command' has"),
    ("command", ["a" * 20000], "'command' has"),
    ("workflow", {"id": "w" * 5000}, "'workflow.id' is"),
    ("repo", {"path": "/srv/\x00evil"}, "NUL"),
])
def test_oversized_or_nul_fields_are_refused_with_the_field_named(
    field: str, value: object, reason: str
) -> None:
    raw = orjson.dumps({"v": 1, "id": "e1", "text": "boom", field: value})
    with pytest.raises(EventValidationError, match=reason):
        ErrorEvent.decode(raw)


def test_a_huge_text_is_still_truncated_not_refused() -> None:
    raw = orjson.dumps({"v": 1, "id": "e1", "text": "x" * (MAX_EVENT_BYTES * 8)})
    event = ErrorEvent.decode(raw)
    assert event.tags["truncated_bytes"] > 0
    assert len(event.encode()) < MAX_EVENT_BYTES


def test_hostile_raw_events_are_dead_lettered_and_the_next_one_is_handled(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    settings = Settings(redis_url=redis_url, database_url=None, home=tmp_path, prefix=prefix)
    client = redis.Redis.from_url(redis_url)
    # Given a hostile writer XADDs a NUL id and a 20 MB tags, then a normal event
    for raw in (orjson.dumps({"v": 1, "id": "nul\x00id", "text": "boom"}),
                orjson.dumps({"v": 1, "id": "fat", "text": "boom",
                              "tags": {"blob": "x" * 20_000_000}}),
                orjson.dumps({"v": 1, "id": "fine-1", "text": "ValueError: boom"})):
        client.xadd(settings.stream("errors"), {"event": raw})
    # When the real fingerprint stage reads them
    drain_inline(settings, client, stages=["fingerprint"])
    # Then the hostile ones are dead-lettered with the reason, capped, and nothing else
    # carries them; the normal one is fingerprinted
    dead = [f for _, f in client.xrange(settings.stream("dead"))]
    reasons = [f[b"reason"].decode() for f in dead]
    assert any("control character" in r for r in reasons)
    assert any("'tags' is" in r for r in reasons)
    assert all(len(f[b"event"]) <= 1024 * 1024 for f in dead)
    out = [orjson.loads(f[b"event"]) for _, f in client.xrange(settings.stream("fingerprints"))]
    assert [e["error_id"] for e in out] == ["fine-1"]


def test_an_outbox_op_postgres_rejects_is_parked_and_never_blocks_the_rest(
    db: Database, database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings.from_env({"HEAL_DATABASE_URL": database_url,
                                  "HEAL_HOME": str(tmp_path / "home")})
    lookup = build_lookup(settings, db)
    marker = uuid.uuid4().hex
    try:
        # Given a poisoned op (a number where PostgreSQL wants text) queued before a normal
        # one (a NUL no longer poisons: the connection's codec sends it as U+FFFD)
        lookup.cache.enqueue([
            (f"issue:poison-{marker}", "issue",
             {"fine": 5, "coarse": "c", "sample": "x", "ts": time.time()}),
            (f"issue:ok-{marker}", "issue",
             {"fine": f"fp-ok-{marker}", "coarse": "c", "sample": marker, "ts": time.time()}),
        ])
        # When the outbox syncs
        with caplog.at_level(logging.WARNING, logger="heal.lookup"):
            lookup.sync()
        # Then the normal op reached PostgreSQL, the poisoned one is parked with its reason,
        # and the outbox is empty (nothing blocks it any more)
        assert db.fetchval("SELECT count(*) FROM issue_queue WHERE fine = $1",
                           f"fp-ok-{marker}") == 1
        parked = [p for p in lookup.cache.parked() if p[0] == f"issue:poison-{marker}"]
        assert parked and parked[0][2]
        assert lookup.cache.pending_count() == 0
        assert f"issue:poison-{marker}" in caplog.text and "parked" in caplog.text
    finally:
        lookup.close()
