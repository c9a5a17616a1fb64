"""A process that drains again and again keeps nothing per drain: heal running inside a
long-lived orchestrator process (the Dagster adapter, the Python API) drains the pipeline
inline for every failed step, and each drain's stage builds open a PostgreSQL pool (lookup,
lifecycle), start a sync thread and open the local cache (lookup). When the drain ends they
are closed and stopped, on the real engines."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import orjson
import redis

from pipeline.config import Settings
from pipeline.runtime import drain_inline
from storage import db as databases

THREADS = ("heal-lookup-sync", "heal-lifecycle-sweep")


def _threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name in THREADS and t.is_alive()}


def _open_files(under: Path) -> list[str]:
    """The files under ``under`` this process holds open."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # (closed meanwhile)
        if target.startswith(str(under)):
            found.append(target)
    return found


def test_repeated_inline_drains_keep_no_pool_or_thread(
        tmp_path: Path, prefix: str, client: redis.Redis, redis_url: str,
        database_url: str) -> None:
    settings = Settings(redis_url=redis_url, database_url=database_url,
                        home=tmp_path / "home", prefix=prefix)
    pools, threads = set(databases._OPEN), _threads()
    for i in range(3):
        event = {"v": 1, "id": f"drain-{i}", "text": f"ModuleNotFoundError: No module named "
                 f"'pkg{i}'", "source": {"kind": "api", "name": "test"}}
        client.xadd(settings.stream("errors"), {"event": orjson.dumps(event)})
        handled = drain_inline(settings, client, stages=["fingerprint", "lookup", "lifecycle"])
        assert handled == 2  # the error fingerprinted, then looked up
        left = set(databases._OPEN) - pools
        assert left == set(), f"drain {i} left {len(left)} database pool(s) open"
        assert _threads() - threads == set(), f"drain {i} left a thread running"
        if os.path.isdir("/proc/self/fd"):  # (the local cache's SQLite files, not left to gc)
            assert _open_files(settings.home) == [], f"drain {i} left files open"
