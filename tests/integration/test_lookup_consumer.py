"""The lookup stage on the real engines: errors go through fingerprint and lookup inline
(real Redis streams, real PostgreSQL) and come out as candidates with the contract fields."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from consumers.lookup import GROUP, INPUT, OUTPUT, build
from pipeline.config import Settings
from pipeline.events import CandidateEvent, ErrorEvent, FingerprintEvent
from pipeline.runtime.drain import drain_inline
from pipeline.stage import StageContext
from storage.db import Database
from storage.engines import open_database

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "errors"


@pytest.fixture
def settings(heal_env: dict[str, str]) -> Settings:
    return Settings.from_env(heal_env)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = open_database(settings)
    yield database
    database.close()


def test_stage_names_its_streams() -> None:
    assert (GROUP, INPUT, OUTPUT) == ("lookup", "fingerprints", "candidates")


def test_handler_turns_a_fingerprint_into_a_candidate(settings: Settings, db: Database) -> None:
    ctx = StageContext(settings=settings, stage="lookup", resources={"db": db})
    handler = build(ctx)
    text = (FIXTURES / "git.index_lock" / "commit.txt").read_text()
    error = ErrorEvent(id="err-1", text=text)
    event = FingerprintEvent(id="err-1:fingerprint", error_id="err-1", error=error,
                             fine="fp-v1:consumer-test", coarse="fp-v1:consumer-coarse",
                             version="fp-v1")
    (out,) = handler.handle(handler.decode(event.encode()))
    assert isinstance(out, CandidateEvent) and out.id == "err-1:lookup"
    assert set(out.match) == {"pattern_id", "tier", "score", "reason", "path"}
    assert out.match["pattern_id"] == "git.index_lock" and out.match["tier"] == 1
    assert out.fix is not None and out.fix["kind"] == "playbook"
    assert out.fix["rendered"]["steps"]["primary"][0]["args"] == {
        "path": "/tmp/cap2/gg/a/.git/index.lock", "min_age_s": 2}
    again = CandidateEvent.decode(out.encode())
    assert again.fix == out.fix and again.match == out.match
    # redelivery: same output id, and the occurrence is counted once
    (twice,) = handler.handle(handler.decode(event.encode()))
    assert twice.id == out.id
    handler.finish()  # what a drain or worker does at its end: the last sync, then close
    assert db.fetchval("SELECT count(*) FROM occurrences WHERE error_id = 'err-1'") == 1


def test_errors_flow_through_fingerprint_and_lookup_inline(
        settings: Settings, db: Database, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    texts = {
        "e-ruff": (FIXTURES / "format.ruff_format" / "check.txt").read_text(),
        "e-bug": (FIXTURES / "_logic_bugs" / "py_key.txt").read_text(),
    }
    for error_id, text in texts.items():
        raw = ErrorEvent(id=error_id, text=text).encode()
        client.xadd(settings.stream("errors"), {"event": raw})
    handled = drain_inline(settings, client, stages=["fingerprint", "lookup"],
                           ctx_resources={"db": db})
    assert handled == 4
    out = {}
    for _, fields in client.xrange(settings.stream("candidates")):
        candidate = CandidateEvent.decode(fields[b"event"])
        out[candidate.error_id] = candidate
    assert out["e-ruff"].match["pattern_id"] == "format.ruff_format"
    assert out["e-ruff"].fix is not None and out["e-ruff"].fix["category"] == "SAFE"
    assert out["e-bug"].fix is None or out["e-bug"].fix["category"] == "RISKY"
