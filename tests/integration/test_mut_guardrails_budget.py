"""Cost controls on a real Redis, pinned on their values: what a refusal reports, the day a
spend is booked under (and how long it is kept), limits that do not exist, the token bucket's
refill and cap, and every field of the status (pipeline.guardrails.budget)."""

from __future__ import annotations

import pytest
import redis

from pipeline.config import Settings
from pipeline.errors import StreamUnavailable, UsageError
from pipeline.guardrails.budget import (
    DAY_TTL_S,
    Budget,
    BudgetConfig,
    Rate,
    SpendResult,
    budget_status,
    deferred_key,
)
from tests.integration._guardrails_support import Clock

NOW = 1_795_000_000.0  # 2026-11-18 11:06 UTC



def test_spend_is_booked_per_utc_day_and_kept_35_days(client: redis.Redis,
                                                      settings: Settings) -> None:
    clock = Clock(NOW)
    budget = Budget(client, settings, BudgetConfig(daily_limits={"llm_tokens": 100}),
                    clock=clock)
    assert budget.day() == "2026-11-18"
    assert budget.try_spend("llm_tokens", 60) == SpendResult(True, 60.0, 100)
    assert budget.try_spend("llm_tokens", 40) == SpendResult(True, 100.0, 100)  # up to the limit
    assert budget.try_spend("llm_tokens", 0.5) == SpendResult(False, 100.0, 100)
    assert budget.record("llm_tokens", 0.5) == SpendResult(True, 100.5, 100)
    key = f"{settings.prefix}:budget:spend:2026-11-18"
    assert DAY_TTL_S - 5 < client.ttl(key) <= DAY_TTL_S == 35 * 86400
    assert budget.spent() == {"llm_tokens": 100.5}
    clock.now += 86400
    assert budget.day() == "2026-11-19" and budget.spent() == {}
    assert budget.spent("2026-11-18") == {"llm_tokens": 100.5}


def test_a_kind_without_a_limit_is_never_refused(client: redis.Redis,
                                                 settings: Settings) -> None:
    budget = Budget(client, settings, BudgetConfig(daily_limits={}), clock=Clock(NOW))
    assert budget.limit("anything") is None
    assert budget.try_spend("anything", 1e9) == SpendResult(True, 1e9, None)
    assert budget.try_spend("anything", 0) == SpendResult(True, 1e9, None)
    with pytest.raises(UsageError, match="spend of anything must be >= 0, got -1"):
        budget.record("anything", -1)


def test_the_default_limits(client: redis.Redis, settings: Settings) -> None:
    budget = Budget(client, settings, clock=Clock(NOW))
    assert [budget.limit(k) for k in ("verification_minutes", "llm_tokens",
                                      "fix_applications")] == [240.0, 500_000.0, 200.0]
    assert budget.try_spend("fix_applications", 200).allowed
    assert not budget.try_spend("fix_applications", 1).allowed


def test_the_token_bucket_refills_to_its_capacity_only(client: redis.Redis,
                                                        settings: Settings) -> None:
    clock = Clock(NOW)
    budget = Budget(client, settings, clock=clock)
    rate = (Rate(2, 2 / 6, "", "shared"),)  # 2 in a burst, 0.1 a second

    def take(rates: tuple[Rate, ...] = rate) -> bool:
        return budget.take_rates(rates) is None

    assert take() and take() and not take()
    assert take((Rate(2, 2 / 6, "r1", "own"),))  # each scope is its own bucket
    clock.now += 9
    assert not take()  # 0.9 of a token
    clock.now += 1
    assert take() and not take()
    clock.now += 3600  # a long quiet spell still gives at most the capacity
    assert [take() for _ in range(3)] == [True, True, False]
    key = f"{settings.prefix}:budget:bucket:apply"
    assert 0 < client.ttl(key) <= 20 + 60


def test_status_reports_every_kind_the_bucket_and_the_deferred(client: redis.Redis,
                                                               settings: Settings) -> None:
    clock = Clock(NOW)
    config = BudgetConfig(daily_limits={"llm_tokens": 1000, "fix_applications": 2})
    budget = Budget(client, settings, config, clock=clock)
    rates = (Rate(5, 1 / 6, "", "shared"),)  # 5 in a burst, 0.5 a second
    fresh = budget.status(rates)
    assert fresh == {"day": "2026-11-18", "deferred": 0,
                     "spend": {"fix_applications": {"used": 0.0, "limit": 2, "remaining": 2},
                               "llm_tokens": {"used": 0.0, "limit": 1000, "remaining": 1000}},
                     "rate": {"tokens": 5, "capacity": 5, "per_minute": 30.0,
                              "minutes": 0.167, "set_by": "shared"}}
    budget.record("llm_tokens", 250.1234)
    budget.record("fix_applications", 3)
    budget.record("unlimited_kind", 7)
    budget.take_rates(rates)
    budget.take_rates(rates)
    client.zadd(deferred_key(settings), {"e1": 1.0, "e2": 2.0})
    status = budget.status(rates)
    assert status["spend"] == {
        "fix_applications": {"used": 3.0, "limit": 2, "remaining": 0.0},
        "llm_tokens": {"used": 250.123, "limit": 1000, "remaining": 749.877},
        "unlimited_kind": {"used": 7.0, "limit": None, "remaining": None}}
    assert status["rate"] == {"tokens": 3.0, "capacity": 5, "per_minute": 30.0,
                              "minutes": 0.167, "set_by": "shared"}
    clock.now += 1.5  # 0.75 of a token refilled, then one taken
    budget.take_rates(rates)
    assert budget.status(rates)["rate"]["tokens"] == 2.75
    assert status["deferred"] == 2
    assert deferred_key(settings) == f"{settings.prefix}:apply:deferred"
    assert budget_status(client, settings)["spend"]["llm_tokens"]["limit"] == 500_000.0


def test_a_dead_redis_is_stream_unavailable(dead_redis: redis.Redis, settings: Settings) -> None:
    budget = Budget(dead_redis, settings)
    rates = (Rate(1, 1, "", "shared"),)
    for call in (lambda: budget.try_spend("llm_tokens", 1), lambda: budget.take_rates(rates),
                 budget.spent, lambda: budget.status(rates)):
        with pytest.raises(StreamUnavailable, match="budget: Redis unreachable"):
            call()
