"""Event text printed on a terminal shows its control characters instead of sending them:
an escape sequence in a log line must not drive the reader's terminal."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.console import plain_table, visible


def test_control_characters_are_written_as_escapes() -> None:
    assert visible("plain text ok") == "plain text ok"
    assert visible("x\x1b]0;PWNED\x07\x1b[31mred") == "x\\x1b]0;PWNED\\x07\\x1b[31mred"
    assert visible("a\x00b\x9bc\x7f\td\n") == "a\\x00b\\x9bc\\x7f\\x09d\\x0a"
    assert "\x1b" not in plain_table(["sample"], [["\x1b[2Jcleared"]])


def test_heal_fingerprint_prints_no_escape_sequence(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HEAL_HOME", str(tmp_path / "home"))
    # (escape sequences are not part of an error: fingerprinting removes them; a lone
    # control character stays in the text and is shown escaped)
    monkeypatch.setattr(sys, "stdin", io.StringIO("x\x1b]0;PWNED\x07\x1b[31mred bell\x07\n"))
    assert main(["fingerprint"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "PWNED" not in out
    assert out.rstrip("\n").endswith("\txred bell\\x07"), out


def test_bidirectional_controls_are_shown_escaped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Trojan Source: U+202E makes a terminal show ``txt.exe`` as ``exe.txt``."""
    assert visible("invoice \u202etxt.exe\u202c") == "invoice \\u202etxt.exe\\u202c"
    assert visible("a\u2066b\u2069\u200fc\u2028d") == "a\\u2066b\\u2069\\u200fc\\u2028d"
    assert visible("é 中 😀 \u200d") == "é 中 😀 \u200d"  # letters and joiners stay
    monkeypatch.setenv("HEAL_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(sys, "stdin", io.StringIO("ERROR invoice \u202etxt.exe\u202c failed\n"))
    assert main(["fingerprint"]) == 0
    out = capsys.readouterr().out
    assert "\u202e" not in out and "\\u202etxt.exe\\u202c" in out
