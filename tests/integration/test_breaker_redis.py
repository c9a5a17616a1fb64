"""The circuit breaker against a real Redis: tripping, cooldown, half-open probes, sharing."""

from __future__ import annotations

import threading
from pathlib import Path

import redis

from pipeline.config import Settings
from pipeline.guardrails.breaker import BreakerConfig, CircuitBreaker, breaker_status


def test_two_reverts_within_an_hour_trip_and_the_next_fix_is_refused(client, settings, clock):
    breaker = CircuitBreaker(client, settings, clock=clock)
    assert breaker.allow("pytest", "nightly", "SAFE") == (True, "closed")
    breaker.record_revert("pytest", "nightly", "e1")
    assert breaker.allow("pytest", "nightly", "SAFE")[0]
    clock.now += 1800
    transitions = breaker.record_revert("pytest", "nightly", "e2")
    assert {(t.scope, t.dst.value) for t in transitions} == {
        ("step:nightly/pytest", "OPEN"), ("workflow:nightly", "OPEN")}
    allowed, reason = breaker.allow("pytest", "nightly", "SAFE")
    assert not allowed and "OPEN" in reason
    # another workflow is unaffected: the global level needs 5 reverts
    assert breaker.allow("build", "release", "SAFE")[0]
    assert breaker_status(client, settings)["state"] == "OPEN"


def test_reverts_outside_the_window_do_not_trip(client, settings, clock):
    breaker = CircuitBreaker(client, settings, clock=clock)
    breaker.record_revert("lint", "ci", "e1")
    clock.now += 3601
    assert breaker.record_revert("lint", "ci", "e2") == []
    assert breaker.allow("lint", "ci", "SAFE")[0]


def test_redelivered_revert_is_counted_once(client, settings, clock):
    breaker = CircuitBreaker(client, settings, clock=clock)
    breaker.record_revert("lint", "ci", "same")
    assert breaker.record_revert("lint", "ci", "same") == []
    assert breaker.allow("lint", "ci", "RISKY")[0]


def test_minimum_volume_is_required(client, settings, clock):
    config = BreakerConfig(min_volume=4)
    breaker = CircuitBreaker(client, settings, config, clock=clock)
    breaker.record_revert("t", "w", "e1")
    assert breaker.record_revert("t", "w", "e2") == []  # 2 reverts, 2 calls < 4
    breaker.record_success("t", "w", "s1")
    assert [t.dst.value for t in breaker.record_revert("t", "w", "e3")] == ["OPEN", "OPEN"]


def _trip(breaker: CircuitBreaker) -> None:
    breaker.record_revert("t", "w", "r1")
    breaker.record_revert("t", "w", "r2")


def test_cooldown_then_half_open_allows_one_safe_probe(client, settings, clock):
    breaker = CircuitBreaker(client, settings, clock=clock)
    _trip(breaker)
    clock.now += 1799
    assert not breaker.allow("t", "w", "SAFE")[0]
    clock.now += 1
    allowed, reason = breaker.allow("t", "w", "MODERATE")
    assert not allowed and "only SAFE" in reason
    assert breaker.allow("t", "w", "SAFE") == (True, "half-open probe")
    allowed, reason = breaker.allow("t", "w", "SAFE")
    assert not allowed and "in flight" in reason
    transitions = breaker.record_success("t", "w", "ok1")
    assert {t.dst.value for t in transitions} == {"CLOSED"}
    assert breaker.allow("t", "w", "RISKY")[0]


def test_a_fix_decided_before_the_breaker_opened_is_refused_at_apply_time(
        client, settings, clock):
    # Given a fix decided while the breaker was closed
    breaker = CircuitBreaker(client, settings, clock=clock)
    assert breaker.refusal("t", "w", "SAFE") == ""
    # When the breaker opens before it is applied, Then it is refused, even past the
    # cooldown (its own pre-flight took no probe), and reading changes no state
    _trip(breaker)
    assert breaker.refusal("t", "w", "SAFE").startswith("breaker OPEN at step:w/t")
    clock.now += 1800
    assert breaker.refusal("t", "w", "SAFE").startswith("breaker OPEN at step:w/t")
    assert breaker.scope_status("step:w/t")["state"] == "OPEN"
    # HALF_OPEN: only the SAFE fix whose pre-flight took the probe goes through
    assert breaker.allow("t", "w", "SAFE") == (True, "half-open probe")
    assert breaker.refusal("t", "w", "SAFE", probe=True) == ""
    assert "HALF_OPEN" in breaker.refusal("t", "w", "SAFE")
    assert "HALF_OPEN" in breaker.refusal("t", "w", "MODERATE", probe=True)


