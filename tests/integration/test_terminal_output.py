"""Colour on a terminal, none with NO_COLOR, TERM=dumb or when piped: `heal status` run in a
real pseudo-terminal against the real engines."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c",
        "import sys; from pipeline.cli import main; sys.exit(main(sys.argv[1:]))"]
ESC = "\x1b["


def _env(heal_env: dict[str, str], **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
    return {**base, **heal_env, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color",
            "COLUMNS": "160", **extra}


def _in_pty(env: dict[str, str], *args: str) -> str:
    parent, child = pty.openpty()
    proc = subprocess.Popen([*HEAL, *args], stdin=child, stdout=child, stderr=child, env=env,
                            cwd=ROOT, close_fds=True)
    os.close(child)
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([parent], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(parent, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(parent)
    return b"".join(chunks).decode(errors="replace")


def test_status_is_coloured_on_a_terminal(heal_env: dict[str, str]) -> None:
    out = _in_pty(_env(heal_env), "status")
    assert ESC in out, out
    assert "breaker" in out and "dead letters" in out


@pytest.mark.parametrize("extra", [{"NO_COLOR": "1"}, {"NO_COLOR": ""}, {"TERM": "dumb"}])
def test_no_colour_with_no_color_or_a_dumb_terminal(heal_env: dict[str, str],
                                                    extra: dict[str, str]) -> None:
    out = _in_pty(_env(heal_env, **extra), "status")
    assert ESC not in out, out
    assert "dead letters:" in out  # the plain aligned text


def test_no_colour_when_piped(heal_env: dict[str, str]) -> None:
    done = subprocess.run([*HEAL, "status"], env=_env(heal_env), cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert ESC not in done.stdout + done.stderr
    assert "dead letters:" in done.stdout


def test_json_is_pretty_on_a_terminal_and_compact_when_piped(heal_env: dict[str, str]) -> None:
    on_tty = _in_pty(_env(heal_env), "status", "--json")
    assert on_tty.lstrip().startswith("{") and '\n  "breaker"' in on_tty.replace("\r", "")
    piped = subprocess.run([*HEAL, "status", "--json"], env=_env(heal_env), cwd=ROOT,
                           capture_output=True, text=True, timeout=60).stdout
    assert piped.count("\n") == 1 and piped.startswith('{"breaker"')
