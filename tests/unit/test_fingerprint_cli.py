"""``heal fingerprint``: one line per message, --multiline records, clean errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.fingerprint.hashing import ALGORITHM_VERSION

V = ALGORITHM_VERSION + ":"

TRACEBACK = """Traceback (most recent call last):
  File "/srv/co/app/main.py", line 3, in <module>
    import yaml
ModuleNotFoundError: No module named 'yaml'
"""


def test_one_message_per_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "log.txt"
    src.write_text("".join(f"Invalid user {u} from 10.0.0.{i}\n"
                           for i, u in enumerate(["ann", "bob", "cy"])) + "\nsession closed\n")
    assert main(["fingerprint", str(src)]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 4 and all(len(r) == 3 for r in rows)
    assert {r[2] for r in rows[:3]} == {"Invalid user <*> from <*>"}
    assert rows[0][0].startswith(V) and rows[0][1].startswith(V)
    assert rows[3][2] == "session closed"


def test_multiline_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "errors.txt"
    second = TRACEBACK.replace("yaml", "toml")
    src.write_text(TRACEBACK + "\n" + second + "\nbash: nope: command not found\n")
    assert main(["fingerprint", "--multiline", str(src)]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [r[2] for r in rows] == [
        "ModuleNotFoundError: No module named <*>",
        "ModuleNotFoundError: No module named <*>",
        "command not found: <*>",
    ]
    # what is missing is part of the problem (two fixes), one kind of failure (fp-v6)
    assert rows[0][0] != rows[1][0] and rows[0][1] == rows[1][1]


def test_unreadable_file_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fingerprint", "/nonexistent/heal-input"]) == 2
    assert "cannot read /nonexistent/heal-input" in capsys.readouterr().err


def test_multiline_keeps_chained_tracebacks_and_java_traces_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshots = Path(__file__).parent / "snapshots" / ALGORITHM_VERSION
    chained = (snapshots / "python_chained.txt").read_text()
    java = (snapshots / "java_caused_by.txt").read_text()
    src = tmp_path / "mixed.txt"
    src.write_text(chained + "\n" + java + "plain line one\nplain line two\n")
    assert main(["fingerprint", "--multiline", str(src)]) == 0
    templates = [line.split("\t")[2] for line in capsys.readouterr().out.splitlines()]
    assert templates == [
        "RuntimeError: config is not valid JSON",
        "java.lang.NumberFormatException: For input string: <*>",
        "plain line one",
        "plain line two",
    ]


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    src = tmp_path / "one.txt"
    src.write_text("retry 3 of 5 to 10.0.0.1 failed\n")
    assert main(["fingerprint", "--json", str(src)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["version"] == ALGORITHM_VERSION
    assert record["normalized"] == "retry <num> of <num> to <host> failed"
    assert any(h.startswith("<host>: 1 replaced") for h in record["hints"])


def test_templates_tell_variables_from_wording_whatever_the_line_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given user names in one slot, a key's values, and reasons paired one-to-one with
    # their descriptions (five of each, enough for any single column to look variable)
    lines = [f"ERROR user {u} not found" for u in ("alice", "bob", "carol")]
    lines += [f"auth failure; user={u}" for u in ("root", "guest", "test")]
    pairs = [("RTC", "(Alarm)"), ("ARPT", "(Network)"), ("USB", "(Device)"),
             ("LID", "(Open)"), ("PWR", "(Button)")]
    lines += [f"Wake reason: {a} {b}" for a, b in pairs]

    def templates(order: list[str]) -> dict[str, str]:
        src = tmp_path / "log.txt"
        src.write_text("".join(f"{line}\n" for line in order))
        assert main(["fingerprint", str(src)]) == 0
        rows = [r.split("\t") for r in capsys.readouterr().out.splitlines()]
        return {line: row[2] for line, row in zip(order, rows, strict=True)}

    # When `heal fingerprint` mines them, in two different orders
    first, second = templates(lines), templates(lines[::-1])
    # Then the names are variables, the paired columns stay wording, and order changes nothing
    assert first == second
    assert {first[x] for x in lines[:3]} == {"ERROR: user <*> not found"}
    assert {first[x] for x in lines[3:6]} == {"auth failure; <*>"}
    assert [first[x] for x in lines[6:]] == [f"Wake reason: {a} {b}" for a, b in pairs]
