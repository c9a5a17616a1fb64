"""Cost controls shared by every worker through Redis: daily limits per kind of spend
(verification minutes, LLM tokens, fix applications) and a token-bucket rate limit on automatic
fixes (taken by the apply stage before each automatic application). Spend is recorded per
UTC day (kept 35 days), so ``heal status`` and ``heal metrics`` can show it.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from pipeline.config import Settings
from pipeline.errors import UsageError
from pipeline.runtime.connection import redis_failure

DAY_TTL_S = 35 * 86400

DEFAULT_LIMITS: dict[str, float] = {
    "verification_minutes": 240.0,
    "llm_tokens": 500_000.0,
    "fix_applications": 200.0,
}

#: ARGV: kind, amount, limit (negative: no limit), ttl, force ('1' records even past the limit)
_SPEND = r"""
local used = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local amount, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
if ARGV[5] ~= '1' and limit >= 0 and used + amount > limit then
  return {0, tostring(used)}
end
local now = redis.call('HINCRBYFLOAT', KEYS[1], ARGV[1], amount)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return {1, tostring(now)}
"""

#: ARGV: now, capacity, refill per second, tokens wanted
_BUCKET = r"""
local now, cap, rate, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4])
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or ARGV[2])
local ts = tonumber(redis.call('HGET', KEYS[1], 'ts') or ARGV[1])
tokens = math.min(cap, tokens + math.max(0, now - ts) * rate)
local ok = 0
if tokens >= want then tokens = tokens - want; ok = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(cap / rate) + 60)
return {ok, tostring(tokens)}
"""


@dataclass(frozen=True)
class BudgetConfig:
    daily_limits: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    bucket_capacity: float = 20.0  # automatic fixes in a burst
    bucket_per_s: float = 20.0 / 600  # refill: 20 per 10 minutes


@dataclass(frozen=True)
class SpendResult:
    allowed: bool
    used: float
    limit: float | None


def deferred_key(settings: Settings) -> str:
    """The Redis sorted set of automatic fixes the token bucket deferred (pipeline/apply puts
    them there and releases them; the budget's status counts them)."""
    return settings.key("apply", "deferred")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Budget:
    """Raises StreamUnavailable (every method) when Redis cannot be reached, AccessRefused
    when the ACL of its user refuses (``redis_failure``)."""

    def __init__(self, client: redis.Redis, settings: Settings, config: BudgetConfig | None = None,
                 *, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.settings = settings
        self.config = config or BudgetConfig()
        self.clock = clock
        self._spend = client.register_script(_SPEND)
        self._bucket = client.register_script(_BUCKET)

    def day(self) -> str:
        return dt.datetime.fromtimestamp(self.clock(), dt.UTC).strftime("%Y-%m-%d")

    def _day_key(self, day: str | None = None) -> str:
        return self.settings.key("budget", "spend", day or self.day())

    def limit(self, kind: str) -> float | None:
        return self.config.daily_limits.get(kind)

    def try_spend(self, kind: str, amount: float) -> SpendResult:
        """Reserve ``amount`` of today's ``kind`` budget; refused (nothing recorded) past the
        daily limit. Raises UsageError for a negative amount."""
        return self._call(kind, amount, force=False)

    def record(self, kind: str, amount: float) -> SpendResult:
        """Record spend that already happened (always recorded, even past the limit)."""
        return self._call(kind, amount, force=True)

    def _call(self, kind: str, amount: float, force: bool) -> SpendResult:
        if amount < 0:
            raise UsageError(f"budget: spend of {kind} must be >= 0, got {amount}")
        limit = self.limit(kind)
        args: list[str | float] = [kind, amount, -1 if limit is None else limit, DAY_TTL_S,
                                   "1" if force else "0"]
        try:
            ok, used = self._spend(keys=[self._day_key()], args=args)
        except redis.RedisError as exc:
            raise redis_failure(exc, "budget", self.settings.prefix) from exc
        return SpendResult(bool(int(ok)), float(_text(used)), limit)

    def take_token(self, name: str = "apply", tokens: float = 1.0) -> bool:
        """Token-bucket rate limit (``name`` selects the bucket)."""
        c = self.config
        try:
            ok, _ = self._bucket(keys=[self.settings.key("budget", "bucket", name)],
                                 args=[self.clock(), c.bucket_capacity, c.bucket_per_s, tokens])
        except redis.RedisError as exc:
            raise redis_failure(exc, "budget", self.settings.prefix) from exc
        return bool(int(ok))

    def spent(self, day: str | None = None) -> dict[str, float]:
        try:
            raw = self.client.hgetall(self._day_key(day))
        except redis.RedisError as exc:
            raise redis_failure(exc, "budget", self.settings.prefix) from exc
        return {_text(k): float(_text(v)) for k, v in raw.items()}

    def status(self) -> dict[str, Any]:
        used = self.spent()
        kinds = sorted(set(used) | set(self.config.daily_limits))
        spend = {}
        for kind in kinds:
            limit = self.limit(kind)
            spend[kind] = {"used": round(used.get(kind, 0.0), 3), "limit": limit,
                           "remaining": None if limit is None
                           else round(max(0.0, limit - used.get(kind, 0.0)), 3)}
        try:
            tokens = self.client.hget(self.settings.key("budget", "bucket", "apply"), "tokens")
        except redis.RedisError as exc:
            raise redis_failure(exc, "budget", self.settings.prefix) from exc
        c = self.config
        try:  # automatic fixes the bucket deferred, waiting to be retried (pipeline/apply)
            deferred = int(self.client.zcard(deferred_key(self.settings)))
        except redis.RedisError as exc:
            raise redis_failure(exc, "budget", self.settings.prefix) from exc
        return {"day": self.day(), "spend": spend, "deferred": deferred,
                "rate": {"tokens": round(float(_text(tokens)), 2) if tokens
                         else c.bucket_capacity, "capacity": c.bucket_capacity,
                         "per_minute": round(c.bucket_per_s * 60, 3),
                         "minutes": round(c.bucket_capacity / (c.bucket_per_s * 60), 3)
                         if c.bucket_per_s > 0 else None}}


def budget_status(client: redis.Redis, settings: Settings,
                  cwd: str | None = None) -> dict[str, Any]:
    """The budget section of ``heal status --json``: ``{"day", "spend": {kind: {"used",
    "limit", "remaining"}}, "rate": {"tokens", "capacity", "per_minute", "minutes"},
    "policy"}``, with the limits the apply stage enforces: those of the policy in force in
    the repository of ``cwd`` (the current directory; its heal.toml, as the apply stage reads
    the repository of each error), the defaults outside a repository. ``policy`` names it.

    Raises:
        StreamUnavailable: Redis cannot be reached.
    """
    policy = _policy_at(cwd or os.getcwd(), settings)
    out = Budget(client, settings, policy.limits.budget()).status()
    out["policy"] = policy.source
    if policy.warning:
        out["policy_warning"] = policy.warning
    return out


@dataclass(frozen=True)
class _Here:
    limits: Any
    source: str
    warning: str = ""


def _policy_at(cwd: str, settings: Settings) -> _Here:
    """The policy in force where ``cwd`` is (the loader the apply stage uses), its limits
    under the operator configuration (``pipeline.trust.operator.governed``)."""
    from pipeline.errors import GitError
    from pipeline.gitops import find_root
    from pipeline.policy import Policy, policy_for
    from pipeline.trust.operator import governed

    try:
        root = find_root(cwd)
    except (GitError, OSError):
        root = None
    if root is None:
        return _Here(governed(settings, Policy()).limits, Policy().source)
    loader = policy_for(root)
    policy = loader.current()
    return _Here(governed(settings, policy).limits, policy.source, loader.warning)
