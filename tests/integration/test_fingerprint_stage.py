"""The fingerprint stage under the real stream runtime and a real Redis."""

from __future__ import annotations

from pathlib import Path

import orjson
import redis

from pipeline.config import Settings
from pipeline.events import ErrorEvent, FingerprintEvent
from pipeline.fingerprint.hashing import ALGORITHM_VERSION
from pipeline.runtime.drain import drain_inline

TEXTS = [f"Invalid user {u} from 10.1.0.{i}" for i, u in enumerate(["ann", "bob", "cy", "dee"])]


def test_errors_become_fingerprints_through_the_runtime(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    # Given error events on the errors stream (raw JSON, as any producer would publish them)
    settings = Settings(redis_url=redis_url, database_url=None, home=tmp_path, prefix=prefix)
    client = redis.Redis.from_url(redis_url)
    for i, text in enumerate(TEXTS):
        event = ErrorEvent(id=f"e{i}", text=text)
        client.xadd(settings.stream("errors"), {"event": event.encode()})
    client.xadd(settings.stream("errors"), {"event": orjson.dumps({"v": 1, "id": "bad"})})
    # When only the fingerprint stage drains them
    handled = drain_inline(settings, client, stages=["fingerprint"])
    # Then each valid one is on the fingerprints stream, the invalid one is dead-lettered
    assert handled == len(TEXTS) + 1
    entries = client.xrange(settings.stream("fingerprints"))
    events = [FingerprintEvent.decode(fields[b"event"]) for _, fields in entries]
    assert sorted(e.id for e in events) == [f"e{i}:fingerprint" for i in range(len(TEXTS))]
    assert all(e.version == ALGORITHM_VERSION for e in events)
    assert all(e.fine.startswith(ALGORITHM_VERSION + ":") for e in events)
    # the last events were mined against the shared set: user names are variables
    assert events[-1].template == "Invalid user <*> from <*>"
    assert client.xlen(settings.stream("dead")) == 1


def test_a_batch_s_fingerprint_events_carry_the_time_it_began(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    # Given two bursts of errors, drained by the real runtime one after the other
    settings = Settings(redis_url=redis_url, database_url=None, home=tmp_path, prefix=prefix)
    client = redis.Redis.from_url(redis_url)
    stamps: list[set[str]] = []
    for burst in range(2):
        for i, text in enumerate(TEXTS):
            event = ErrorEvent(id=f"b{burst}e{i}", text=text)
            client.xadd(settings.stream("errors"), {"event": event.encode()})
        # When the fingerprint stage drains each burst (one batch each)
        assert drain_inline(settings, client, stages=["fingerprint"]) == len(TEXTS)
        entries = client.xrange(settings.stream("fingerprints"))
        stamps.append({FingerprintEvent.decode(fields[b"event"]).ts
                       for _, fields in entries[burst * len(TEXTS):]})
    # Then one batch's outputs share its stamp, and the later batch has a later one
    assert [len(s) for s in stamps] == [1, 1]
    assert stamps[1].pop() > stamps[0].pop()
