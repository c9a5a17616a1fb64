"""Input bounds of the producers, through the real CLI on the session's real engines: every
producer cuts an event's text to 64 KiB (head and tail, ``tags.truncated_bytes``), the
watcher never holds an overlong line whole, ``heal diagnose`` reads a text as the pipeline
does, and bad options, FIFOs and bad events are refused with a message (exit 2 / 1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import redis

from pipeline.config import Settings
from pipeline.events import ErrorEvent

HEAL = str(Path(sys.executable).parent / "heal")
#: what a published entry holds besides its text's JSON string (ids, tags, source...)
JSON_OVERHEAD = 4096


@pytest.fixture
def env(tmp_path: Path, redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
        ) -> dict[str, str]:
    values = {"HEAL_HOME": str(tmp_path / "home"), "HEAL_REDIS_URL": redis_url,
              "HEAL_STREAM_PREFIX": prefix}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return {**os.environ, **values}


def heal(env: dict[str, str], *args: str, stdin: bytes = b"", timeout: float = 300
         ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([HEAL, *args], input=stdin, env=env, capture_output=True,
                          timeout=timeout, check=False)
    return subprocess.CompletedProcess(done.args, done.returncode,
                                       done.stdout.decode("utf-8", "replace"),
                                       done.stderr.decode("utf-8", "replace"))


def entries(client: redis.Redis, env: dict[str, str]) -> list[bytes]:
    stream = f"{env['HEAL_STREAM_PREFIX']}:errors"
    return [fields[b"event"] for _, fields in client.xrange(stream)]


def huge_log(path: Path, middle_bytes: int) -> tuple[str, str]:
    """A log whose second line is one ERROR line of ``middle_bytes`` bytes; returns the
    start and the end of that line."""
    head, tail = "2024-01-01 ERROR payload dump begins", "payload dump ends: ValueError boom"
    with path.open("w") as fh:
        fh.write("2024-01-01 INFO boot\n")
        # (words around the payload: a tail that starts inside a word longer than the
        # redaction margin drops it, as it may be the rest of a secret whose key was cut)
        fh.write(head + " " + "x" * middle_bytes + " " + tail + "\n")
        fh.write("2024-01-01 ERROR cannot connect to db\n")
    return head, tail


def check_cut(raw: bytes, head: str, tail: str, at_least: int) -> ErrorEvent:
    event = ErrorEvent.decode(raw)
    assert len(event.text.encode()) <= 64 * 1024
    assert len(raw) <= len(orjson.dumps(event.text)) + JSON_OVERHEAD, len(raw)
    assert event.text.startswith(head) and event.text.endswith(tail)
    assert event.tags["truncated_bytes"] >= at_least
    assert f"[heal: {event.tags['truncated_bytes']} bytes truncated]" in event.text
    return event


def test_watch_and_backfill_publish_a_20mb_line_cut_to_64kib(
    env: dict[str, str], client: redis.Redis, tmp_path: Path
) -> None:
    # Given a log with one attacker-written 20 MB line between two ordinary error lines
    log = tmp_path / "app.log"
    head, tail = huge_log(log, 20 * 1024 * 1024)
    # When heal watch --once reads it
    done = heal(env, "watch", "--once", "--from-start", str(log))
    assert done.returncode == 0, done.stderr
    # Then the 20 MB line is one entry of at most 64 KiB (and the JSON around it), its head
    # and tail kept and the cut counted; the next line is published as before
    watched = entries(client, env)
    assert len(watched) == 2
    event = check_cut(watched[0], head, tail, 20 * 1024 * 1024 - 64 * 1024)
    assert ErrorEvent.decode(watched[1]).text == "2024-01-01 ERROR cannot connect to db"
    # And heal backfill of the same file (another prefix) cuts it the same way, to the same
    # deterministic id
    other = {**env, "HEAL_STREAM_PREFIX": env["HEAL_STREAM_PREFIX"] + "b"}
    done = heal(other, "backfill", str(log))
    assert done.returncode == 0, done.stderr
    backfilled = entries(client, other)
    assert len(backfilled) == 2
    copy = check_cut(backfilled[0], head, tail, 20 * 1024 * 1024 - 64 * 1024)
    assert (copy.id, copy.text, copy.tags["truncated_bytes"]) == (
        event.id, event.text, event.tags["truncated_bytes"])


def test_a_transcript_failure_with_2mb_of_output_is_published_cut_to_64kib(
    env: dict[str, str], client: redis.Redis, tmp_path: Path
) -> None:
    output = "Exit code 1\n" + "noise line\n" * 200_000 + "AssertionError: the real failure"
    transcript = tmp_path / "session.jsonl"
    transcript.write_bytes(orjson.dumps({
        "tool": "bash", "input": {"command": "pytest -q"}, "output": output, "exit_code": 1,
        "timestamp": "not a time"}) + b"\n")
    done = heal(env, "backfill", "--transcript", str(transcript))
    assert done.returncode == 0, done.stderr
    (raw,) = entries(client, env)
    event = check_cut(raw, "Exit code 1", "AssertionError: the real failure", 2_000_000)
    assert event.source.kind == "transcript" and event.command == ("pytest", "-q")
    # a transcript's timestamp that is not ISO-8601 is replaced, not published to be refused
    assert event.ts[:4].isdigit() and event.ts.endswith("Z")


def test_diagnose_reads_a_138mb_traceback_as_the_pipeline_does(
    heal_env: dict[str, str], client: redis.Redis, tmp_path: Path
) -> None:
    """QA: diagnose answered tier 2 after a rule gave up on the whole 13.8 MB text, while the
    pipeline, which reads 64 KiB of it, matched at tier 1."""
    from pipeline.runtime import drain_inline

    frames = "".join(f'  File "/srv/app/mod{i}.py", line {i}, in load_{i}\n    import mod{i}\n'
                     for i in range(200_000))
    text = ("Traceback (most recent call last):\n" + frames
            + "ModuleNotFoundError: No module named 'yaml'\n")
    assert len(text) > 13_000_000
    sample = tmp_path / "trace.txt"
    sample.write_text(text)
    env = {**os.environ, **heal_env}
    # What diagnose says of it
    done = heal(env, "diagnose", "--json", "--no-semantic", str(sample))
    assert done.returncode == 0, done.stderr
    diagnosed = orjson.loads(done.stdout)
    # What the pipeline makes of it: published (heal emit), fingerprinted and looked up by
    # the real stages
    line = orjson.dumps({"v": 1, "id": "big-trace", "text": text}) + b"\n"
    done = heal(env, "emit", stdin=line)
    assert done.returncode == 0, done.stderr
    settings = Settings.from_env()
    drain_inline(settings, client, stages=["fingerprint", "lookup"])
    ((_, fields),) = client.xrange(settings.stream("candidates"))
    candidate = orjson.loads(fields[b"event"])
    assert diagnosed["fingerprint"]["fine"] == candidate["fine"]
    assert diagnosed["fingerprint"]["coarse"] == candidate["coarse"]
    assert diagnosed["match"]["tier"] == candidate["match"]["tier"] == 1
    assert diagnosed["match"]["pattern_id"] == candidate["match"]["pattern_id"]
    assert diagnosed["truncated_bytes"] == candidate["error"]["tags"]["truncated_bytes"] > 0
    assert "cut as the pipeline cuts it" in diagnosed["reason"]


@pytest.mark.parametrize(("option", "value", "says"), [
    ("--interval", "inf", "--interval inf: must be a number of seconds more than 0"),
    ("--interval", "nan", "--interval nan: must be a number of seconds more than 0"),
    ("--interval", "0", "--interval 0: must be a number of seconds more than 0"),
    ("--interval", "7200", "and at most 3600"),
    ("--idle-flush", "nan", "--idle-flush nan: must be a number of seconds from 0 to 3600"),
    ("--idle-flush", "-1", "--idle-flush -1: must be a number of seconds from 0 to 3600"),
    ("--idle-flush", "1e400", "--idle-flush inf: must be a number of seconds"),
])
def test_watch_refuses_a_float_option_that_is_not_finite_or_out_of_range(
    env: dict[str, str], tmp_path: Path, option: str, value: str, says: str
) -> None:
    log = tmp_path / "f.log"
    log.write_text("boot\n")
    done = heal(env, "watch", option, value, str(log), timeout=60)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr


def test_watch_and_backfill_refuse_a_fifo_instead_of_hanging(
    env: dict[str, str], client: redis.Redis, tmp_path: Path
) -> None:
    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    done = heal(env, "watch", "--once", "--from-start", str(fifo), timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"{fifo} is a FIFO, not a regular file" in done.stderr
    done = heal(env, "backfill", str(fifo), timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"{fifo}: is a FIFO, not a regular file" in done.stderr
    done = heal(env, "backfill", "--transcript", str(fifo), timeout=60)
    assert done.returncode == 2 and "is a FIFO" in done.stderr
    assert entries(client, env) == []


def test_emit_says_what_is_wrong_with_each_bad_line(
    env: dict[str, str], client: redis.Redis
) -> None:
    lines = [
        b'{"v":1,"id":5,"text":"x"}',
        b'{"v":1,"id":"a","text":7}',
        b'{"v":1,"id":"b"}',
        b'{"v":1,"id":"c","text":"x","exit_code":99999999999999999999999}',
        b'{"v":1,"id":"d","text":"caf\xe9"}',
        b'{"v":1,"id":"e","text":"x","ts":"yesterday"}',
        b'{"v":1,"id":"ok","text":"x","command":"pytest -q","ts":"2026-11-22T10:00:00Z"}',
    ]
    done = heal(env, "emit", stdin=b"\n".join(lines) + b"\n")
    assert done.returncode == 1
    err = done.stderr
    assert "line 1: 'id' must be a non-empty string, got an integer" in err
    assert "line 2: 'text' must be a string, got an integer" in err
    assert "line 3: missing required field 'text' (the error text, a string)" in err
    assert "line 4: 'exit_code' 1e+23 is out of range" in err
    assert "line 5: not valid UTF-8 at byte 27 (0xe9)" in err
    assert "line 6: 'ts' \"yesterday\" is not an ISO-8601 time" in err
    assert "published 1 event(s), 6 bad line(s) skipped" in err
    # a command given as one string is kept as a one-argument argv, never split (README)
    (raw,) = entries(client, env)
    assert ErrorEvent.decode(raw).command == ("pytest -q",)
