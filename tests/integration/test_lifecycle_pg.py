"""The lifecycle against a real PostgreSQL and Redis: graduation, quarantine, unquarantine,
idempotent redelivery, Thompson ranking records, and the breaker fed by outcomes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from consumers.lifecycle import LifecycleHandler
from pipeline.cli import main
from pipeline.config import Settings
from pipeline.events import ErrorEvent, OutcomeEvent, Repo, Workflow
from pipeline.fingerprint import ALGORITHM_VERSION
from pipeline.guardrails.audit import AuditLog, verify_file
from pipeline.guardrails.breaker import CircuitBreaker
from pipeline.lifecycle.graduation import LifecyclePolicy
from pipeline.lifecycle.service import LifecycleService
from pipeline.model import LifecycleState as S
from storage.db import Database
from storage.lifecycle import LifecycleStore
from storage.patterns import PatternRepository
from storage.reports import ReportStore


def pair(db: Database, fingerprint: str, fix_id: str) -> dict[str, Any] | None:
    """The pair's lifecycle row as `heal explain` reads it (ReportStore.fix_stats)."""
    rows = [r for r in ReportStore(db).fix_stats([fingerprint]) if r["fix_id"] == fix_id]
    return rows[0] if rows else None


@pytest.fixture
def service(db: Database, redis_url: str, tmp_path: Path, prefix: str) -> LifecycleService:
    settings = Settings(redis_url, None, tmp_path, prefix)
    audit = AuditLog(settings)
    breaker = CircuitBreaker(redis.Redis.from_url(redis_url), settings, audit=audit)
    policy = LifecyclePolicy(automate_threshold=0.8, min_attempts=5)
    return LifecycleService(LifecycleStore(db), breaker, audit, policy)


def outcome(fp: str, fix_id: str, status: str, n: int, commit: str = "c1") -> OutcomeEvent:
    error = ErrorEvent(id=f"{fp}-{n}", text="boom", workflow=Workflow(id="nightly", step="lint"),
                       repo=Repo(commit=commit))
    return OutcomeEvent(id=f"{fp}-{n}:apply", error_id=error.id, error=error, fine=fp,
                        fix_id=fix_id, status=status)


def test_graduation_draft_active_automated(service: LifecycleService, db: Database) -> None:
    fp, fix = f"fp-{uuid.uuid4().hex[:8]}", "fix-ruff-format"
    transitions = [service.handle(outcome(fp, fix, "applied", i)) for i in range(20)]
    seen = [(t.src, t.dst) for t in transitions if t is not None]
    assert seen == [(S.DRAFT, S.ACTIVE), (S.ACTIVE, S.AUTOMATED)]
    # after 13 successes Beta(14, 1) has lower 95% bound 0.05 ** (1/14) = 0.807 >= 0.8
    # (after 12 it is 0.05 ** (1/13) = 0.794)
    assert transitions.index(next(t for t in transitions[1:] if t is not None)) == 12
    store = LifecycleStore(db)
    assert pair(db, fp, fix)["state"] == "AUTOMATED"
    assert [r["dst"] for r in store.transitions(fp)] == ["ACTIVE", "AUTOMATED"]


def test_a_success_for_a_new_fingerprint_never_demotes_a_graduated_fix(
        service: LifecycleService, db: Database) -> None:
    # Given a fix that graduated to AUTOMATED for one fingerprint (QA report qa_life, item 2B)
    fp, fix, pattern = f"fp-{uuid.uuid4().hex[:8]}", f"fix-{uuid.uuid4().hex[:8]}", "p-grad"
    db.execute("INSERT INTO patterns (id) VALUES ($1) ON CONFLICT DO NOTHING", pattern)
    db.execute("INSERT INTO fixes (id, pattern_id, kind, category, state) VALUES ($1, $2,"
               " 'command', 'SAFE', 'DRAFT')", fix, pattern)
    for i in range(13):
        service.handle(outcome(fp, fix, "applied", i))
    assert pair(db, fp, fix)["state"] == "AUTOMATED"
    assert db.fetchval("SELECT state FROM fixes WHERE id = $1", fix) == "AUTOMATED"
    # When it succeeds for another fingerprint, never tried before
    other = f"fp-{uuid.uuid4().hex[:8]}"
    assert service.handle(outcome(other, fix, "applied", 1)) is None
    # Then that pair starts ACTIVE (graduation is earned per fingerprint), the success
    # demotes nothing, and the fix stays AUTOMATED
    assert pair(db, other, fix)["state"] == "ACTIVE"
    assert pair(db, fp, fix)["state"] == "AUTOMATED"
    assert db.fetchval("SELECT state FROM fixes WHERE id = $1", fix) == "AUTOMATED"


