"""Transcripts are untrusted input: through the real CLI (``heal watch --transcript`` and
``heal backfill --transcript``) on the session's real Redis, every event published is one the
fingerprint stage accepts, one hostile line never loses the others, and lines that are not
transcript JSON are reported, never silently dropped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from pipeline.events import ErrorEvent

HEAL = str(Path(sys.executable).parent / "heal")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path: Path, redis_url: str, prefix: str) -> dict[str, str]:
    # (PYTHONPATH: the heal of this checkout, whatever the venv's editable install names)
    return {**os.environ, "HEAL_HOME": str(tmp_path / "home"), "HEAL_REDIS_URL": redis_url,
            "HEAL_STREAM_PREFIX": prefix, "PYTHONPATH": str(ROOT)}


def heal(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HEAL, *args], env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def stored(client: redis.Redis, env: dict[str, str]) -> list[ErrorEvent]:
    """Each entry of the error stream decoded as the fingerprint stage decodes it (raises
    the stage's own EventValidationError for an entry it would dead-letter)."""
    stream = f"{env['HEAL_STREAM_PREFIX']}:errors"
    return [ErrorEvent.decode(fields[b"event"]) for _, fields in client.xrange(stream)]


def call(n: int, command: str | list[str] = "pytest -q", **extra: Any) -> dict[str, Any]:
    return {"type": "assistant", "sessionId": "s1", "cwd": "/srv/app",
            "timestamp": "2026-11-22T10:00:00Z",
            "message": {"content": [{"type": "tool_use", "id": f"t{n}", "name": "Bash",
                                     "input": {"command": command}}]}, **extra}


def result(n: int, content: str, **extra: Any) -> dict[str, Any]:
    return {"type": "user", "sessionId": "s1", "cwd": "/srv/app",
            "message": {"content": [{"type": "tool_result", "tool_use_id": f"t{n}",
                                     "content": content, "is_error": True}]}, **extra}


def write(path: Path, objs: list[Any]) -> Path:
    path.write_bytes(b"".join((o if isinstance(o, bytes) else orjson.dumps(o)) + b"\n"
                              for o in objs))
    return path


def hostile_exit_code(path: Path) -> Path:
    """Two valid failures, one whose output starts with an exit code beyond 64 bits, and
    two more valid failures after it."""
    lines: list[Any] = []
    for n in range(5):
        lines.append(call(n))
        code = "99999999999999999999999999" if n == 2 else str(n + 1)
        lines.append(result(n, f"Exit code {code}\nValueError: failure {n}"))
    return write(path, lines)


@pytest.mark.parametrize("command", ["watch", "backfill"])
def test_an_exit_code_beyond_64_bits_loses_no_event(
    command: str, tmp_path: Path, env: dict[str, str], client: redis.Redis
) -> None:
    path = hostile_exit_code(tmp_path / "s.jsonl")
    args = (["watch", "--transcript", "--once", "--from-start", "--no-learn", str(path)]
            if command == "watch" else ["backfill", "--transcript", str(path)])
    done = heal(env, *args)
    assert done.returncode == 0, done.stderr
    assert "internal error" not in done.stderr
    assert "1 failure(s) published with fields cut to fit the event contract" in done.stderr
    events = stored(client, env)
    assert sorted(e.text.rsplit(" ", 1)[1] for e in events) == ["0", "1", "2", "3", "4"]
    (huge,) = [e for e in events if e.text.endswith("failure 2")]
    assert huge.exit_code is None and huge.tags["cut_fields"] == ["exit_code"]
    assert huge.tags["exit_code_text"].startswith("999999999999999999999")
    assert sorted(e.exit_code for e in events if e is not huge) == [1, 2, 4, 5]
    if command == "watch":  # the offset was saved: a restart publishes nothing again
        again = heal(env, "watch", "--transcript", "--once", "--no-learn", str(path))
        assert again.returncode == 0 and "published 0 event(s)" in again.stderr
        write(path, [*[orjson.loads(line) for line in path.read_bytes().splitlines()],
                     call(9), result(9, "Exit code 3\nValueError: failure 9")])
        again = heal(env, "watch", "--transcript", "--once", "--no-learn", str(path))
        assert "published 1 event(s)" in again.stderr
        assert len(stored(client, env)) == 6


def test_fields_beyond_the_contract_are_cut_never_dead_lettered(
    tmp_path: Path, env: dict[str, str], client: redis.Redis
) -> None:
    big = 300_000
    path = write(tmp_path / "s2.jsonl", [
        call(0), result(0, "Exit code 1\nhuge cwd", cwd="/" + "c" * big),
        call(1), result(1, "Exit code 1\nhuge session", sessionId="S" * big),
        call(2), result(2, "Exit code 1\nhuge branch", gitBranch="b" * big),
        call(3, ["a"] * 5000), result(3, "ValueError: too many args"),
        call(4, "x" * 20_000), result(4, "ValueError: one huge argument"),
        {"tool": "bash", "input": {"command": ["pytest"]}, "output": "boolean code",
         "exit_code": True, "is_error": True, "cwd": 7},
        {"tool": "b" * big, "id": "i" * big, "input": {"command": "true"},
         "output": "huge tool name", "exit_code": 1},
        call(5), result(5, "Exit code 1\nValueError: last-good"),
    ])
    done = heal(env, "backfill", "--transcript", str(path))
    assert done.returncode == 0, done.stderr
    events = {e.text.rsplit("\n", 1)[-1]: e for e in stored(client, env)}  # all decode
    assert len(events) == 8
    assert "5 failure(s) published with fields cut" in done.stderr
    assert events["huge cwd"].tags["cut_fields"] == ["repo.path"]
    assert len(events["huge cwd"].repo.path) <= 1024
    assert events["huge session"].tags["cut_fields"] == ["workflow.id", "workflow.run_id"]
    assert events["huge branch"].tags["cut_fields"] == ["repo.branch"]
    for text in ("ValueError: too many args", "ValueError: one huge argument"):
        cut = events[text]
        assert cut.command == () and cut.tags["cut_fields"] == ["command"]
        assert cut.tags["command_args"] in (5000, 1) and cut.tags["command_head"]
    # an exit code that is not an integer is never published as one
    assert events["boolean code"].exit_code is None and events["boolean code"].repo.path == ""
    assert len(events["huge tool name"].workflow.step) == 256
    assert events["ValueError: last-good"].tags.get("cut_fields") is None
    for event in events.values():
        assert len(event.encode()) < 196_608


def test_lines_that_are_not_transcript_json_are_reported(
    tmp_path: Path, env: dict[str, str], client: redis.Redis
) -> None:
    long = tmp_path / "long.jsonl"
    long.write_bytes(orjson.dumps({"tool": "bash", "output": "ValueError: " + "x" * (17 << 20),
                                   "exit_code": 1}) + b"\n")
    first = heal(env, "backfill", "--transcript", str(long))
    assert first.returncode == 0, first.stderr
    assert ("skipped 1 line(s) that are not transcript JSON (1 longer than 16 MiB)"
            in first.stderr)
    second = heal(env, "backfill", "--json", "--transcript", str(long))
    assert "published before" not in second.stderr
    assert "bytes read by an earlier backfill" in second.stderr
    plain = tmp_path / "app.log"
    plain.write_text("".join(f"2026-01-01 ERROR event {i}\n" for i in range(300)))
    dry = heal(env, "backfill", "--dry-run", "--transcript", str(plain))
    assert "skipped 300 line(s) that are not transcript JSON" in dry.stderr
    assert "give JSONL agent transcripts to --transcript" in dry.stderr
    watch = heal(env, "watch", "--transcript", "--once", "--from-start", "--no-learn",
                 str(plain))
    assert f"{plain}: skipped 300 line(s) that are not transcript JSON" in watch.stderr
    summary = orjson.loads(heal(env, "backfill", "--json", "--force", "--transcript",
                                str(plain)).stdout)
    assert summary["transcripts"][str(plain)]["skipped_lines"] == 300
    assert stored(client, env) == []
