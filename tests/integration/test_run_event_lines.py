"""How `heal run` builds the event text from a command's two output streams (QA s16c #18):
a real `heal run` subprocess on the embedded engines. What the user sees passes through byte
for byte; in the event, stdout's unfinished line and stderr's next line stay two lines, and a
NUL (or another control byte) is a space."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import redis

from pipeline.config import Settings
from pipeline.events import ErrorEvent
from producers.interceptor import TailBuffer, plain_controls

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]

# stdout without a final newline (a NUL inside), then the error on stderr; the order of the
# two writes is fixed by a flush and a pause, as a program writing them one after the other
COMMAND = """import os, sys, time
os.write(1, b"abc\\x00def")
time.sleep(0.3)
os.write(2, b"{error}: settings of {token} are broken\\n")
sys.exit(3)
"""


def test_stdout_s_unfinished_line_and_stderr_are_two_lines_and_a_nul_is_a_space(
        tmp_path: Path, heal_env: dict[str, str], client: redis.Redis) -> None:
    token = "".join(chr(97 + int(c, 16)) for c in uuid.uuid4().hex[:10])
    error = f"Settings{token.capitalize()}Error"
    decision = tmp_path / "decision.json"
    done = subprocess.run(
        [*HEAL, "run", "--json-file", str(decision), "--mode", "observe", "--", sys.executable,
         "-c", COMMAND.format(error=error, token=token)],
        capture_output=True, timeout=300, cwd=tmp_path, check=False,
        env={**os.environ, **heal_env, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"})
    # the command's own output passes through untouched, its status kept
    assert done.returncode == 3, done.stderr
    assert done.stdout == b"abc\x00def"
    assert done.stderr.startswith(f"{error}: settings of {token} are broken\n".encode())
    # the event: two lines, the NUL a space
    events = [ErrorEvent.decode(f[b"event"]) for _, f in
              client.xrange(Settings.from_env().stream("errors"))]
    (event,) = [e for e in events if token in e.text]
    assert event.text == f"abc def\n{error}: settings of {token} are broken\n", event.text
    # the error's class and message are read from stderr's line, not glued to stdout's
    report = json.loads(decision.read_text())
    headline = report["error"]["headline"]
    assert headline.startswith(error) and "abc" not in headline, report["error"]


def test_the_tail_breaks_lines_only_where_the_stream_switches_mid_line() -> None:
    tail = TailBuffer(1024)
    tail.append(b"progress 10%", 1)
    tail.append(b" 20%\n", 1)  # the same stream goes on: one line
    tail.append(b"half", 1)
    tail.append(b"warning: x\n", 2)  # the other stream mid-line: a line of its own
    tail.append(b"more\r", 1)
    tail.append(b"Error: y\n", 2)  # a carriage return ends a line already
    assert tail.text() == "progress 10% 20%\nhalf\nwarning: x\nmore\rError: y\n"
    assert not tail.truncated


def test_controls_become_spaces_but_line_breaks_tabs_and_escape_sequences_stay() -> None:
    assert plain_controls("a\x00b\x07c\x08d\x7fe") == "a b c d e"
    assert plain_controls("a\tb\nc\rd\x0ce") == "a\tb\nc\rd\x0ce"
    colour = "\x1b[31mError\x1b[0m: \x1b]8;;http://x\x07link\x1b]8;;\x07 \x00 \x1b"
    assert plain_controls(colour) == (
        "\x1b[31mError\x1b[0m: \x1b]8;;http://x\x07link\x1b]8;;\x07    ")
