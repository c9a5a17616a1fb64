"""No lifecycle sweep timer outlives what started it: an inline drain (what `heal run` and
`heal apply` do) sweeps once and stops its timer when it returns, also when it fails, and a
lifecycle worker (`heal worker lifecycle`, `heal up`) stops its timer when it stops (real
Redis and PostgreSQL)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import redis

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.errors import StreamUnavailable
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


def test_a_failed_inline_drain_stops_its_sweep_timer(tmp_path: Path, prefix: str,
                                                     client: redis.Redis, db: Database) -> None:
    """The streams' Redis is gone once the stages are built (the stage's own connection, which
    the timer uses, still works): the drain fails with a clear error and leaves no timer."""
    settings = Settings(redis_url=None, database_url=None, home=tmp_path / "home",
                        prefix=prefix)
    gone = redis.Redis(unix_socket_path=str(tmp_path / "no-redis.sock"),
                       socket_connect_timeout=1)
    before = _sweep_threads()
    with pytest.raises(StreamUnavailable, match="draining the pipeline inline"):
        drain_inline(settings, gone, stages=["lifecycle"],
                     ctx_resources={"db": db, "redis": client})
    assert _sweep_threads() - before == set()
    # the timer starts with the drain's first round (after the checks that failed here), so
    # it never swept: nothing ran on a Redis the drain could not use
    assert client.exists(settings.key("lifecycle", "sweep")) == 0


@pytest.mark.parametrize("argv", [["worker", "lifecycle"], ["up", "--stages", "lifecycle"]])
def test_a_stopped_lifecycle_worker_leaves_no_sweep_timer(
    argv: list[str], heal_env: dict[str, str], client: redis.Redis, prefix: str
) -> None:
    """The worker runs in this process until SIGTERM (sent once its timer and its worker
    thread run); when `main` returns, the timer has stopped too."""
    before = _sweep_threads()
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    # until the worker installs its own handler, a SIGTERM must not end the test session
    signal.signal(signal.SIGTERM, lambda signum, frame: None)

    def stop_once_running() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            names = {t.name for t in threading.enumerate()}
            if _sweep_threads() - before and "heal-lifecycle" in names:
                break
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    stopper = threading.Thread(target=stop_once_running, daemon=True)
    stopper.start()
    try:
        assert main([*argv, "--block-ms", "200"]) == 0
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        stopper.join(5)
    assert _sweep_threads() - before == set()
    assert client.exists(f"{prefix}:lifecycle:sweep") == 1  # its timer had run
