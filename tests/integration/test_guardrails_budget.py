"""Cost controls on a real Redis: daily limits, the token bucket, status."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import redis

from pipeline.config import Settings
from pipeline.errors import UsageError
from pipeline.guardrails.budget import Budget, BudgetConfig, Rate, budget_status
from tests.integration._guardrails_support import Clock

NOW = 1_795_000_000.0  # 2026-11-18


@pytest.fixture
def settings(redis_url: str, tmp_path: Path, prefix: str) -> Settings:
    return Settings(redis_url, None, tmp_path, prefix)


def test_daily_limit_refuses_and_resets_next_day(redis_url, settings) -> None:
    clock = Clock(NOW)
    config = BudgetConfig(daily_limits={"llm_tokens": 1000})
    budget = Budget(redis.Redis.from_url(redis_url), settings, config, clock=clock)
    assert budget.try_spend("llm_tokens", 600).allowed
    refused = budget.try_spend("llm_tokens", 600)
    assert not refused.allowed and refused.used == 600
    assert budget.record("llm_tokens", 600).used == 1200  # actual spend is never lost
    clock.now += 86400
    assert budget.try_spend("llm_tokens", 600).allowed
    with pytest.raises(UsageError):
        budget.try_spend("llm_tokens", -1)


def test_limit_holds_under_concurrency(redis_url, settings) -> None:
    config = BudgetConfig(daily_limits={"verification_minutes": 10})
    granted: list[bool] = []

    def worker() -> None:
        budget = Budget(redis.Redis.from_url(redis_url), settings, config)
        granted.extend(budget.try_spend("verification_minutes", 1).allowed for _ in range(5))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert granted.count(True) == 10


def test_token_bucket_refills(redis_url, settings) -> None:
    clock = Clock(NOW)
    budget = Budget(redis.Redis.from_url(redis_url), settings, clock=clock)
    rates = (Rate(3, 3, "", "shared"),)  # 3 in a burst, one a minute
    assert [budget.take_rates(rates) is None for _ in range(4)] == [True, True, True, False]
    clock.now += 60
    assert budget.take_rates(rates) is None and budget.take_rates(rates) is not None


def test_a_token_of_a_repositorys_own_bucket_is_given_back_when_the_shared_one_refuses(
        redis_url, settings) -> None:
    # Given a repository's own bucket (2 per 10 min) taken before the shared one (1 per 10 min)
    budget = Budget(redis.Redis.from_url(redis_url), settings, clock=Clock(NOW))
    own = Rate(2, 10, "r1", "own")
    shared = Rate(1, 10, "", "shared")
    assert budget.take_rates((own, shared)) is None  # own 1 left, shared 0
    # When the shared bucket refuses, then the repository's token is given back: a deferred
    # fix retried while the shared bucket is empty does not drain its repository's own
    assert budget.take_rates((own, shared)) == shared
    assert budget.take_rates((own, shared)) == shared
    assert float(budget.client.hget(own.key(settings), "tokens")) == 1
    # ... and giving back never lifts a bucket above its capacity
    assert budget.take_rates((Rate(2, 10, "r2", "own"), shared)) == shared
    assert float(budget.client.hget(Rate(2, 10, "r2", "").key(settings), "tokens")) == 2


def test_status(redis_url, settings) -> None:
    client = redis.Redis.from_url(redis_url)
    Budget(client, settings).record("verification_minutes", 12.5)
    status = budget_status(client, settings)
    assert status["spend"]["verification_minutes"]["used"] == 12.5
    assert status["spend"]["verification_minutes"]["remaining"] == 227.5
    assert status["deferred"] == 0
