"""Cost controls shared by every worker through Redis: daily limits per kind of spend
(verification minutes, LLM tokens, fix applications) and a token-bucket rate limit on automatic
fixes (taken by the apply stage before each automatic application). Spend is recorded per
UTC day (kept 35 days), so ``heal status`` and ``heal metrics`` can show it.

The rate limit is two buckets (:func:`apply_rates`): the one every repository shares, always at
the operator's rate (or the default), and, for a repository whose heal.toml tightened the rate,
one of its own. A repository's heal.toml is untrusted: it may slow its own automatic fixes,
never the shared bucket (whose clamp to the capacity of the caller would otherwise let one
repository's ``automatic_fixes = 1`` stop every other repository's automatic fixes).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from pipeline.config import Settings
from pipeline.errors import UsageError
from pipeline.policy_limits import Limits
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

#: ARGV: now, capacity, refill per second, tokens wanted (negative: given back, up to the
#: capacity)
_BUCKET = r"""
local now, cap, rate, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4])
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or ARGV[2])
local ts = tonumber(redis.call('HGET', KEYS[1], 'ts') or ARGV[1])
tokens = math.min(cap, tokens + math.max(0, now - ts) * rate)
local ok = 0
if tokens >= want then tokens = math.min(cap, tokens - want); ok = 1 end
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
class Rate:
    """One token bucket of automatic fixes the apply stage takes from (:func:`apply_rates`)."""

    fixes: int  # capacity: automatic fixes in a burst ...
    minutes: float  # ... refilled over this many minutes
    #: '' for the bucket every repository shares, else the repository's own
    #: (:func:`repository_scope`)
    scope: str
    #: who set it, for the deferral detail and ``heal status``
    set_by: str

    def config(self) -> BudgetConfig:
        return BudgetConfig(bucket_capacity=float(self.fixes),
                            bucket_per_s=self.fixes / (self.minutes * 60))

    def key(self, settings: Settings, name: str = "apply") -> str:
        """Its Redis key: ``<prefix>:budget:bucket:apply`` (shared) or ``...:apply:<scope>``.
        Not partitioned (no hash tag): a bucket is shared by every partition, and each call
        on it is single-key, so Redis Cluster may put it in any slot."""
        return settings.key("budget", "bucket", name, *((self.scope,) if self.scope else ()))


def repository_scope(root: Path | str) -> str:
    """The key part of a repository's own token bucket: a short hash of its root (so no path
    character, and no ``{`` that would make a Redis Cluster hash tag, reaches the key)."""
    return hashlib.sha256(os.fsencode(str(root))).hexdigest()[:16]


def shared_rate(settings: Settings) -> Rate:
    """The bucket every repository shares: the operator's ``[budget] automatic_fixes`` /
    ``automatic_fixes_minutes`` (or the defaults), never a repository's."""
    from pipeline.trust.operator import ENV_CONFIG, operator_config

    operator = operator_config(settings)
    limits = operator.limits
    keys = ("budget.automatic_fixes", "budget.automatic_fixes_minutes")
    if any(k in limits.from_file for k in keys):
        whose = f"the operator's [budget] in {operator.source}"
    else:
        whose = (f"the default; the operator sets it: [budget] in $HEAL_HOME/heal.toml or "
                 f"{ENV_CONFIG}")
    return Rate(limits.count(keys[0]), limits.get(keys[1]), "",
                f"shared by every repository: {whose}")


