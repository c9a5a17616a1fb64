"""Consumers of workers that are gone do not stay listed for ever (QA s19b, defect 8): a
running worker removes from its group each consumer without a heartbeat that holds no entries
and has been idle past ``DEAD_IDLE_MS``; one that holds entries stays until they are claimed
(XGROUP DELCONSUMER would drop them), and ``heal status`` says how they go. A real
``heal worker`` and ``heal status`` as subprocesses on the embedded engines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from pipeline.runtime.heartbeat import DEAD_IDLE_MS

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]


def _status(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HEAL, "status", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, timeout=120,
                          check=False)


def _members(env: dict[str, str], prefix: str) -> dict[str, Any]:
    status = json.loads(_status(env, "--json").stdout)
    group = status["streams"][f"{prefix}:errors"]["groups"]["fingerprint"]
    return {m["name"]: m for m in group["members"]}


def test_a_running_worker_removes_dead_consumers_that_hold_nothing(
        heal_env: dict[str, str], redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    stream = f"{prefix}:errors"
    client.xgroup_create(stream, "fingerprint", id="0", mkstream=True)
    for _ in range(2):
        client.xadd(stream, {"event": json.dumps({"v": 1, "id": f"e-{uuid.uuid4().hex}",
                                                  "text": "boom"})})
    # Given two consumers of workers that were killed: one acked what it read, one holds an
    # entry (pending)
    [(_, [(done_id, _)])] = client.xreadgroup("fingerprint", "ghost-done", {stream: ">"}, 1)
    client.xack(stream, "fingerprint", done_id)
    client.xreadgroup("fingerprint", "ghost-holding", {stream: ">"}, 1)
    time.sleep(DEAD_IDLE_MS / 1000 + 1)  # no heartbeat, idle past the grace
    assert set(_members(heal_env, prefix)) == {"ghost-done", "ghost-holding"}
    listed = _status(heal_env)
    assert "2 (0 live)" in listed.stdout, listed.stdout
    assert "stopped consumers: 2 (no heartbeat)" in listed.stdout, listed.stdout
    assert "removes each one that holds no entries" in listed.stdout, listed.stdout
    # When a worker of the stage runs (its claim timeout long: the held entry stays held)
    worker = subprocess.Popen([*HEAL, "worker", "fingerprint", "--claim-idle-ms", "600000"],
                              cwd=ROOT, env={**os.environ, **heal_env, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while "ghost-done" in (members := _members(heal_env, prefix)):
            assert time.monotonic() < deadline and worker.poll() is None, members
            time.sleep(1)
        # Then the dead consumer holding nothing is gone; the one holding an entry stays,
        # with its entry (nothing dropped)
        assert "ghost-holding" in members and members["ghost-holding"]["pending"] == 1, members
        assert client.xpending(stream, "fingerprint")["pending"] == 1
    finally:
        worker.terminate()
        worker.wait(60)
