"""`heal metrics` before and after a real error is healed by `heal run --mode auto-safe`
(real embedded engines): the figures move exactly as their definitions say."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
import redis

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.guardrails.budget import Budget
from storage.engines import open_database
from tests.scenarios.catalog import BY_NAME, build


def _metrics(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main(["metrics", "--json", *args]) == 0, capsys.readouterr().err
    report: dict[str, object] = json.loads(capsys.readouterr().out)
    return report


def _wait_for_occurrences(expected: int) -> None:
    # the lookup stage syncs its buffered occurrences to PostgreSQL every 2 s
    db = open_database(Settings.from_env())
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (
                db.fetchval("SELECT count(*) FROM occurrences") or 0) < expected:
            time.sleep(0.2)
    finally:
        db.close()


def test_metrics_follow_a_healed_error(tmp_path: Path, heal_env: dict[str, str],
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    before = _metrics(capsys)["windows"]
    assert set(before) == {"24h", "7d", "30d"}  # type: ignore[arg-type]
    db = open_database(Settings.from_env())
    occurrences = db.fetchval("SELECT count(*) FROM occurrences")
    db.close()

    _, root = build("unused-import", tmp_path)
    monkeypatch.chdir(root)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    assert main(["run", "--mode", "auto-safe", "--timeout", "120", "--",
                 *BY_NAME["unused-import"].command]) == 0
    capsys.readouterr()
    _wait_for_occurrences(occurrences + 1)
    Budget(redis.Redis.from_url(heal_env["HEAL_REDIS_URL"]), Settings.from_env()).record(
        "llm_tokens", 1234)

    report = _metrics(capsys, "--window", "24h")
    assert list(report["windows"]) == ["24h"]  # type: ignore[call-overload]
    now, was = report["windows"]["24h"], before["24h"]  # type: ignore[index]
    assert now["errors"] == was["errors"] + 1
    assert now["detected"] == was["detected"] + 1
    applied = now["outcomes"].get("applied", 0)
    assert applied == was["outcomes"].get("applied", 0) + 1
    assert now["auto_fix_rate"] == round(applied / now["errors"], 4)
    assert now["detection_rate"] == round(now["detected"] / now["errors"], 4)
    assert now["success_rate"] is not None and now["success_rate"] > 0
    assert now["mttr_s"] is not None and now["mttr_s"] >= 0
    assert any(t["count"] >= 1 for t in now["top_errors"])
    today = max(now["cost_per_day"])
    assert now["cost_per_day"][today]["llm_tokens"] >= 1234
    assert report["problems"] == []

    assert main(["metrics"]) == 0
    text = capsys.readouterr().out
    for label in ("detection rate", "auto-fix rate", "success rate", "MTTR (s)",
                  "top errors (30d)", "cost per day"):
        assert label in text
    assert "llm_tokens=" in text


def test_metrics_rejects_an_unknown_window(heal_env: dict[str, str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["metrics", "--window", "1y"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
