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


@pytest.mark.parametrize("scope", ["step:/", "step: / ", "workflow: ", "step:", "workflow:/"])
def test_scope_without_a_name_is_a_usage_error(
        heal_env, capsys: pytest.CaptureFixture[str], scope: str) -> None:
    assert main(["breaker", "open", scope]) == 2
    assert "step:WORKFLOW/STEP" in capsys.readouterr().err
    assert main(["breaker", "status", "--json"]) == 0
    out = capsys.readouterr().out
    assert list(json.loads(out[out.index("{"):])["scopes"]) == ["global"]


def test_reset_of_an_unknown_scope_is_refused_and_invents_nothing(
        heal_env, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["breaker", "open", "workflow:nightly"]) == 0
    capsys.readouterr()
    assert main(["breaker", "reset", "workflow:never"]) == 1
    err = capsys.readouterr().err
    assert "'workflow:never' is unknown" in err and "workflow:nightly" in err
    assert main(["breaker", "status", "--json"]) == 0
    out = capsys.readouterr().out
    scopes = json.loads(out[out.index("{"):])["scopes"]
    assert sorted(scopes) == ["global", "workflow:nightly"]
    # a step outside any workflow is a real scope; global is always known
    assert main(["breaker", "open", "step:lint"]) == 0
    assert main(["breaker", "reset", "step:lint"]) == 0
    assert main(["breaker", "reset"]) == 0