def test_redelivered_outcome_changes_nothing(service: LifecycleService, db: Database) -> None:
    fp = f"fp-{uuid.uuid4().hex[:8]}"
    event = outcome(fp, "fix-a", "applied", 1)
    assert service.handle(event) is not None
    assert service.handle(event) is None
    assert pair(db, fp, "fix-a")["successes"] == 1


def test_revert_quarantines_trips_breaker_and_unquarantine_resets(
    service: LifecycleService, db: Database, heal_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    fp = f"{ALGORITHM_VERSION}:{uuid.uuid4().hex[:16]}"
    service.handle(outcome(fp, "fix-b", "applied", 1))
    t = service.handle(outcome(fp, "fix-b", "rolled_back", 2))
    assert t is not None and t.dst is S.QUARANTINED
    assert service.handle(outcome(fp, "fix-b", "applied", 3)) is None  # stays quarantined
    assert service.breaker is not None
    assert service.breaker.allow("lint", "nightly", "SAFE")[0]  # one revert: still closed
    service.handle(outcome(fp, "fix-c", "rolled_back", 4))
    allowed, reason = service.breaker.allow("lint", "nightly", "SAFE")
    assert not allowed and "OPEN" in reason
    assert verify_file(service.audit.path).ok  # type: ignore[union-attr]

    assert main(["unquarantine", fp]) == 0
    assert "QUARANTINED -> DRAFT" in capsys.readouterr().out
    assert pair(db, fp, "fix-b")["state"] == "DRAFT"
    assert main(["unquarantine", fp]) == 1  # nothing left


def test_unquarantine_reads_a_fingerprint_as_explain_does_and_finds_the_fix_withheld_from_it(
    service: LifecycleService, db: Database, heal_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a fix of a pattern rolled back for one fingerprint (QA report qa_life, item 8)
    digits = uuid.uuid4().hex[:16]
    fp, fix = f"{ALGORITHM_VERSION}:{digits}", f"fix-{uuid.uuid4().hex[:8]}"
    pattern = "p-unquarantine"
    db.execute("INSERT INTO patterns (id) VALUES ($1) ON CONFLICT DO NOTHING", pattern)
    db.execute("INSERT INTO fixes (id, pattern_id, kind, category) VALUES ($1, $2, 'command',"
               " 'SAFE')", fix, pattern)
    service.handle(outcome(fp, fix, "rolled_back", 1))
    # Then a name that is no fingerprint is a usage error, not "nothing quarantined"
    assert main(["unquarantine", "not-a-fingerprint"]) == 2
    assert "is no fingerprint heal has seen" in capsys.readouterr().err
    # and a unique prefix without the version (as heal explain and heal ignore read it) resets it
    assert main(["unquarantine", digits[:10]]) == 0
    assert f"{fp} {fix}: QUARANTINED -> DRAFT" in capsys.readouterr().out
    # Given the fix quarantined again, and another fingerprint the pattern matched: the fix's
    # QUARANTINED state withholds it there too (no pair of its own)
    service.handle(outcome(fp, fix, "rolled_back", 2))
    other = f"{ALGORITHM_VERSION}:{uuid.uuid4().hex[:16]}"
    db.execute("INSERT INTO occurrences (error_id, pattern_id, fine, tier, score)"
               " VALUES ($1, $2, $3, 1, 1.0)", f"e-{other}", pattern, other)
    # When the operator unquarantines the fingerprint that is blocked, Then the fix is freed
    assert main(["unquarantine", other]) == 0
    assert f"{fp} {fix}: QUARANTINED -> DRAFT" in capsys.readouterr().out
    assert db.fetchval("SELECT state FROM fixes WHERE id = $1", fix) == "DRAFT"
    assert main(["unquarantine", other]) == 1
    assert (f"nothing quarantined for {other}: no fix of it is QUARANTINED"
            in capsys.readouterr().out)


def test_fixes_state_is_mirrored(service: LifecycleService, db: Database) -> None:
    fp, fix, pattern = f"fp-{uuid.uuid4().hex[:8]}", f"fix-{uuid.uuid4().hex[:8]}", "p-mirror"
    db.execute("INSERT INTO patterns (id) VALUES ($1) ON CONFLICT DO NOTHING", pattern)
    db.execute("INSERT INTO fixes (id, pattern_id, kind, category) VALUES ($1, $2, 'command',"
               " 'SAFE')", fix, pattern)
    service.handle(outcome(fp, fix, "rolled_back", 1))
    assert db.fetchval("SELECT state FROM fixes WHERE id = $1", fix) == "QUARANTINED"


def test_ignore_command(db: Database, heal_env: dict[str, str]) -> None:
    fp = f"{ALGORITHM_VERSION}:{uuid.uuid4().hex[:16]}"  # a fingerprint's form: ignored in advance
    assert main(["ignore", fp, "--reason", "noise"]) == 0
    # read as the lookup stage reads it (it then neither fixes nor queues the fingerprint)
    assert fp in PatternRepository(db).ignored_fingerprints()
    assert main(["ignore", fp, "--undo"]) == 0
    assert fp not in PatternRepository(db).ignored_fingerprints()


def test_ignore_takes_a_unique_prefix_and_refuses_what_is_no_fingerprint(
        db: Database, heal_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """As heal explain reads it (before: any text was stored as given and reported
    "ignored", while the pipeline went on acting on the real fingerprint)."""
    digest = uuid.uuid4().hex[:16]
    fine = f"{ALGORITHM_VERSION}:{digest}"
    db.execute("INSERT INTO issue_queue (fine, coarse, count, sample) VALUES ($1, '', 1, 'x')",
               fine)
    assert main(["ignore", digest[:10]]) == 0  # a unique prefix, the version left out
    assert f"{fine}: ignored" in capsys.readouterr().out
    assert fine in PatternRepository(db).ignored_fingerprints()
    assert main(["ignore", f"not-a-fingerprint-{digest}"]) == 2
    assert "is no fingerprint heal has seen" in capsys.readouterr().err
    unseen = uuid.uuid4().hex[:16]  # never seen, a fingerprint's form: ignored in advance
    assert main(["ignore", unseen]) == 0
    assert f"{ALGORITHM_VERSION}:{unseen}" in PatternRepository(db).ignored_fingerprints()
    assert main(["ignore", fine[:12], "--undo"]) == 0
    assert fine not in PatternRepository(db).ignored_fingerprints()


def test_thompson_ranking_is_recorded(db: Database) -> None:
    import random

    from pipeline.lifecycle.ranking import thompson_rank

    fp = f"fp-{uuid.uuid4().hex[:8]}"
    store = LifecycleStore(db)
    draws = thompson_rank(store.posteriors(fp, ["a", "b"]), random.Random(7))
    store.record_ranking(fp, draws)
    row = db.fetchrow("SELECT chosen, draws FROM fix_rankings WHERE fingerprint = $1", fp)
    assert row["chosen"] == draws[0].fix_id
    assert '"draw"' in row["draws"]


def test_consumer_module_handles_outcomes(
        db: Database, redis_url: str, tmp_path: Path, prefix: str,
        lifecycle_stage: Callable[[Settings], LifecycleHandler]) -> None:
    import consumers.lifecycle as consumer

    assert (consumer.GROUP, consumer.INPUT, consumer.OUTPUT) == ("lifecycle", "outcomes", None)
    handler = lifecycle_stage(Settings(redis_url, None, tmp_path, prefix))
    fp = f"fp-{uuid.uuid4().hex[:8]}"
    event = handler.decode(outcome(fp, "fix-d", "applied", 1).encode())
    assert handler.handle(event) == []
    assert pair(db, fp, "fix-d")["state"] == "ACTIVE"
    assert verify_file(tmp_path / "audit.jsonl").records == 2  # outcome + transition


def test_revert_counted_by_apply_is_not_counted_twice(service: LifecycleService) -> None:
    fp = f"fp-{uuid.uuid4().hex[:8]}"
    event = outcome(fp, "fix-e", "rolled_back", 1)
    assert service.breaker is not None
    service.breaker.record_revert("lint", "nightly", event.error_id)  # what apply does
    service.handle(event)
    assert service.breaker.scope_status("step:nightly/lint")["reverts_in_window"] == 1


def test_unused_pairs_are_swept_to_deprecated(service: LifecycleService, db: Database) -> None:
    fp = f"fp-{uuid.uuid4().hex[:8]}"
    service.handle(outcome(fp, "fix-old", "applied", 1))
    db.execute("UPDATE fix_stats SET last_used = now() - interval '100 days'"
               " WHERE fingerprint = $1", fp)
    swept = LifecycleStore(db).deprecate_unused(LifecyclePolicy())
    assert any(t.fingerprint == fp and t.dst is S.DEPRECATED for t in swept)
    # a verified success brings it back
    t = service.handle(outcome(fp, "fix-old", "applied", 2))
    assert t is not None and (t.src, t.dst) == (S.DEPRECATED, S.ACTIVE)


def test_rank_and_record_and_determinism(service: LifecycleService, db: Database) -> None:
    import random

    from pipeline.lifecycle.ranking import rank_and_record

    fp = f"fp-{uuid.uuid4().hex[:8]}"
    for i in range(6):
        service.handle(outcome(fp, "good", "applied", i))
    store = LifecycleStore(db)
    draws = rank_and_record(store, fp, ["good", "untried"], random.Random(3))
    assert {d.fix_id for d in draws} == {"good", "untried"}
    assert db.fetchval("SELECT count(*) FROM fix_rankings WHERE fingerprint = $1", fp) == 1
    # Given occurrences one nightly run apart (the loop above ran them microseconds apart,
    # which makes the interval signal noise), six successes on one commit agree.
    db.execute(
        "UPDATE lifecycle_outcomes o SET ts = now() - make_interval(days => (10 - n.rn)::int)"
        " FROM (SELECT ctid, row_number() OVER (ORDER BY ts) AS rn FROM lifecycle_outcomes"
        "       WHERE fingerprint = $1) n WHERE o.ctid = n.ctid", fp)
    assert store.determinism(fp) > 0.9
    service.handle(outcome(fp, "good", "flaky", 7))  # c1 failed, then passed as it was
    assert store.determinism(fp) < 0.5


def test_a_fix_that_works_never_makes_its_error_look_flaky(
        service: LifecycleService, db: Database) -> None:
    """QA: the error failed on commit ``init`` (escalated, then taught), and heal's fix made
    the step pass on ``init``: read as the commit passing unchanged, that marked the error
    flaky for good, and 14 applications counted as one success. A pass *with the fix* is no
    evidence of flakiness; a plain re-run that passes is."""
    from pipeline.lifecycle.flakiness import is_flaky

    fp, fix = f"fp-{uuid.uuid4().hex[:8]}", "taught-cp"
    service.handle(outcome(fp, fix, "escalated", 0, commit="init"))
    for i in range(1, 15):
        service.handle(outcome(fp, fix, "applied", i, commit="init" if i == 1 else f"c{i}"))
    # occurrences one nightly run apart: run microseconds apart, one slow handle (a loaded
    # machine) made the interval signal alone read as flaky
    db.execute(
        "UPDATE lifecycle_outcomes o SET ts = now() - make_interval(days => (20 - n.rn)::int)"
        " FROM (SELECT ctid, row_number() OVER (ORDER BY ts) AS rn FROM lifecycle_outcomes"
        "       WHERE fingerprint = $1) n WHERE o.ctid = n.ctid", fp)
    store = LifecycleStore(db)
    assert not is_flaky(store.determinism(fp))
    row = pair(db, fp, fix)
    assert row is not None and row["successes"] == 14 and row["state"] != "DRAFT"


def test_consumer_escalates_to_the_log_sink(
        redis_url: str, tmp_path: Path, prefix: str,
        lifecycle_stage: Callable[[Settings], LifecycleHandler]) -> None:
    import json

    handler = lifecycle_stage(Settings(redis_url, None, tmp_path, prefix))
    fp = f"fp-{uuid.uuid4().hex[:8]}"
    escalated = outcome(fp, "", "escalated", 1)
    handler.handle(escalated)
    handler.handle(escalated)  # redelivery: no second notification
    for i in range(2, 5):
        handler.handle(outcome(fp, f"fix-{i}", "rolled_back", i))
    notes = [json.loads(line) for line in
             (tmp_path / "notifications.jsonl").read_text().splitlines()]
    # (the shared test database may hold other tests' fingerprints the sweep escalates)
    mine = [n for n in notes if n["kind"] == "escalation" and n["fingerprint"] == fp]
    assert [n["rule"] for n in mine] == ["apply-escalated", "three-attempts"]
    last = mine[-1]
    assert last["attempts"] == 3 and last["actions_tried"] == ["fix-2", "fix-3", "fix-4"]
    # And the quarantines and the breaker trip the reverts caused notified too, with severity
    changes = {(n["kind"], n["rule"], n["severity"]) for n in notes if n["kind"] != "escalation"}
    assert ("lifecycle", "lifecycle-quarantined", "warning") in changes
    assert ("breaker", "breaker-open", "critical") in changes
    trips = [n for n in notes if n["kind"] == "breaker"]
    assert sorted(n["summary"].split(": ")[0] for n in trips) == [
        "heal breaker step:nightly/lint", "heal breaker workflow:nightly"]


def test_explain_calls_flaky_only_what_the_lookup_treats_as_flaky(
        service: LifecycleService, db: Database) -> None:
    """A low score from irregular occurrences alone gets no retry playbook (the lookup's
    ``flaky_fingerprints`` wants a failure that passed on a plain re-run), so explain must
    not say it does."""
    from pipeline.operator.explain import _determinism
    from pipeline.operator.render_explain import _head

    fp = f"fp-{uuid.uuid4().hex[:8]}"
    for i, commit in enumerate(("c1", "c2", "c3", "c4")):
        service.handle(outcome(fp, "fix-x", "escalated", i, commit=commit))
    db.execute(  # occurrences 1 s, 1 s and 3 days apart: irregular
        "UPDATE lifecycle_outcomes o SET ts = now() - make_interval(secs => n.gap)"
        " FROM (SELECT ctid, (ARRAY[259202, 259201, 259200, 0])[row_number() OVER"
        " (ORDER BY ts)] AS gap FROM lifecycle_outcomes WHERE fingerprint = $1) n"
        " WHERE o.ctid = n.ctid", fp)
    det = _determinism(ReportStore(db), [fp])
    assert det["score"] < 0.5 and det["flaky"] is False
    story = {"fingerprint": fp, "level": "fine", "why": "-", "determinism": det,
             "sample": "", "normalization": None}
    assert "treated as deterministic" in "\n".join(_head(story))
    assert fp not in LifecycleStore(db).flaky_fingerprints()
    service.handle(outcome(fp, "fix-x", "flaky", 9, commit="c4"))
    assert _determinism(ReportStore(db), [fp])["flaky"] is True


def test_irregular_occurrences_alone_never_withhold_a_working_fix_s_credit(
        service: LifecycleService, db: Database) -> None:
    """A fingerprint none of whose failures ever passed unchanged is not flaky, however
    irregularly it occurs: the lookup gives it no retry playbook, so its fix's successes count
    (they were withheld when the interval spread alone put the score below the line, which
    the graduation tests met at random when their outcomes came microseconds apart)."""
    fp, fix = f"fp-{uuid.uuid4().hex[:8]}", "fix-credited"
    for i, commit in enumerate(("c1", "c2", "c3", "c4")):
        service.handle(outcome(fp, fix, "escalated", i, commit=commit))
    db.execute(  # occurrences 1 s, 1 s and 3 days apart: irregular
        "UPDATE lifecycle_outcomes o SET ts = now() - make_interval(secs => n.gap)"
        " FROM (SELECT ctid, (ARRAY[259202, 259201, 259200, 0])[row_number() OVER"
        " (ORDER BY ts)] AS gap FROM lifecycle_outcomes WHERE fingerprint = $1) n"
        " WHERE o.ctid = n.ctid", fp)
    store = LifecycleStore(db)
    assert store.determinism(fp) < 0.5 and not store.flaky(fp)
    for i in range(5, 8):
        service.handle(outcome(fp, fix, "applied", i, commit=f"c{i}"))
    row = pair(db, fp, fix)
    assert row is not None and row["successes"] == 3, row
