"""emit, backfill and watch against the real embedded Redis."""

from __future__ import annotations

import errno
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.errors import EventValidationError
from pipeline.events import ErrorEvent
from producers import emit
from producers.publisher import Publisher


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
             ) -> Settings:
    env = {"HEAL_HOME": str(tmp_path / "home"), "HEAL_REDIS_URL": redis_url,
           "HEAL_STREAM_PREFIX": prefix}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings.from_env()


def errors(client: redis.Redis, settings: Settings) -> list[ErrorEvent]:
    return [ErrorEvent.decode(f[b"event"]) for _, f in client.xrange(settings.stream("errors"))]


def stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


LOG = (
    "2024-01-01 boot\n"
    "2024-01-01 ERROR cannot connect to db\n"
    "2024-01-01 INFO retrying\n"
    "Traceback (most recent call last):\n"
    '  File "a.py", line 1, in <module>\n'
    "ModuleNotFoundError: No module named 'yaml'\n"
)


def test_emit_publishes_good_lines_and_reports_bad_ones(
    settings: Settings, client: redis.Redis, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = [
        b'{"v":1,"id":"e1","text":"boom","exit_code":1}',
        b"not json",
        b"",
        b'{"v":1,"text":"no id"}',
        b'{"v":1,"id":"e2","text":"fine too","command":["make"]}',
    ]
    stdin(monkeypatch, b"\n".join(lines) + b"\n")
    assert main(["emit"]) == 1
    err = capsys.readouterr().err
    assert "line 2: not valid JSON" in err
    assert "line 4: missing required field 'id'" in err
    assert "published 2 event(s), 2 bad line(s) skipped" in err
    assert [e.id for e in errors(client, settings)] == ["e1", "e2"]
    stdin(monkeypatch, b'{"v":1,"id":"e3","text":"ok"}\n')
    assert main(["emit"]) == 0


def test_python_api_emit(settings: Settings, client: redis.Redis) -> None:
    publisher = Publisher(client, settings)
    event_id = emit("KeyError: 'x'", command=["pytest"], exit_code=1,
                    workflow={"id": "nightly", "step": "pytest"}, publisher=publisher)
    (event,) = errors(client, settings)
    assert event.id == event_id and event.id.startswith("api-")
    assert event.source.kind == "api" and event.workflow.id == "nightly"
    with pytest.raises(EventValidationError, match="exit_code"):
        emit("x", exit_code="one", publisher=publisher)
    assert emit("y", id="mine", publisher=publisher) == "mine"


def test_backfill_dry_run_prints_events_and_publishes_nothing(
    settings: Settings, client: redis.Redis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "app.log"
    log.write_text(LOG)
    assert main(["backfill", "--dry-run", "--json", str(log)]) == 0
    out = capsys.readouterr()
    events = [orjson.loads(line) for line in out.out.splitlines()]
    assert [e["text"].splitlines()[0] for e in events] == [
        "2024-01-01 ERROR cannot connect to db", "Traceback (most recent call last):"]
    assert all(e["source"]["kind"] == "backfill" for e in events)
    assert "would publish 2 event(s)" in out.err
    assert errors(client, settings) == []


def test_backfill_twice_does_not_double_publish(
    settings: Settings, client: redis.Redis, tmp_path: Path
) -> None:
    log = tmp_path / "app.log"
    log.write_text(LOG)
    assert main(["backfill", str(log)]) == 0
    first = errors(client, settings)
    assert len(first) == 2
    assert main(["backfill", str(log)]) == 0
    assert len(errors(client, settings)) == 2
    with log.open("a") as fh:
        fh.write("2024-01-02 FATAL out of memory\n")
    assert main(["backfill", str(log)]) == 0
    now = errors(client, settings)
    assert [e.text for e in now[2:]] == ["2024-01-02 FATAL out of memory"]
    assert main(["backfill", "--force", str(log)]) == 0  # same ids again: the runtime dedupes
    assert [e.id for e in errors(client, settings)[3:]] == [e.id for e in now]


def test_replay_republishes_history_with_new_ids(
    settings: Settings, client: redis.Redis, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stdin(monkeypatch, b'{"v":1,"id":"r1","text":"a"}\n{"v":1,"id":"r2","text":"b"}\n')
    assert main(["emit"]) == 0
    client.xadd(settings.stream("errors"), {"event": b"garbage"})
    assert main(["backfill", "--replay", "--since", "1h"]) == 0
    events = errors_lenient(client, settings)
    assert [e.id.split("~")[0] for e in events[2:]] == ["r1", "r2"]
    assert all(e.tags["replay_of"] in ("r1", "r2") for e in events[2:])
    assert "1 undecodable entries skipped" in capsys.readouterr().err
    assert main(["backfill", "--replay", "--since", "tomorrow-ish"]) == 2
    assert main(["backfill"]) == 2


def errors_lenient(client: redis.Redis, settings: Settings) -> list[ErrorEvent]:
    out = []
    for _, fields in client.xrange(settings.stream("errors")):
        try:
            out.append(ErrorEvent.decode(fields[b"event"]))
        except Exception:
            continue
    return out


def test_backfill_transcript(settings: Settings, client: redis.Redis, tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    path.write_text("\n".join(orjson.dumps(o).decode() for o in [
        {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "npm test"}},
        {"type": "tool_result", "tool_use_id": "t1", "is_error": True,
         "content": "Exit code 1\nError: Cannot find module 'express'"},
    ]) + "\n")
    assert main(["backfill", "--transcript", str(path)]) == 0
    (event,) = errors(client, settings)
    assert event.command == ("npm", "test") and event.exit_code == 1
    assert event.source.kind == "transcript"


def test_watch_resumes_after_restart(settings: Settings, client: redis.Redis,
                                     tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    log.write_text(LOG)
    assert main(["watch", "--once", "--from-start", str(log)]) == 0
    assert len(errors(client, settings)) == 2
    with log.open("a") as fh:
        fh.write("INFO ok\nERROR disk full\n")
    # the restarted watcher starts at the saved offset: only the new record is published
    assert main(["watch", "--once", str(log)]) == 0
    texts = [e.text for e in errors(client, settings)]
    assert len(texts) == 3 and texts[-1] == "ERROR disk full"
    assert list((Path(settings.home) / "watch").glob("*.json"))


def test_watch_follows_live_and_stops_cleanly_on_sigterm(
    settings: Settings, client: redis.Redis, tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess
    import time

    log = tmp_path / "live.log"
    log.write_text("boot\n")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "heal"), "watch", "--interval", "0.1",
         "--idle-flush", "0.2", str(log)], env=dict(os.environ), stderr=subprocess.PIPE,
        text=True)
    try:
        deadline = time.monotonic() + 120
        while not list((Path(settings.home) / "watch").glob("*.json")):
            assert proc.poll() is None and time.monotonic() < deadline, "watch did not start"
            time.sleep(0.05)
        with log.open("a") as fh:
            fh.write("Traceback (most recent call last):\n  x\nOSError: gone\n")
        while not errors(client, settings):
            assert time.monotonic() < deadline, "no event published"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    (event,) = errors(client, settings)
    assert event.text.endswith("OSError: gone") and event.source.kind == "log"


def test_backfill_json_summary_and_bad_paths(
    settings: Settings, client: redis.Redis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "app.log"
    log.write_text(LOG)
    assert main(["backfill", "--json", str(log)]) == 0
    assert orjson.loads(capsys.readouterr().out)["published"] == 2
    assert main(["backfill", str(tmp_path / "missing.log")]) == 2
    assert main(["backfill", str(tmp_path)]) == 2
    assert "missing.log: does not exist" in capsys.readouterr().err


CI_LOG = "\n".join([
    "travis_fold:start:install",
    "$ npm ci",
    "npm WARN deprecated request@2.88.2: request has been deprecated",
    "npm ERR! this line is noise of a step that succeeded",
    "travis_fold:end:install",
    'The command "npm ci" exited with 0.',
    "$ npm test",
    *[f"  ok {i} adds {i}" for i in range(80)],
    "  1) sums two numbers:",
    "     AssertionError [ERR_ASSERTION]: 3 == 4",
    "      at Context.<anonymous> (test/sum.js:5:12)",
    "  80 passing (40ms)",
    "  1 failing",
    'The command "npm test" exited with 1.',
    "Done. Your build exited with 1.",
    "",
])


def test_backfill_of_a_ci_log_publishes_the_failed_steps_explanation_and_little_else(
    settings: Settings, client: redis.Redis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "build.log"
    log.write_text(CI_LOG)
    assert main(["backfill", "--dry-run", "--json", str(log)]) == 0
    events = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(events) == 1
    text = events[0]["text"]
    assert "AssertionError [ERR_ASSERTION]: 3 == 4" in text and "1 failing" in text
    assert "noise of a step that succeeded" not in text
    assert events[0]["exit_code"] == 1 and events[0]["tags"]["record_kind"] == "ci-step"
    assert len(text) < len(CI_LOG) / 2
    # heal watch publishes the same event once the runner reports the exit
    assert main(["watch", "--once", "--from-start", str(log)]) == 0
    published = errors(client, settings)
    assert [e.text for e in published] == [text]


def test_a_secret_longer_than_any_bound_is_redacted_whole_in_published_events(
    settings: Settings, client: redis.Redis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a log whose errors hold a 540-character secret as a password and in a URL
    secret = "k" + "Zq7_x9Rw" * 67 + "=="
    log = tmp_path / "secret.log"
    log.write_text(f"ERROR db connect failed DB_PASSWORD={secret}\n"
                   f"ERROR clone https://user:{secret}@example.com/x failed\n"
                   f"ERROR call Authorization: Bearer {secret * 10}\n")
    # When it is backfilled and watched
    assert main(["backfill", "--dry-run", "--json", str(log)]) == 0
    shown = [orjson.loads(line)["text"] for line in capsys.readouterr().out.splitlines()]
    assert main(["watch", "--once", "--from-start", str(log)]) == 0
    published = [e.text for e in errors(client, settings)]
    # Then no part of the secret is in any event: each value is replaced whole
    assert shown == published == [
        "ERROR db connect failed DB_PASSWORD=<redacted:password>",
        "ERROR clone https://user:<redacted:url_credentials>@example.com/x failed",
        "ERROR call Authorization: Bearer <redacted:authorization>",
    ]


# a GitHub Actions job log: a checkout step, then a pytest step that fails
GITHUB_LOG = [
    "##[group]Run actions/checkout@v4", "with:", "  repository: x/y", "##[endgroup]",
    "##[group]Run pytest -q", "\x1b[36;1mpytest -q\x1b[0m", "##[endgroup]",
    *[f"tests/test_a.py::test_{i} PASSED" for i in range(40)],
    "tests/test_b.py::test_x FAILED",
    "___________________________________ test_x ____________________________________",
    ">       assert parse('1') == 2",
    "E       AssertionError: assert 1 == 2",
    "FAILED tests/test_b.py::test_x - AssertionError: assert 1 == 2",
    "##[error]Process completed with exit code 1.",
]


def test_a_github_log_as_downloaded_with_a_timestamp_on_every_line_is_read_as_a_ci_log(
    settings: Settings, client: redis.Redis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the same job log as shown in the browser and as GitHub serves it for download
    # (a timestamp before every line, a byte order mark after the first one)
    shown = tmp_path / "shown.log"
    shown.write_text("\n".join(GITHUB_LOG) + "\n")
    served = tmp_path / "served.log"
    served.write_text("".join(
        f"2026-11-22T10:00:{i % 60:02d}.{i:07d}Z {chr(0xfeff) if i == 0 else ''}{line}\n"
        for i, line in enumerate(GITHUB_LOG)))
    # When both are backfilled
    found = []
    for log in (shown, served):
        assert main(["backfill", "--dry-run", "--json", str(log)]) == 0
        found.append([orjson.loads(line) for line in capsys.readouterr().out.splitlines()])
    # Then each gives one event for the failed step, with the same text and command
    assert [len(events) for events in found] == [1, 1]
    one, other = found[0][0], found[1][0]
    assert other["tags"]["record_kind"] == "ci-step" and other["exit_code"] == 1
    assert other["tags"]["ci_command"] == one["tags"]["ci_command"] == "##[group]Run pytest -q"
    assert other["text"] == one["text"]
    assert "E       AssertionError: assert 1 == 2" in other["text"]
    assert "2026-11-22T" not in other["text"] and "actions/checkout" not in other["text"]


# a Travis log whose pytest step fails: progress lines, then one report per failure between
# pytest's rules (70 lines, most of them frames of one shape), then the summary
_FRAMES = [f"    frame_{i} = call_{i}(frame_{i - 1})  # lib/chain.py:{i + 10}" for i in range(60)]
REPORT_LOG = "\n".join([
    "travis_fold:start:script",
    "$ pytest -v",
    *[f"tests/test_m{i}.py::test_case_{i} PASSED [{i:3d}%]" for i in range(90)],
    "tests/test_chain.py::test_chain FAILED [ 91%]",
    "=================================== FAILURES ===================================",
    "__________________________________ test_chain __________________________________",
    "    def test_chain():",
    *_FRAMES,
    ">       assert frame_59 == 60",
    "E       assert 59 == 60",
    "tests/test_chain.py:70: AssertionError",
    "========================= 1 failed, 90 passed in 2.1s =========================",
    'The command "pytest -v" exited with 1.',
    "Done. Your build exited with 1.",
    "",
])


def test_backfill_publishes_a_failed_tests_whole_report_between_the_runners_rules(
    settings: Settings, client: redis.Redis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "build.log"
    log.write_text(REPORT_LOG)
    assert main(["backfill", "--dry-run", "--json", str(log)]) == 0
    events = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(events) == 1
    text = events[0]["text"]
    assert all(frame in text for frame in _FRAMES)  # the report is not cut to 25 lines
    assert "E       assert 59 == 60" in text
    assert "tests/test_m40.py::test_case_40 PASSED" not in text
    assert len(text) < len(REPORT_LOG) / 2


class _FailingInput(io.RawIOBase):
    """Standard input that gives ``data`` and then fails to read (EIO), as a broken pipe
    from a dying producer or a bad disk does."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self.data:
            raise OSError(errno.EIO, "Input/output error")
        size = min(len(buffer), len(self.data))
        buffer[:size], self.data = self.data[:size], self.data[size:]
        return size


def test_emit_publishes_what_it_read_before_its_input_fails(
    settings: Settings, client: redis.Redis, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given heal emit whose input gives two events (fewer than a batch) and then fails
    data = b'{"v":1,"id":"in1","text":"boom"}\n{"v":1,"id":"in2","text":"bang"}\n'
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(_FailingInput(data))))
    # When it runs
    status = main(["emit"])
    # Then the two events read are published before the error ends it, and it says so
    err = capsys.readouterr().err
    assert status == 1, err
    assert [e.id for e in errors(client, settings)] == ["in1", "in2"]
    assert "heal emit: stopped; published 2 event(s) read before the error" in err
    assert "Input/output error" in err and "Traceback" not in err


def test_emit_lines_counts_what_it_could_not_publish_when_the_input_fails(
    settings: Settings, client: redis.Redis
) -> None:
    from producers.emit import EmitReport, emit_lines

    stream = settings.stream("errors")

    def lines() -> Iterator[bytes]:
        yield b'{"v":1,"id":"un1","text":"boom"}'
        yield b'{"v":1,"id":"un2","text":"bang"}'
        client.set(stream, "not a stream")  # publishing now fails (WRONGTYPE)
        raise RuntimeError("the producer died")

    # When the input fails and publishing what was read fails too
    report = EmitReport()
    try:
        with pytest.raises(RuntimeError, match="the producer died") as raised:
            emit_lines(lines(), Publisher(client, settings), report=report)
    finally:
        client.delete(stream)
    # Then the input's error goes on, the two events are counted as not published, and the
    # error says so
    assert (report.published, report.unpublished) == (0, 2)
    assert any("2 event(s) read before it were not published" in note
               for note in raised.value.__notes__)
