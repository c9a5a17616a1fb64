"""Attack 6 (continued): two poison events froze a worker's heartbeats for 107 s.

The real fingerprint stage, on the real embedded Redis, reads the issue's poison events
(64 KB lines that were quadratic) and a normal one while the heartbeat thread beats; the
longest gap between beats is measured and the normal event must come out behind them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import redis

from pipeline.config import Settings
from pipeline.runtime import heartbeat as heartbeat_module
from pipeline.runtime.heartbeat import Heartbeat
from pipeline.runtime.loader import build_worker, load_stage

POISON = [
    "connection refused host " + "a.a" * 21000,
    "Permission denied " + "./" * 32768,
    "EADDRINUSE " + "a" * 65000,
    "f.py:1: trailing whitespace.\n+" + " " * 65000 + "x",
    "\n" * 65000 + "Killed",
    "tests/t.py::" + ":" * 65000 + " RERUN",
]
NORMAL = "ModuleNotFoundError: No module named 'yaml'"
#: a beat every 50 ms; the largest gap allowed while poison is being fingerprinted
BEAT_S = 0.05
MAX_GAP_S = 1.0


def _wait_for(condition: Callable[[], bool], deadline_s: float = 120.0) -> None:
    """Wait on a condition with a generous deadline (never a fixed sleep)."""
    end = time.monotonic() + deadline_s
    while not condition() and time.monotonic() < end:
        time.sleep(0.01)


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def test_poison_events_never_stop_the_heartbeat(
    client: redis.Redis, redis_url: str, prefix: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(redis_url=redis_url, database_url=None, home=tmp_path, prefix=prefix)
    worker = build_worker(client, settings, load_stage("fingerprint"))
    worker.start()
    # Given poison events queued ahead of a normal one
    pipe = client.pipeline(transaction=False)
    for i, text in enumerate([*POISON, NORMAL]):
        raw = orjson.dumps({"v": 1, "id": f"poison-{i}", "text": text})
        pipe.xadd(settings.stream("errors"), {"event": raw})
    pipe.execute()
    # When the stage works through them while the heartbeat thread beats
    beats: list[float] = []
    original = Heartbeat.beat

    def recorded(self: Heartbeat) -> None:
        beats.append(time.monotonic())
        original(self)

    monkeypatch.setattr(Heartbeat, "beat", recorded)
    monkeypatch.setattr(heartbeat_module, "INTERVAL_S", BEAT_S)
    beat = Heartbeat(client, settings, [worker]).start()
    _wait_for(lambda: len(beats) >= 1)  # the beating has begun before the work does
    start = time.monotonic()
    done = threading.Event()

    def work() -> None:
        while worker.step(None):
            pass
        done.set()

    threading.Thread(target=work, daemon=True).start()
    assert done.wait(120), "the fingerprint stage did not get through the poison events"
    elapsed = time.monotonic() - start
    # one beat after the work closes the last gap, so every gap spans work or idle time only
    seen = len(beats)
    _wait_for(lambda: len(beats) > seen)
    beat.stop()
    # Then the heartbeat never paused for long, and the normal event came out
    gaps = [b - a for a, b in zip(beats, beats[1:], strict=False)]
    assert len(beats) >= 2
    print(f"poison work {elapsed:.2f}s, {len(beats)} beats, longest gap {max(gaps):.3f}s")
    assert max(gaps) < MAX_GAP_S, f"heartbeat gap {max(gaps):.2f}s over {elapsed:.1f}s of work"
    out = [orjson.loads(f[b"event"]) for _, f in client.xrange(settings.stream("fingerprints"))]
    assert f"poison-{len(POISON)}" in {e["error_id"] for e in out}
    assert len(out) == len(POISON) + 1  # poison is fingerprinted too: nothing is lost
