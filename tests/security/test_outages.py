"""Attack 11: a PostgreSQL outage lost work: validate and lifecycle dead-lettered after 5
deliveries, each retry re-verifying and re-auditing; killed embedded engines were never
restarted by the workers holding leases on them.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from pipeline.config import Settings
from pipeline.demo.sample import break_formatting
from pipeline.errors import DatabaseUnavailable
from pipeline.runtime.noop import PassThroughHandler
from pipeline.runtime.options import WorkerOptions
from pipeline.runtime.worker import StageWorker
from pipeline.validate.validator import Validator
from storage import engines
from storage.attempts import AttemptStore
from storage.db import Database
from storage.engines import (
    _acquire,
    _release,
    embedded_postgres,
    embedded_redis,
    revive_held_engines,
)
from tests.integration._heal_validate_support import FORMAT_FIX, candidate, sample_repo


class DownThenUp(PassThroughHandler):
    """A handler whose database is down for the first ``down`` calls."""

    def __init__(self, down: int) -> None:
        super().__init__(on_event=self._maybe_down)
        self.down, self.calls = down, 0

    def _maybe_down(self, event: object) -> None:
        self.calls += 1
        if self.calls <= self.down:
            raise DatabaseUnavailable("PostgreSQL at /tmp/x is unavailable: connection refused")


def test_an_outage_longer_than_max_deliveries_parks_the_event_instead_of_dead_lettering(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    settings = Settings(redis_url=redis_url, database_url=None, home=tmp_path, prefix=prefix)
    client = redis.Redis.from_url(redis_url)
    handler = DownThenUp(down=8)
    worker = StageWorker(client, settings, "fingerprint", handler, options=WorkerOptions(
        max_deliveries=3, backoff_base_s=0.01, backoff_cap_s=0.02))
    worker.start()
    client.xadd(settings.stream("errors"),
                {"event": orjson.dumps({"v": 1, "id": "during-outage", "text": "boom"})})
    # When the database stays down for 8 deliveries (more than max_deliveries = 3)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not client.xlen(settings.stream("fingerprints")):
        worker.step(None)
        time.sleep(0.01)
    # Then nothing was dead-lettered, and the event went through once it came back
    assert client.xlen(settings.stream("dead")) == 0
    assert handler.calls == 9
    assert client.xlen(settings.stream("fingerprints")) == 1


class Switchable(PassThroughHandler):
    """A handler whose database is down while ``down`` is set; records the id of each event
    it was called with."""

    def __init__(self) -> None:
        super().__init__(on_event=self._maybe_down)
        self.down = True
        self.calls: list[str] = []

    def _maybe_down(self, event: object) -> None:
        self.calls.append(str(getattr(event, "id", "")))
        if self.down:
            raise DatabaseUnavailable("PostgreSQL at /tmp/x is unavailable: connection refused")


def _publish(client: redis.Redis, settings: Settings, *ids: str) -> None:
    for event_id in ids:
        client.xadd(settings.stream("errors"),
                    {"event": orjson.dumps({"v": 1, "id": event_id, "text": "boom"})})


def _uncounted(client: redis.Redis, settings: Settings) -> None:
    """Every entry still pending was parked, and no park counted as a delivery (the count a
    park raised is handed back), so nothing was dead-lettered though max_deliveries is 1."""
    assert client.xlen(settings.stream("dead")) == 0
    pending = client.xpending_range(settings.stream("errors"), "fingerprint", min="-", max="+",
                                   count=100)
    assert [p["times_delivered"] for p in pending] == [0] * len(pending), pending


def test_events_parked_earlier_wait_behind_the_last_park_one_probe_per_delay(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    """A stage taking one event at a time (apply, validate) probes one event per delay
    during an outage; a larger batch is retried together, once per delay."""
    settings = Settings(redis_url=redis_url, database_url=None, home=tmp_path, prefix=prefix)
    client = redis.Redis.from_url(redis_url)
    handler = Switchable()
    worker = StageWorker(client, settings, "fingerprint", handler, options=WorkerOptions(
        batch_size=1, max_deliveries=1, backoff_base_s=1.0, backoff_cap_s=3.0))
    worker.start()
    # Given an event parked by an outage (its retry due in 1 s, the outage's first park),
    # then another one parked (due in 2 s, the second park)
    _publish(client, settings, "early")
    worker.step(None)
    _publish(client, settings, "late")
    worker.step(None)
    assert handler.calls == ["early", "late"]
    _uncounted(client, settings)
    # Then the earlier one waits behind the last park: nothing is retried for 1.5 s (it
    # was not probed on its own timer after 1 s)...
    until = time.monotonic() + 1.5
    while time.monotonic() < until:
        worker.step(50)
    assert handler.calls == ["early", "late"]
    # ...once the last park's delay is over, one event is probed; parked again (due in
    # 3 s), it holds the other back behind it: no second probe in the next second
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(handler.calls) < 3:
        worker.step(50)
    assert handler.calls == ["early", "late", "early"], handler.calls
    until = time.monotonic() + 1.0
    while time.monotonic() < until:
        worker.step(50)
    assert handler.calls == ["early", "late", "early"], handler.calls
    _uncounted(client, settings)


def test_the_parked_events_are_due_at_once_when_an_event_goes_through_again(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    settings = Settings(redis_url=redis_url, database_url=None, home=tmp_path, prefix=prefix)
    client = redis.Redis.from_url(redis_url)
    handler = Switchable()
    worker = StageWorker(client, settings, "fingerprint", handler, options=WorkerOptions(
        max_deliveries=1, backoff_base_s=2.0, backoff_cap_s=8.0))
    worker.start()
    # Given three events parked in one batch during an outage: retried in 2, 4 and 8 s,
    # the first two held back behind the last
    _publish(client, settings, "p1", "p2", "p3")
    worker.step(None)
    assert handler.calls == ["p1", "p2", "p3"]
    waiting = worker.retries.seconds_until_next()
    assert waiting is not None and waiting > 6, waiting
    _uncounted(client, settings)
    # When the database is back and a new event goes through
    handler.down = False
    _publish(client, settings, "fresh")
    started = time.monotonic()
    worker.step(None)
    assert handler.calls[-1] == "fresh"
    # Then the parked ones are handled at once, not after their 8 s
    deadline = started + 3
    while time.monotonic() < deadline and client.xlen(settings.stream("fingerprints")) < 4:
        worker.step(50)
    assert client.xlen(settings.stream("fingerprints")) == 4, handler.calls
    assert sorted(handler.calls[4:]) == ["p1", "p2", "p3"], handler.calls
    assert client.xlen(settings.stream("dead")) == 0


class FlakyStore(AttemptStore):
    """The real store, with PostgreSQL 'down' for the first record_attempt."""

    failures = 1

    def record_attempt(self, row: dict[str, Any]) -> Any:
        if self.failures:
            self.failures -= 1
            raise DatabaseUnavailable("PostgreSQL at /tmp/x is unavailable: connection reset")
        return super().record_attempt(row)


def test_a_retry_after_an_outage_does_not_verify_again(
    tmp_path: Path, redis_url: str, prefix: str, db: Database,
) -> None:
    settings = Settings(redis_url=None, database_url=None, home=tmp_path / "home", prefix=prefix)
    store = FlakyStore(db)
    validator = Validator(settings, redis.Redis.from_url(redis_url), store)
    verifications = []
    original = validator.verifier.verify

    def counted(*args: Any) -> Any:
        verifications.append(args)
        return original(*args)

    validator.verifier.verify = counted  # type: ignore[method-assign]
    root = sample_repo(tmp_path)
    break_formatting(root)
    cand = candidate(root, ("ruff", "format", "--check", "."), FORMAT_FIX)
    # Given PostgreSQL goes down just as the verdict is recorded
    with pytest.raises(DatabaseUnavailable):
        validator.validate(cand)
    # When the runtime retries once it is back
    verdict = validator.validate(cand)
    # Then the verification ran once, and the attempt row was written by the retry
    assert len(verifications) == 1
    assert verdict.decision == "apply", verdict.reason
    assert db.fetchval("SELECT count(*) FROM attempts WHERE error_id = $1", cand.error_id) == 1


def test_a_worker_restarts_a_killed_embedded_engine_it_holds_a_lease_on(
    tmp_path: Path,
) -> None:
    settings = Settings(redis_url=None, database_url=None, home=tmp_path / "home", prefix="p")
    engine = embedded_redis(settings)
    url = _acquire(engine)
    try:
        pid = engine.pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # Given the engine is killed under the worker
        deadline = time.monotonic() + 120
        while engine.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        # When the worker notices (its next failure)
        revived = revive_held_engines()
        # Then it is running again at the same URL
        assert revived == [str(engine.directory)]
        assert engine.pid() not in (None, pid)
        assert redis.Redis.from_url(url).ping()
    finally:
        _release(engine)


@pytest.mark.parametrize("make", [embedded_redis, embedded_postgres], ids=["redis", "postgres"])
def test_a_worker_re_takes_its_lease_when_it_restarts_a_force_stopped_engine(
    tmp_path: Path, make: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engines, "_held", {})  # only this test's engine is this process's
    settings = Settings(redis_url=None, database_url=None, home=tmp_path / "home", prefix="p")
    engine = make(settings)
    _acquire(engine)
    try:
        # Given `heal engines stop --force` under the worker: every lease dropped, engine down
        with engine.leases.locked():
            engine.leases.clear()
            engine.stop()
        assert engine.pid() is None
        # When the worker notices
        assert revive_held_engines() == [str(engine.directory)]
        # Then the engine runs and the worker holds a lease on it again (so a short heal
        # command attaching after this does not stop it at exit)
        assert engine.pid() is not None
        with engine.leases.locked():
            assert str(os.getpid()) in engine.leases.live()
    finally:
        _release(engine)
    assert engine.pid() is None  # released at exit as the normal path does: last lease stops it
