"""Notification dedupe on the real Redis: one person is told once, however many workers race
to tell them, and again once the dedupe window has passed."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis

from pipeline.guardrails.escalation import EscalationContext, LogSink, Notifier, evaluate


def _notification() -> Any:
    ctx = EscalationContext(fingerprint="fp-dedupe", now=1000.0, first_seen=1000.0,
                            category="SAFE", fix_kind="command", attempts=3,
                            actions_tried=("ruff format",), last_error="E501")
    notification = evaluate(ctx)
    assert notification is not None
    return notification


def _logged(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_racing_workers_notify_once(client: redis.Redis, prefix: str, tmp_path: Path) -> None:
    log = tmp_path / "notifications.jsonl"
    notification = _notification()

    def one_worker(_: int) -> dict[str, str]:
        # every worker has its own connection, as separate processes would
        own = redis.Redis(connection_pool=client.connection_pool)
        return Notifier([LogSink(log)], client=own, key_prefix=prefix).notify(notification)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one_worker, range(8)))
    assert sorted(r["log"] for r in results) == ["deduplicated"] * 7 + ["ok"]
    assert [n["fingerprint"] for n in _logged(log)] == ["fp-dedupe"]
    assert client.ttl(f"{prefix}:escalation:{notification.id}") > 0


def test_after_the_window_the_same_notification_goes_out_again(
    client: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    log = tmp_path / "notifications.jsonl"
    notification = _notification()
    notifier = Notifier([LogSink(log)], client=client, key_prefix=prefix, dedupe_s=600)
    assert notifier.notify(notification) == {"log": "ok"}
    assert notifier.notify(notification) == {"log": "deduplicated"}
    # the window is the dedupe key's lifetime: 600 s (a long window, so a loaded machine
    # cannot let it pass between the two calls above); end it now instead of waiting
    key = f"{prefix}:escalation:{notification.id}"
    assert 500 < client.ttl(key) <= 600
    client.pexpire(key, 1)
    deadline = time.monotonic() + 120  # wait on the key's expiry, not a fixed sleep
    while client.exists(key) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert notifier.notify(notification) == {"log": "ok"}
    assert len(_logged(log)) == 2


def test_dedupe_zero_tells_every_time(client: redis.Redis, prefix: str, tmp_path: Path) -> None:
    log = tmp_path / "notifications.jsonl"
    notifier = Notifier([LogSink(log)], client=client, key_prefix=prefix, dedupe_s=0)
    notification = _notification()
    assert [notifier.notify(notification)["log"] for _ in range(3)] == ["ok"] * 3
    assert len(_logged(log)) == 3