def test_revert_during_probe_reopens(client, settings, clock):
    breaker = CircuitBreaker(client, settings, clock=clock)
    _trip(breaker)
    clock.now += 1800
    assert breaker.allow("t", "w", "SAFE")[0]
    assert {t.dst.value for t in breaker.record_revert("t", "w", "r3")} == {"OPEN"}
    assert not breaker.allow("t", "w", "SAFE")[0]


def test_probe_timeout_reopens(client, settings, clock):
    breaker = CircuitBreaker(client, settings, BreakerConfig(probe_timeout_s=60), clock=clock)
    _trip(breaker)
    clock.now += 1800
    assert breaker.allow("t", "w", "SAFE")[0]
    clock.now += 61
    allowed, reason = breaker.allow("t", "w", "SAFE")
    assert not allowed and "timed out" in reason
    assert breaker.scope_status("step:w/t")["state"] == "OPEN"


def test_forced_open_and_reset(client, settings, clock):
    breaker = CircuitBreaker(client, settings, clock=clock)
    breaker.force_open("global", "maintenance")
    clock.now += 10 * 3600  # no cooldown for a breaker opened by hand
    allowed, reason = breaker.allow("t", "w", "SAFE")
    assert not allowed and "maintenance" in reason
    breaker.reset("global")
    assert breaker.allow("t", "w", "SAFE")[0]


def test_two_clients_share_one_breaker(redis_url, settings, clock):
    a = CircuitBreaker(redis.Redis.from_url(redis_url), settings, clock=clock)
    b = CircuitBreaker(redis.Redis.from_url(redis_url), settings, clock=clock)
    a.record_revert("t", "w", "r1")
    b.record_revert("t", "w", "r2")
    assert not a.allow("t", "w", "SAFE")[0]
    assert not b.allow("t", "w", "SAFE")[0]


def test_racing_workers_take_exactly_one_probe_slot(redis_url, settings, clock):
    CircuitBreaker(redis.Redis.from_url(redis_url), settings, clock=clock).record_revert(
        "t", "w", "r1")
    CircuitBreaker(redis.Redis.from_url(redis_url), settings, clock=clock).record_revert(
        "t", "w", "r2")
    clock.now += 1800
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        breaker = CircuitBreaker(redis.Redis.from_url(redis_url), settings, clock=clock)
        barrier.wait()
        results.append(breaker.allow("t", "w", "SAFE")[0])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]


def test_state_survives_a_new_client(redis_url, settings, clock):
    _trip(CircuitBreaker(redis.Redis.from_url(redis_url), settings, clock=clock))
    fresh = CircuitBreaker(redis.Redis.from_url(redis_url), settings, clock=clock)
    status = fresh.status()
    assert status["scopes"]["step:w/t"]["state"] == "OPEN"
    assert status["scopes"]["step:w/t"]["reverts_in_window"] == 2
    assert "step:w/t" in status["open_scopes"]


def _revert_in_process(url: str, home: str, prefix: str, n: int) -> None:
    settings = Settings(redis_url=url, database_url=None, home=Path(home), prefix=prefix)
    CircuitBreaker(redis.Redis.from_url(url), settings).record_revert("t", "w", f"proc-{n}")


def test_worker_processes_racing_agree(redis_url, settings) -> None:
    import multiprocessing

    # spawn, not fork: forking a test process that holds other threads can deadlock a child
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_revert_in_process,
                         args=(redis_url, str(settings.home), settings.prefix, n))
             for n in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 6
    views = [CircuitBreaker(redis.Redis.from_url(redis_url), settings).status()
             for _ in range(3)]
    # the remaining cooldown is a countdown: it differs by the time between two reads
    for view in views:
        for scope in view["scopes"].values():
            remaining = scope.pop("cooldown_remaining_s", None)
            assert remaining is None or 0 < remaining <= view["config"]["cooldown_s"]
    assert all(v == views[0] for v in views)
    step = views[0]["scopes"]["step:w/t"]
    assert step["state"] == "OPEN" and step["reverts_in_window"] == 6
    assert views[0]["scopes"]["global"]["state"] == "OPEN"  # 6 >= 5 global threshold


def test_transitions_are_audited_by_default(client, settings, clock) -> None:
    from pipeline.guardrails.audit import verify_file

    _trip(CircuitBreaker(client, settings, clock=clock))  # no auditor given
    lines = (settings.home / "audit.jsonl").read_text().splitlines()
    assert len(lines) == 2 and all('"breaker.transition"' in line for line in lines)
    assert verify_file(settings.home / "audit.jsonl").ok
