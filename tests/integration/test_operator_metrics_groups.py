"""Metrics count unmatched errors per mined template (cluster), not per fine fingerprint:
three ``hyperdrive X lost phase lock`` errors that went through the real fingerprint and
lookup stages (real embedded engines) are one group in ``heal metrics``, ``heal report``,
``GET /api/overview``, ``GET /api/issues`` and ``/metrics``; the fine fingerprints stay
listed in the group (the identity for ``heal explain`` and exact recall)."""

from __future__ import annotations

import json
import re
import threading
import urllib.request
import uuid
from typing import Any

import pytest
import redis

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.events import ErrorEvent
from pipeline.runtime.drain import drain_inline
from pipeline.serve.server import make_server
from producers.publisher import Publisher
from storage.engines import open_database


def _word() -> str:
    return "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:10])


def _unmatched(heal_env: dict[str, str], words: list[str]) -> list[str]:
    """Publish one never-seen error per word, run fingerprint + lookup inline and wait for the
    issue queue; the fine fingerprints."""
    import time

    settings = Settings.from_env()
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    Publisher(client, settings).publish_many(
        ErrorEvent(id=f"hp-{w}", text=f"hyperdrive {w} lost phase lock") for w in words)
    drain_inline(settings, client, stages=["fingerprint", "lookup"])
    db = open_database(settings)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            rows = db.fetch("SELECT fine, sample FROM issue_queue")
            fines = [r["fine"] for r in rows if any(w in r["sample"] for w in words)]
            if len(fines) == len(words):
                return fines
            time.sleep(0.2)
    finally:
        db.close()
    raise AssertionError("unmatched errors never reached the issue queue")


def _metrics(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["metrics", "--json", "--window", "24h"]) == 0, capsys.readouterr().err
    window: dict[str, Any] = json.loads(capsys.readouterr().out)["windows"]["24h"]
    return window


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as resp:
        raw = resp.read()
        return json.loads(raw) if resp.headers["Content-Type"].startswith(
            "application/json") else raw.decode()


def _gauge(text: str, name: str) -> int:
    found = re.search(rf"^{name} (\d+)$", text, re.MULTILINE)
    assert found is not None, name
    return int(found.group(1))


def test_metrics_group_unmatched_errors_by_mined_template(
        heal_env: dict[str, str], own_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings.from_env()
    server = make_server(settings, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                     daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        before, scrape = _metrics(capsys), _get(f"{base}/metrics")
        fines = _unmatched(heal_env, [_word() for _ in range(3)])
        assert len(set(fines)) == 3  # three fine fingerprints...

        now = _metrics(capsys)
        assert now["unmatched_fingerprints"] == before["unmatched_fingerprints"] + 3
        assert now["unmatched_groups"] == before["unmatched_groups"] + 1  # ...one group
        mine = [g for g in now["top_unmatched"] if set(fines) & set(g["fines"])]
        assert len(mine) == 1 and set(fines) <= set(mine[0]["fines"])
        assert mine[0]["template"] == "hyperdrive <*> lost phase lock"
        assert mine[0]["fingerprints"] == 3 and mine[0]["count"] == 3
        assert main(["metrics", "--window", "24h"]) == 0
        assert "unmatched hyperdrive <*> lost phase lock (3 fp" in capsys.readouterr().out

        assert main(["report", "--format", "json", "--since", "24h"]) == 0
        report = json.loads(capsys.readouterr().out)
        rows = [g for g in report["learning"]["top_unmatched"] if set(fines) & set(g["fines"])]
        assert len(rows) == 1 and rows[0]["fingerprints"] == 3

        overview = _get(f"{base}/api/overview")
        entry = [e for e in overview["top_errors"]
                 if e["kind"] == "unmatched" and set(fines) & set(e["fines"])]
        assert len(entry) == 1 and entry[0]["label"] == "hyperdrive <*> lost phase lock"
        assert overview["issue_fingerprints_open"] >= overview["issues_open"] + 2

        issues = _get(f"{base}/api/issues?limit=10000")
        assert set(fines) <= {i["fine"] for i in issues["issues"]}  # the identity, per fine
        group = [g for g in issues["groups"] if set(fines) & set(g["fines"])]
        assert len(group) == 1 and set(fines) <= set(group[0]["fines"])

        after = _get(f"{base}/metrics")
        assert _gauge(after, "heal_issues_open") == _gauge(scrape, "heal_issues_open") + 1
        assert _gauge(after, "heal_issue_fingerprints_open") == \
            _gauge(scrape, "heal_issue_fingerprints_open") + 3

        # once a person taught the fix of one of them, metrics agree with heal issues list and
        # heal report: that one is no longer unmatched (QA report qa_life, item 10)
        assert main(["learn", fines[0], "--escalate", "ask the hyperdrive team"]) == 0
        capsys.readouterr()
        taught = _metrics(capsys)
        assert taught["unmatched_fingerprints"] == now["unmatched_fingerprints"] - 1
        left = {f for g in taught["top_unmatched"] for f in g["fines"]} & set(fines)
        assert left == set(fines[1:])
        assert main(["report", "--format", "json", "--since", "24h"]) == 0
        listed = {f for g in json.loads(capsys.readouterr().out)["learning"]["top_unmatched"]
                  for f in g["fines"]} & set(fines)
        assert listed == left
    finally:
        server.shutdown()
        server.server_close()
