"""``heal keys``: ``retire`` says what it retired (or that there was nothing to retire);
``rotate`` names the key it stops accepting; ``HEAL_SIGNING_KEY_PREVIOUS`` is checked whether
or not ``HEAL_SIGNING_KEY`` is set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    out = capsys.readouterr().out
    old = json.loads(out)["current"]
    # (the JSON convention off a terminal: one line, keys sorted, no blanks)
    assert out.count("\n") == 1 and ", " not in out and out.index('"current"') < out.index(
        '"source"'), out
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


ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]


def _keys(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("HEAL_SIGNING_KEY", "HEAL_SIGNING_KEY_PREVIOUS")}
    return subprocess.run([*HEAL, "keys", *args], env={**base, "HEAL_HOME": str(home),
                                                       "PYTHONPATH": str(ROOT), **env},
                          capture_output=True, text=True, timeout=60, check=False)


def test_a_second_rotate_names_the_key_it_stops_accepting(home: Path) -> None:
    first = json.loads(_keys(home, "show", "--json").stdout)["current"]
    once = _keys(home, "rotate", "--json")
    assert json.loads(once.stdout)["dropped"] is None  # nothing was previous yet
    second = json.loads(once.stdout)["current"]
    twice = _keys(home, "rotate")
    assert twice.returncode == 0, twice
    assert f"key {first} (kept by the previous rotation) is no longer accepted" in twice.stdout
    assert "heal keys retire" in twice.stdout
    assert f"previous key {second} still accepted" in twice.stdout
    info = json.loads(_keys(home, "rotate", "--json").stdout)
    assert info["dropped"] == second


def test_a_previous_key_from_the_environment_is_checked_with_or_without_the_current_one(
        home: Path) -> None:
    alone = _keys(home, "show", HEAL_SIGNING_KEY_PREVIOUS="abc")
    with_current = _keys(home, "show", HEAL_SIGNING_KEY="a" * 64, HEAL_SIGNING_KEY_PREVIOUS="abc")
    for done in (alone, with_current):
        assert done.returncode == 2, done
        assert "HEAL_SIGNING_KEY_PREVIOUS: a signing key needs at least 32 characters" in \
            done.stderr
    # a well-formed previous key alone would be silently ignored (the key files are used):
    # refused, saying what to set
    alone = _keys(home, "show", HEAL_SIGNING_KEY_PREVIOUS="b" * 64)
    assert alone.returncode == 2, alone
    assert "HEAL_SIGNING_KEY_PREVIOUS is set but HEAL_SIGNING_KEY is not" in alone.stderr
    assert "set HEAL_SIGNING_KEY to the current key too" in alone.stderr


@pytest.mark.parametrize("command", [["up"], ["worker", "fingerprint"],
                                     ["worker", "validate", "--concurrency", "2"]])
def test_workers_refuse_unusable_signing_keys_before_starting_anything(
        home: Path, command: list[str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Re-verification N3: with HEAL_SIGNING_KEY_PREVIOUS alone `heal up` and `heal worker`
    started, then the fingerprint stage retried and dead-lettered every event. Now they stop
    at once with what to change (exit 2), before any engine or worker starts."""
    monkeypatch.setenv("HEAL_REDIS_URL", "redis://127.0.0.1:9/0")  # (never reached)
    monkeypatch.setenv("HEAL_SIGNING_KEY_PREVIOUS", "a" * 64)
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "HEAL_SIGNING_KEY_PREVIOUS is set but HEAL_SIGNING_KEY is not" in err, err
    assert "cannot reach" not in err
    monkeypatch.delenv("HEAL_SIGNING_KEY_PREVIOUS")
    monkeypatch.setenv("HEAL_SIGNING_KEY", "short")
    assert main(command) == 2
    assert "HEAL_SIGNING_KEY" in capsys.readouterr().err
