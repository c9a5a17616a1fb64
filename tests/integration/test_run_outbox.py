"""`heal run` pushes the lookup's buffered writes to PostgreSQL before it exits: the error of
the run that just ended is in `heal issues list` at once (real engines)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from pipeline.cli import main


def _word(stem: str) -> str:
    """A word of this test alone, of letters only: `heal issues list` labels a group by its
    normalized headline, where a word holding digits is a masked token."""
    return stem + "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:8])


def test_the_last_error_of_heal_run_is_in_the_issue_queue_at_once(
        tmp_path: Path, heal_env: dict[str, str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    word = _word("zorglub")
    argv = ["sh", "-c", f"echo '{word} frobnicated the widget unexpectedly' >&2; exit 3"]
    assert main(["run", "--mode", "suggest", "--timeout", "60", "--", *argv]) == 3
    capsys.readouterr()
    assert main(["issues", "list"]) == 0
    assert word in capsys.readouterr().out


def test_an_error_holding_a_nul_character_still_reaches_the_issue_queue(
        tmp_path: Path, heal_env: dict[str, str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL stores no NUL in text or jsonb: the character becomes U+FFFD at the
    connection's codec, so the row is stored, not parked (before: "queued for a human"
    was printed while PostgreSQL refused the issue)."""
    monkeypatch.chdir(tmp_path)
    word = _word("quux")
    argv = ["sh", "-c", f"printf '{word} disk quota exceeded on /srv/x\\000\\n' >&2; exit 1"]
    assert main(["run", "--mode", "suggest", "--timeout", "60", "--", *argv]) == 1
    assert "parked" not in capsys.readouterr().err
    assert main(["issues", "list"]) == 0
    assert word in capsys.readouterr().out
