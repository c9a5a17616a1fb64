"""An inline drain of the lifecycle stage (what `heal run` and `heal apply` do) sweeps once
and leaves no sweep timer running after it returns (real Redis and PostgreSQL)."""

from __future__ import annotations

import threading
from pathlib import Path

import redis

from pipeline.config import Settings
from pipeline.runtime import drain_inline
from storage.db import Database


def _sweep_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate()
            if t.name == "heal-lifecycle-sweep" and t.is_alive()}


def test_inline_drain_stops_its_sweep_timer(tmp_path: Path, prefix: str, client: redis.Redis,
                                            db: Database) -> None:
    settings = Settings(redis_url=None, database_url=None, home=tmp_path / "home",
                        prefix=prefix)
    before = _sweep_threads()
    assert drain_inline(settings, client, stages=["lifecycle"], ctx_resources={"db": db}) == 0
    assert _sweep_threads() - before == set()
    # the sweep did run once (it holds the lease for its interval), so the timed work is done
    assert client.exists(settings.key("lifecycle", "sweep")) == 1