def apply_rates(settings: Settings, limits: Limits, root: Path | None,
                source: str = "heal.toml") -> tuple[Rate, ...]:
    """The buckets an automatic fix in ``root`` takes, in order: the repository's own when
    its heal.toml tightened the rate (``limits``: its policy governed, ``source``: its file),
    then the shared one (:func:`shared_rate`)."""
    shared = shared_rate(settings)
    fixes = limits.count("budget.automatic_fixes")
    minutes = limits.get("budget.automatic_fixes_minutes")
    if root is None or (fixes, minutes) == (shared.fixes, shared.minutes):
        return (shared,)
    own = Rate(fixes, minutes, repository_scope(root),
               f"this repository's own: [budget] in {source}")
    return (own, shared)


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

    def take_rates(self, rates: tuple[Rate, ...]) -> Rate | None:
        """One token of each bucket, in order (:func:`apply_rates`); the first that refuses,
        or None when every one gave its token. A refused call spends nothing: the tokens of
        the buckets before the refusing one are given back, so a deferred fix retried while
        the shared bucket is empty does not drain its repository's own."""
        taken: list[Rate] = []
        for rate in rates:
            if not self._take(rate.key(self.settings), rate.config(), 1.0):
                for earlier in taken:
                    self._take(earlier.key(self.settings), earlier.config(), -1.0)
                return rate
            taken.append(rate)
        return None

    def _take(self, key: str, c: BudgetConfig, tokens: float) -> bool:
        try:
            ok, _ = self._bucket(keys=[key],
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

    def status(self, rates: tuple[Rate, ...]) -> dict[str, Any]:
        """Today's spend, the deferred count and the token buckets of ``rates``
        (:func:`apply_rates`): ``rate`` the shared one (the last), ``repository_rate`` the
        repository's own when ``rates`` has one."""
        used = self.spent()
        kinds = sorted(set(used) | set(self.config.daily_limits))
        spend = {}
        for kind in kinds:
            limit = self.limit(kind)
            spend[kind] = {"used": round(used.get(kind, 0.0), 3), "limit": limit,
                           "remaining": None if limit is None
                           else round(max(0.0, limit - used.get(kind, 0.0)), 3)}
        try:  # automatic fixes the bucket deferred, waiting to be retried (pipeline/apply)
            deferred = int(self.client.zcard(deferred_key(self.settings)))
        except redis.RedisError as exc:
            raise redis_failure(exc, "budget", self.settings.prefix) from exc
        out: dict[str, Any] = {"day": self.day(), "spend": spend, "deferred": deferred}
        for field_name, rate in (("rate", rates[-1]), ("repository_rate", rates[0])):
            if field_name == "rate" or rate.scope:
                out[field_name] = {**self._bucket_status(rate.key(self.settings), rate.config()),
                                   "set_by": rate.set_by}
        return out

    def _bucket_status(self, key: str, c: BudgetConfig) -> dict[str, Any]:
        """The tokens a bucket holds as last written (refill since then not counted)."""
        try:
            tokens = self.client.hget(key, "tokens")
        except redis.RedisError as exc:
            raise redis_failure(exc, "budget", self.settings.prefix) from exc
        return {"tokens": round(float(_text(tokens)), 2) if tokens else c.bucket_capacity,
                "capacity": c.bucket_capacity, "per_minute": round(c.bucket_per_s * 60, 3),
                "minutes": round(c.bucket_capacity / (c.bucket_per_s * 60), 3)
                if c.bucket_per_s > 0 else None}


def budget_status(client: redis.Redis, settings: Settings,
                  cwd: str | None = None) -> dict[str, Any]:
    """The budget section of ``heal status --json``: ``{"day", "spend": {kind: {"used",
    "limit", "remaining"}}, "rate": {"tokens", "capacity", "per_minute", "minutes",
    "set_by"}, "policy"}``, with the limits the apply stage enforces: the daily limits of the
    policy in force in the repository of ``cwd`` (the current directory; its heal.toml, as
    the apply stage reads the repository of each error), the defaults outside a repository;
    ``rate`` is the bucket every repository shares (the operator's rate, or the default), and
    ``repository_rate`` (same fields) the repository's own when its heal.toml tightened the
    rate. ``policy`` names the policy.

    Raises:
        StreamUnavailable: Redis cannot be reached.
    """
    policy = _policy_at(cwd or os.getcwd(), settings)
    rates = apply_rates(settings, policy.limits, policy.root, policy.source)
    out = Budget(client, settings, policy.limits.budget()).status(rates)
    out["policy"] = policy.source
    if policy.warning:
        out["policy_warning"] = policy.warning
    return out


@dataclass(frozen=True)
class _Here:
    limits: Any
    source: str
    warning: str = ""
    root: Path | None = None


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
    return _Here(governed(settings, policy).limits, policy.source, loader.warning, root)
