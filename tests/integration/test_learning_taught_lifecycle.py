"""A taught fix lives through the same lifecycle as a seed fix (real PostgreSQL): it starts
DRAFT, its first verified success makes it ACTIVE, and it graduates to AUTOMATED after exactly
as many verified successes as a seed fix needs; only then does mode auto apply it. Every
verified resolution adds its error text to the pattern's tier 2 references, which the lookup
embeds."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from pipeline.cli.diagnose import diagnose
from pipeline.config import Settings
from pipeline.events import ErrorEvent, OutcomeEvent, Repo
from pipeline.learn.fixes import command_fix
from pipeline.learn.references import ResolutionReferences
from pipeline.learn.source import TaughtError
from pipeline.learn.teach import Lesson, Teacher
from pipeline.lifecycle.graduation import LifecyclePolicy
from pipeline.lifecycle.service import LifecycleService
from pipeline.lookup.setup import build_lookup
from pipeline.model import Mode
from storage.db import Database
from storage.engines import open_database
from storage.lifecycle import LifecycleStore
from storage.scratch import create_scratch_database

TEXT = ("Traceback (most recent call last):\n  File \"app.py\", line 4, in <module>\n"
        "QuotaDriftError: quota {token} exceeded by 12 units in /srv/q/region-3/ledger.db\n")


def letters() -> str:
    """A token of letters only: never masked, so each test has a fingerprint of its own."""
    return "".join(chr(97 + int(c, 16)) for c in uuid.uuid4().hex[:10])


@pytest.fixture
def db(heal_env: dict[str, str], database_url: str,
       monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """A database of its own: the seed fix's counters must start at zero, whatever other
    tests of the session recorded against the same seed."""
    url, drop = create_scratch_database(database_url, f"heal_taught_{uuid.uuid4().hex[:10]}")
    monkeypatch.setenv("HEAL_DATABASE_URL", url)
    database = open_database(Settings.from_env())
    yield database
    database.close()
    drop()


def outcomes(service: LifecycleService, fine: str, fix_id: str, n: int,
             text: str) -> list[tuple[str, str, int]]:
    """Feed ``n`` verified successes; returns (from, to, at attempt) of each transition.

    Each on the same commit, as a CI run reports it: identical code that passes every time is
    deterministic evidence. Without a commit the determinism score rests on the spacing of
    the outcomes alone, and a tight loop on a loaded machine spaces them irregularly enough
    to read as flaky, which (rightly) withholds credit and delays graduation."""
    moves = []
    for i in range(1, n + 1):
        error = ErrorEvent(id=f"e-{uuid.uuid4().hex}", text=text,
                           repo=Repo(path="/srv/q", commit="0a1b2c3"))
        event = OutcomeEvent(id=f"{error.id}:apply", error_id=error.id, error=error,
                             fine=fine, fix_id=fix_id, status="applied")
        t = service.handle(event)
        if t is not None:
            moves.append((t.src.value, t.dst.value, i))
    return moves


def test_a_taught_fix_graduates_like_a_seed_fix_and_feeds_tier_2(db: Database) -> None:
    token = letters()
    text = TEXT.format(token=token)
    lookup = build_lookup(Settings.from_env(), db, semantic=False, warm=0)  # seeds stored
    seed_fix = lookup.catalog.patterns["proc.port_in_use"].fix.id
    taught = Teacher(db).teach(Lesson(TaughtError(f"e-{token}", text, ""),
                                      command_fix("touch quota.reset")))
    fine = taught.fingerprints[0]
    assert db.fetchval("SELECT state FROM fixes WHERE id = $1", taught.fix_id) == "DRAFT"

    service = LifecycleService(LifecycleStore(db), None, None, LifecyclePolicy(),
                               references=ResolutionReferences(db))
    n = 40
    learned_moves = outcomes(service, fine, taught.fix_id, n, text)
    seed_moves = outcomes(service, f"fp-v1:{uuid.uuid4().hex[:16]}", seed_fix, n, text)

    # DRAFT -> ACTIVE at the first verified success, then the seeds' own rule
    assert learned_moves[0] == ("DRAFT", "ACTIVE", 1)
    automated = [m for m in learned_moves if m[1] == "AUTOMATED"]
    assert automated and automated == [m for m in seed_moves if m[1] == "AUTOMATED"]
    assert db.fetchval("SELECT state FROM fixes WHERE id = $1", taught.fix_id) == "AUTOMATED"

    # graduated: mode auto now applies it (and suggest still only suggests)
    variant = text.replace("12 units", "99 units").replace("/srv/q/region-3", "/data/q/r9")
    auto = diagnose(variant, Settings.from_env(), Mode.AUTO, semantic=False)
    assert auto["match"]["pattern_id"] == taught.pattern_id
    assert auto["fix"]["state"] == "AUTOMATED" and auto["would_apply"] is True
    assert diagnose(variant, Settings.from_env(), Mode.SUGGEST,
                    semantic=False)["would_apply"] is False

    # each verified resolution's masked headline became a tier 2 reference (one per text)
    refs = db.fetch("SELECT text FROM pattern_references WHERE pattern_id = $1",
                    taught.pattern_id)
    assert [r["text"] for r in refs] == [
        f"QuotaDriftError: quota {token} exceeded by <num> units in <path>"]


def test_a_reworded_recurrence_finds_a_taught_pattern_by_its_embedded_references(
        db: Database) -> None:
    token = letters()
    text = TEXT.format(token=token)
    taught = Teacher(db).teach(Lesson(TaughtError(f"e-{token}", text, ""),
                                      command_fix("touch quota.reset")))
    reworded = (f"QuotaDriftError: the quota {token} was exceeded, by 5 units, while writing "
                "/data/ledger/main.db\n")
    lookup = build_lookup(Settings.from_env(), db, semantic=True, warm=0)
    if lookup.embedder is None:
        pytest.skip("the embedding model is not installed here")
    from pipeline.fingerprint import fingerprint_text

    fp = fingerprint_text(reworded)
    result = lookup.lookup(error_id="x", text=reworded, fine=fp.fine, coarse=fp.coarse,
                           headline=fp.normalized, record=False)
    assert result.pattern_id == taught.pattern_id and result.tier == 2, result.reason
    stored = db.fetchval("SELECT count(*) FROM pattern_embeddings WHERE pattern_id = $1",
                         taught.pattern_id)
    assert stored == 1  # its example, embedded like a seed's (before the first tier 2 search)
