"""The circuit breaker on a real Redis, pinned on what an operator sees: the exact refusal
reasons, the transitions it audits, its status (windows, threshold, remaining cooldown), the
scopes it checks, manual open/reset and what a dead Redis or a failing audit does
(pipeline.guardrails.breaker)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import redis

from pipeline.config import Settings
from pipeline.errors import StreamUnavailable, UsageError
from pipeline.guardrails.breaker import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    Transition,
    breaker_status,
    check_scope,
    scopes_for,
)
from tests.integration._guardrails_support import Clock, Recorder


def test_scopes_and_thresholds() -> None:
    assert scopes_for("lint", "ci") == ["step:ci/lint", "workflow:ci", "global"]
    assert scopes_for("lint", None) == ["step:lint", "global"]
    assert scopes_for(None, "ci") == ["workflow:ci", "global"]
    assert scopes_for(None, None) == ["global"]
    config = BreakerConfig(step_threshold=3, workflow_threshold=4, global_threshold=9)
    assert [config.threshold(s) for s in ("step:ci/lint", "workflow:ci", "global")] == [3, 4, 9]
    for good in ("global", "workflow:ci", "step:ci/lint"):
        check_scope(good)
    for bad in ("workflow:", "step:", "ci", "workflows:ci", ""):
        with pytest.raises(UsageError, match="unknown breaker scope"):
            check_scope(bad)


def test_a_trip_is_audited_refused_with_its_reason_and_shown_in_status(
        client: redis.Redis, settings: Settings, clock: Clock) -> None:
    audit = Recorder()
    breaker = CircuitBreaker(client, settings, clock=clock, audit=audit)
    assert breaker.record_revert("t", "w", "r1") == []
    clock.now += 10
    transitions = breaker.record_revert("t", "w", "r2")
    why = "2 revert(s) in 3600s (threshold 2)"
    assert transitions == [
        Transition("step:w/t", BreakerState.CLOSED, BreakerState.OPEN, why),
        Transition("workflow:w", BreakerState.CLOSED, BreakerState.OPEN, why)]
    # (each names the error whose revert tripped it: heal explain shows the trip)
    opened = {"from": "CLOSED", "to": "OPEN", "reason": why, "error_id": "r2"}
    assert audit.entries == [("breaker.transition", "step:w/t", opened),
                             ("breaker.transition", "workflow:w", opened)]
    clock.now += 100
    assert breaker.allow("t", "w", "SAFE") == (
        False, f"breaker OPEN at step:w/t ({why}); retry in 1700s")

    step = breaker.scope_status("step:w/t")
    assert step == {"state": "OPEN", "reason": why, "calls_in_window": 2,
                    "reverts_in_window": 2, "threshold": 2, "probes_in_flight": 0,
                    "cooldown_remaining_s": 1700.0}
    glob = breaker.scope_status("global")
    assert glob == {"state": "CLOSED", "reason": "", "calls_in_window": 2,
                    "reverts_in_window": 2, "threshold": 5, "probes_in_flight": 0}
    status = breaker_status(client, settings)
    assert status["state"] == "OPEN"
    assert sorted(status["scopes"]) == ["global", "step:w/t", "workflow:w"]
    assert sorted(status["open_scopes"]) == ["step:w/t", "workflow:w"]
    assert status["config"] == {"window_s": 3600.0, "step_threshold": 2,
                                "workflow_threshold": 2, "global_threshold": 5,
                                "min_volume": 2, "cooldown_s": 1800.0, "half_open_probes": 1,
                                "probe_timeout_s": 900.0}
    # the windows slide: an hour later the reverts no longer count, the state stays OPEN
    clock.now += 3600
    later = breaker.scope_status("step:w/t")
    assert (later["calls_in_window"], later["reverts_in_window"]) == (0, 0)
    assert later["cooldown_remaining_s"] == 0.0


def test_reverts_without_an_event_id_each_count(client: redis.Redis, settings: Settings,
                                                clock: Clock) -> None:
    breaker = CircuitBreaker(client, settings, clock=clock, audit=Recorder())
    breaker.record_revert("t", "w")
    assert {t.dst for t in breaker.record_revert("t", "w")} == {BreakerState.OPEN}
    calls = f"{breaker._base('step:w/t')}:calls"
    assert 3600 * 2 < client.ttl(calls) <= 3600 * 2 + 60


def test_the_global_level_trips_across_workflows(client: redis.Redis, settings: Settings,
                                                 clock: Clock) -> None:
    audit = Recorder()
    breaker = CircuitBreaker(client, settings, clock=clock, audit=audit)
    for n in range(4):
        breaker.record_revert(f"s{n}", f"w{n}", f"r{n}")
    assert breaker.allow("x", "other", "SAFE") == (True, "closed")
    transitions = breaker.record_revert("s9", "w9", "r9")
    assert transitions == [Transition("global", BreakerState.CLOSED, BreakerState.OPEN,
                                      "5 revert(s) in 3600s (threshold 5)")]
    allowed, reason = breaker.allow("x", "other", "SAFE")
    assert not allowed and reason.startswith("breaker OPEN at global (5 revert(s)")


def test_half_open_probe_closes_after_enough_successes(client: redis.Redis, settings: Settings,
                                                       clock: Clock) -> None:
    audit = Recorder()
    config = BreakerConfig(half_open_probes=2)
    breaker = CircuitBreaker(client, settings, config, clock=clock, audit=audit)
    breaker.record_revert("t", None, "r1")
    breaker.record_revert("t", None, "r2")
    clock.now += 1800
    # the category is compared case-insensitively
    assert breaker.allow("t", None, "safe") == (True, "half-open probe")
    assert audit.entries[-1] == ("breaker.transition", "step:t",
                                 {"from": "OPEN", "to": "HALF_OPEN",
                                  "reason": "cooldown elapsed"})
    assert breaker.allow("t", None, "SAFE") == (True, "half-open probe")
    assert breaker.scope_status("step:t")["probes_in_flight"] == 2
    assert (breaker.status()["state"], breaker.status()["open_scopes"]) == ("HALF_OPEN",
                                                                            ["step:t"])
    assert breaker.allow("t", None, "SAFE") == (
        False, "breaker HALF_OPEN at step:t: 2 probe(s) already in flight")
    assert breaker.allow("t", None, "RISKY") == (
        False, "breaker HALF_OPEN: only SAFE fixes may probe, this one is RISKY")
    assert breaker.record_success("t", None, "ok1") == []
    assert breaker.scope_status("step:t")["probes_in_flight"] == 1
    assert breaker.record_success("t", None, "ok2") == [
        Transition("step:t", BreakerState.HALF_OPEN, BreakerState.CLOSED,
                   "2 successful probe(s)")]
    status = breaker.scope_status("step:t")
    assert (status["state"], status["calls_in_window"], status["reverts_in_window"],
            status["probes_in_flight"]) == ("CLOSED", 0, 0, 0)


def test_a_timed_out_probe_reopens_with_its_reason(client: redis.Redis, settings: Settings,
                                                   clock: Clock) -> None:
    audit = Recorder()
    breaker = CircuitBreaker(client, settings, BreakerConfig(probe_timeout_s=60), clock=clock,
                             audit=audit)
    breaker.record_revert("t", None, "r1")
    breaker.record_revert("t", None, "r2")
    clock.now += 1800
    assert breaker.allow("t", None, "SAFE")[0]
    clock.now += 59
    assert breaker.allow("t", None, "SAFE")[1] == \
        "breaker HALF_OPEN at step:t: 1 probe(s) already in flight"
    clock.now += 1
    assert breaker.allow("t", None, "SAFE") == (
        False, "breaker OPEN at step:t (half-open probe timed out)")
    assert audit.entries[-1] == ("breaker.transition", "step:t",
                                 {"from": "HALF_OPEN", "to": "OPEN",
                                  "reason": "half-open probe timed out"})
    assert breaker.scope_status("step:t")["cooldown_remaining_s"] == 1800.0


def test_forced_open_refuses_until_reset_and_reset_empties_the_windows(
        client: redis.Redis, settings: Settings, clock: Clock) -> None:
    audit = Recorder()
    breaker = CircuitBreaker(client, settings, clock=clock, audit=audit)
    breaker.record_revert("t", "w", "r1")
    opened = breaker.force_open("workflow:w", "maintenance")
    assert opened == Transition("workflow:w", BreakerState.CLOSED, BreakerState.FORCED_OPEN,
                                "maintenance")
    assert breaker.allow("t", "w", "SAFE") == (
        False, "breaker FORCED_OPEN at workflow:w (maintenance); run heal breaker reset")
    assert breaker.scope_status("workflow:w") == {
        "state": "FORCED_OPEN", "reason": "maintenance", "calls_in_window": 1,
        "reverts_in_window": 1, "threshold": 2, "probes_in_flight": 0}
    assert breaker.status()["state"] == "FORCED_OPEN"
    assert breaker.status()["open_scopes"] == ["workflow:w"]
    assert breaker.force_open().src is BreakerState.CLOSED  # global, by default
    assert breaker.reset("global") == Transition("global", BreakerState.FORCED_OPEN,
                                                 BreakerState.CLOSED, "reset by hand")
    reset = breaker.reset("workflow:w")
    assert reset == Transition("workflow:w", BreakerState.FORCED_OPEN, BreakerState.CLOSED,
                               "reset by hand")
    assert audit.entries[-1] == ("breaker.transition", "workflow:w",
                                 {"from": "FORCED_OPEN", "to": "CLOSED",
                                  "reason": "reset by hand"})
    after = breaker.scope_status("workflow:w")
    assert (after["state"], after["calls_in_window"], after["reverts_in_window"]) == (
        "CLOSED", 0, 0)
    assert breaker.allow("t", "w", "SAFE") == (True, "closed")
    assert breaker.status()["state"] == "CLOSED" and breaker.status()["open_scopes"] == []
    with pytest.raises(UsageError):
        breaker.force_open("nonsense")


def test_manual_scopes_show_in_status(client: redis.Redis, settings: Settings,
                                      clock: Clock) -> None:
    breaker = CircuitBreaker(client, settings, clock=clock, audit=Recorder())
    breaker.force_open("step:w/t", "look")
    status = breaker.status()
    assert sorted(status["scopes"]) == ["global", "step:w/t"]
    assert status["open_scopes"] == ["step:w/t"]


def test_a_failing_audit_never_changes_the_decision(client: redis.Redis, settings: Settings,
                                                    clock: Clock,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    breaker = CircuitBreaker(client, settings, clock=clock, audit=Recorder(fail=True))
    breaker.record_revert("t", None, "r1")
    with caplog.at_level(logging.ERROR, logger="heal.breaker"):
        transitions = breaker.record_revert("t", None, "r2")
    assert [t.dst for t in transitions] == [BreakerState.OPEN]
    assert "step:t" in caplog.text and "not audited" in caplog.text
    assert not breaker.allow("t", None, "SAFE")[0]
    assert breaker.force_open("global").dst is BreakerState.FORCED_OPEN


def test_a_dead_redis_is_stream_unavailable(dead_redis: redis.Redis, settings: Settings) -> None:
    breaker = CircuitBreaker(dead_redis, settings, audit=Recorder())
    for call in (lambda: breaker.allow("t", "w"), lambda: breaker.record_revert("t", "w"),
                 lambda: breaker.record_success("t", "w"), lambda: breaker.reset("global"),
                 lambda: breaker.force_open("global"), breaker.status):
        with pytest.raises(StreamUnavailable, match="circuit breaker: Redis unreachable"):
            call()


def test_the_commands_reach_the_configured_engines(tmp_path: Path, settings: Settings,
                                                   database_url: str) -> None:
    from pipeline.guardrails._connect import connect_redis, open_database

    connected = connect_redis(settings)
    assert connected.ping()
    CircuitBreaker(connected, settings, audit=Recorder()).force_open("global", "via connect")
    assert breaker_status(connected, settings)["state"] == "FORCED_OPEN"
    dead = Settings(f"unix://{tmp_path}/no.sock", None, tmp_path, settings.prefix)
    with pytest.raises(StreamUnavailable, match="cannot reach HEAL_REDIS_URL"):
        connect_redis(dead)
    db = open_database(Settings(settings.redis_url, database_url, tmp_path, settings.prefix))
    try:
        assert db.fetch("SELECT to_regclass('audit_log') IS NOT NULL AS migrated")[0]["migrated"]
    finally:
        db.close()


def test_the_default_auditor_is_anchored_in_the_breakers_redis(client: redis.Redis,
                                                              tmp_path: Path,
                                                              prefix: str) -> None:
    from pipeline.guardrails.audit import read_anchor
    from tests._audit_ids import file_log_id

    settings = Settings(None, None, tmp_path, prefix)  # no URL: only the given client
    CircuitBreaker(client, settings).force_open("global", "by hand")
    path = tmp_path / "audit.jsonl"
    assert '"breaker.transition"' in path.read_text()
    assert [seq for seq, _ in read_anchor(client, settings, file_log_id(path))] == [1]
