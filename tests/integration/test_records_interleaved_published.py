"""Interleaved services and summary lines through the real paths on the session's embedded
Redis: ``heal backfill`` in a subprocess publishes each service's traceback whole and once,
and a compiler's tally and make's trailer with the compiler's error (a make failure alone is
still published); ``heal watch``'s follower, stopped while one service's traceback is open
around another's finished one, resumes without repeating or cutting either."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from pipeline.events import ErrorEvent
from producers.follow import FileFollower, OffsetStore
from producers.logs import LineSink, LogRecords
from tests.unit.test_producers_record_interleaved import (
    CARGO,
    CLANG,
    COMPOSE,
    MIXED,
    MULTIERROR,
    errors,
)

HEAL = str(Path(sys.executable).parent / "heal")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path: Path, redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
        ) -> dict[str, str]:
    values = {"HEAL_HOME": str(tmp_path / "home"), "HEAL_REDIS_URL": redis_url,
              "HEAL_STREAM_PREFIX": prefix}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return {**os.environ, **values, "PYTHONPATH": str(ROOT)}


def published(client: redis.Redis, env: dict[str, str]) -> list[ErrorEvent]:
    stream = f"{env['HEAL_STREAM_PREFIX']}:errors"
    return [ErrorEvent.decode(f[b"event"]) for _, f in client.xrange(stream)]


def test_backfill_publishes_interleaved_tracebacks_whole_and_tallies_with_their_error(
    env: dict[str, str], client: redis.Redis, tmp_path: Path
) -> None:
    logs = {"compose.log": COMPOSE, "build.log": CLANG, "cargo.log": CARGO,
            "migrate.log": "./migrate.sh\nmake: *** [Makefile:20: migrate] Error 2\n"}
    for name, text in logs.items():
        (tmp_path / name).write_text(text)
    done = subprocess.run([HEAL, "backfill", *(str(tmp_path / n) for n in logs)], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    events = published(client, env)
    by_file: dict[str, list[str]] = {}
    for event in events:
        by_file.setdefault(Path(str(event.tags["path"])).name, []).append(event.text)
    api, worker = by_file["compose.log"]
    assert api.startswith("api-1     | Traceback") and api.endswith("ConnectionError: db down")
    assert len(api.splitlines()) == 6
    assert worker.startswith("worker-1  | Traceback") and worker.endswith(
        "IndexError: pop from empty list")
    (clang,) = by_file["build.log"]
    assert clang.endswith("1 error generated.\nmake: *** [Makefile:12: main.o] Error 1")
    assert [t.splitlines()[0] for t in by_file["cargo.log"]] == [
        "error[E0425]: cannot find value `x` in this scope", "error[E0308]: mismatched types"]
    assert by_file["migrate.log"] == ["make: *** [Makefile:20: migrate] Error 2"]
    # the tags name each record's first line
    lines = sorted(int(str(e.tags["line"])) for e in events
                   if Path(str(e.tags["path"])).name == "compose.log")
    assert lines == [2, 3]


def test_watch_resumes_inside_interleaved_records_without_repeating_or_cutting_one(
    env: dict[str, str], tmp_path: Path
) -> None:
    """The follower stops when api's traceback is finished but worker's, which started inside
    it, is still open: api's is held with it (resuming inside api's lines would publish their
    tail as a record), so the restart publishes both whole, each once."""
    log = tmp_path / "compose.log"
    lines = COMPOSE.splitlines(keepends=True)
    log.write_text("".join(lines[:14]))  # api's record closed by its INFO line
    store = OffsetStore(tmp_path / "home")

    def sink(identity: Callable[[], str]) -> LineSink:
        return LogRecords(str(log), identity)

    first = FileFollower(str(log), store, sink, from_start=True, idle_flush_s=3600)
    assert first.poll() == []
    first.checkpoint()
    state = store.load(str(log))
    assert state is not None and (state.offset, state.line) == (len(lines[0].encode()), 1)
    with log.open("a") as fh:
        fh.write("".join(lines[14:]))
    second = FileFollower(str(log), store, sink, idle_flush_s=3600)
    after = second.poll() + second.close()
    tracebacks = [e for e in after if "Traceback" in e.text]
    assert [(e.text.splitlines()[-1], e.tags["line"]) for e in tracebacks] == [
        ("api-1     | ConnectionError: db down", 2),
        ("worker-1  | IndexError: pop from empty list", 3)]
    assert [len(e.text.splitlines()) for e in tracebacks] == [6, 6]
    assert len(after) == 2


def test_backfill_publishes_a_listed_error_heading_with_its_list_not_under_another_error(
    env: dict[str, str], client: redis.Redis, tmp_path: Path
) -> None:
    """``3 errors occurred:`` and its bulleted causes are published as an error of their own;
    before, the heading was read as a tally and the causes joined the unrelated error above."""
    (tmp_path / "sync.log").write_text(MULTIERROR)
    done = subprocess.run([HEAL, "backfill", str(tmp_path / "sync.log")], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    texts = [e.text for e in published(client, env)]
    assert len(texts) == 2, texts
    assert texts[0].startswith("time=") and len(texts[0].splitlines()) == 1
    assert texts[1].startswith("3 errors occurred:\n\t* read /srv/conf/limits.toml")
    assert len(texts[1].splitlines()) == 4


def test_watch_restarted_inside_a_mixed_log_publishes_what_one_pass_does(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A log mixing a build step's prefixed lines and unprefixed ones, the follower stopped
    after the traceback's first line and restarted: the same records, under the same ids, as
    one pass (before, the line after the traceback joined a record only when the first pass
    had seen the step line before it)."""
    log = tmp_path / "mixed.log"
    lines = MIXED.splitlines(keepends=True)
    log.write_text("".join(lines[:2]))
    store = OffsetStore(tmp_path / "home")

    def sink(identity: Callable[[], str]) -> LineSink:
        return LogRecords(str(log), identity)

    first = FileFollower(str(log), store, sink, from_start=True, idle_flush_s=3600)
    before = first.poll()
    first.checkpoint()
    with log.open("a") as fh:
        fh.write("".join(lines[2:]))
    second = FileFollower(str(log), store, sink, idle_flush_s=3600)
    after = second.poll() + second.close()
    assert [e.text for e in before + after] == errors(MIXED)
