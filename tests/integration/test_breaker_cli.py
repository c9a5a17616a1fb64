"""``heal breaker`` end to end against the real Redis."""

from __future__ import annotations

import json

import pytest

from pipeline.cli import main


def test_open_status_reset(heal_env, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["breaker", "open", "workflow:nightly", "--reason", "maintenance"]) == 0
    assert main(["breaker", "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert status["state"] == "FORCED_OPEN"
    assert status["scopes"]["workflow:nightly"]["reason"] == "maintenance"
    assert main(["breaker", "reset", "workflow:nightly"]) == 0
    assert main(["breaker", "status", "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{"):])["state"] == "CLOSED"
    # every manual change is audited
    assert main(["audit", "verify", "--file-only"]) == 0
    assert "2 record(s)" in capsys.readouterr().out


def test_bad_scope_is_a_usage_error(heal_env, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["breaker", "open", "nightly"]) == 2
    assert "workflow:NAME" in capsys.readouterr().err
