"""Property-based: whatever happens, the breaker only takes transitions of its state machine,
never lets a fix through while OPEN, and lets only SAFE probes through while HALF_OPEN."""

from __future__ import annotations

import uuid
from pathlib import Path

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import Settings
from pipeline.guardrails.breaker import BreakerConfig, BreakerState, CircuitBreaker
from tests.integration._guardrails_support import Clock

B = BreakerState
ALLOWED = {(B.CLOSED, B.OPEN), (B.OPEN, B.HALF_OPEN), (B.HALF_OPEN, B.OPEN),
           (B.HALF_OPEN, B.CLOSED)}

ACTIONS = st.lists(st.one_of(
    st.tuples(st.just("wait"), st.sampled_from([60, 600, 1800, 3600])),
    st.tuples(st.just("allow"), st.sampled_from(["SAFE", "MODERATE", "RISKY"])),
    st.tuples(st.just("revert"), st.none()),
    st.tuples(st.just("success"), st.none()),
), max_size=25)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=ACTIONS)
def test_breaker_state_machine(redis_url: str, tmp_path: Path, actions: list) -> None:
    clock = Clock()
    config = BreakerConfig(probe_timeout_s=1200)
    s = Settings(redis_url, None, tmp_path, f"p{uuid.uuid4().hex[:10]}")
    breaker = CircuitBreaker(redis.Redis.from_url(redis_url), s, config, clock=clock)
    scope = "step:w/t"
    for n, (action, arg) in enumerate(actions):
        before = B(breaker.scope_status(scope)["state"])
        if action == "wait":
            clock.now += arg
            continue
        if action == "allow":
            allowed, _ = breaker.allow("t", "w", arg)
            after = B(breaker.scope_status(scope)["state"])
            if allowed:
                assert after is not B.OPEN
                if after is B.HALF_OPEN:
                    assert arg == "SAFE"
        elif action == "revert":
            breaker.record_revert("t", "w", f"e{n}")
        else:
            breaker.record_success("t", "w", f"e{n}")
        after = B(breaker.scope_status(scope)["state"])
        if before is not after:
            assert (before, after) in ALLOWED, (before, after)
