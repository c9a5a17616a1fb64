"""``heal keys retire`` says what it retired (or that there was nothing to retire)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HEAL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HEAL_SIGNING_KEY", raising=False)
    monkeypatch.delenv("HEAL_SIGNING_KEY_PREVIOUS", raising=False)
    return tmp_path / "home"


def test_retire_names_the_key_it_retired(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "show", "--json"]) == 0
    old = json.loads(capsys.readouterr().out)["current"]
    assert main(["keys", "rotate"]) == 0
    assert f"previous key {old} still accepted" in capsys.readouterr().out
    assert main(["keys", "retire"]) == 0
    out = capsys.readouterr().out
    assert f"retired the previous key {old}" in out and "still accepted" not in out
    assert main(["keys", "retire", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["retired"] is None and info["previous"] is None
    assert main(["keys", "retire"]) == 0
    assert "no previous key to retire" in capsys.readouterr().out


def test_retire_of_a_key_from_the_environment_says_what_to_unset(
        home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HEAL_SIGNING_KEY", "a" * 64)
    monkeypatch.setenv("HEAL_SIGNING_KEY_PREVIOUS", "b" * 64)
    assert main(["keys", "retire"]) == 1
    assert "$HEAL_SIGNING_KEY_PREVIOUS: unset it" in capsys.readouterr().err
