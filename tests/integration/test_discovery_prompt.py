"""The one-time backfill question of `heal up` (asked on a terminal only, default no) and
`heal backfill --discover` against the real embedded Redis."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import orjson
import pytest
import redis

from pipeline.cli import main
from pipeline.config import Settings
from producers.discovery import ASKED_FILE, offer_backfill

LOG = (
    "2024-01-01 INFO boot\n"
    "Traceback (most recent call last):\n"
    '  File "a.py", line 1, in <module>\n'
    "ModuleNotFoundError: No module named 'yaml'\n"
    "2024-01-01 ERROR cannot connect to db\n"
)


@pytest.fixture
def env(tmp_path: Path, redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
        ) -> tuple[Settings, redis.Redis, Path]:
    monkeypatch.setenv("HEAL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HEAL_REDIS_URL", redis_url)
    monkeypatch.setenv("HEAL_STREAM_PREFIX", prefix)
    repo = tmp_path / "repo"
    (repo / "logs").mkdir(parents=True)
    (repo / "logs/app.log").write_text(LOG)
    (repo / "build.log").write_text("npm ERR! code ELIFECYCLE\n")
    (repo / "node_modules/x").mkdir(parents=True)
    (repo / "node_modules/x/debug.log").write_text("ERROR not ours\n")
    return Settings.from_env(), redis.Redis.from_url(redis_url), repo


@pytest.fixture
def tty() -> Iterator[tuple[IO[str], int]]:
    """A real terminal: the slave end as stdin, the master end to type into."""
    master, slave = os.openpty()
    stdin = os.fdopen(slave, "r")
    try:
        yield stdin, master
    finally:
        stdin.close()
        os.close(master)


def _published(client: redis.Redis, settings: Settings) -> int:
    return int(client.xlen(settings.stream("errors")))


def test_asked_once_on_a_terminal_and_yes_backfills(
    env: tuple[Settings, redis.Redis, Path], tty: tuple[IO[str], int],
) -> None:
    settings, client, repo = env
    stdin, master = tty
    os.write(master, b"y\n")
    out = io.StringIO()
    assert stdin.isatty()
    assert offer_backfill(settings, client, root=repo, stdin=stdin, out=out) == "yes"
    assert f"Found 2 log files under {repo}" in out.getvalue()
    assert "backfill them now? [y/N]" in out.getvalue()
    assert _published(client, settings) == 3  # the traceback, the ERROR line, npm ERR!
    record = json.loads((settings.home / ASKED_FILE).read_text())
    assert record["answer"] == "yes" and record["files"] == 2
    # never again, whatever is typed
    os.write(master, b"y\n")
    assert offer_backfill(settings, client, root=repo, stdin=stdin, out=out) == "already-asked"
    assert _published(client, settings) == 3


def test_default_is_no_and_is_remembered(
    env: tuple[Settings, redis.Redis, Path], tty: tuple[IO[str], int],
) -> None:
    settings, client, repo = env
    stdin, master = tty
    os.write(master, b"\n")  # just Enter
    out = io.StringIO()
    assert offer_backfill(settings, client, root=repo, stdin=stdin, out=out) == "no"
    assert "heal backfill --discover" in out.getvalue()
    assert _published(client, settings) == 0
    assert json.loads((settings.home / ASKED_FILE).read_text())["answer"] == "no"
    assert offer_backfill(settings, client, root=repo, stdin=stdin, out=out) == "already-asked"


def test_never_asked_without_a_terminal(env: tuple[Settings, redis.Redis, Path]) -> None:
    settings, client, repo = env
    out = io.StringIO()
    assert offer_backfill(settings, client, root=repo, stdin=io.StringIO("y\n"),
                          out=out) == "no-tty"
    closed = io.StringIO()
    closed.close()
    assert offer_backfill(settings, client, root=repo, stdin=closed, out=out) == "no-tty"
    assert out.getvalue() == ""
    assert not (settings.home / ASKED_FILE).exists()
    assert _published(client, settings) == 0


def test_nothing_found_asks_nothing(env: tuple[Settings, redis.Redis, Path],
                                    tty: tuple[IO[str], int], tmp_path: Path) -> None:
    settings, client, _repo = env
    empty = tmp_path / "empty"
    empty.mkdir()
    out = io.StringIO()
    assert offer_backfill(settings, client, root=empty, stdin=tty[0], out=out) == "none-found"
    assert out.getvalue() == ""


def test_cli_discover_lists_then_backfills(
    env: tuple[Settings, redis.Redis, Path], capsys: pytest.CaptureFixture[str],
) -> None:
    settings, client, repo = env
    assert main(["backfill", "--discover", str(repo), "--dry-run", "--json"]) == 0
    listing = orjson.loads(capsys.readouterr().out)
    assert [Path(f["path"]).relative_to(repo).as_posix() for f in listing["files"]] == [
        "build.log", "logs/app.log"]
    assert _published(client, settings) == 0

    assert main(["backfill", "--discover", str(repo), "--glob", "node_modules/**"]) == 0
    out = capsys.readouterr()
    assert "2 log file(s) under" in out.out  # node_modules stays pruned even when asked for
    assert "published 3 event(s) from 2 file(s)" in out.err
    assert _published(client, settings) == 3
    # the per-file marks hold: a second discovery publishes nothing new
    assert main(["backfill", "--discover", str(repo)]) == 0
    assert _published(client, settings) == 3


def test_cli_usage_errors(env: tuple[Settings, redis.Redis, Path],
                          capsys: pytest.CaptureFixture[str]) -> None:
    _settings, _client, repo = env
    assert main(["backfill", "--glob", "*.log", "x.log"]) == 2
    assert "--glob only applies to --discover" in capsys.readouterr().err
    assert main(["backfill", "--discover", str(repo), "--shadow", "--dry-run"]) == 2
    assert main(["backfill", "--replay", "--discover", str(repo)]) == 2
    assert main(["backfill", "--discover", str(repo), "--mode", "auto"]) == 2
    assert "--mode only applies to --shadow" in capsys.readouterr().err


def test_heal_up_asks_on_a_terminal_only(
    heal_env: dict[str, str], tmp_path: Path, tty: tuple[IO[str], int],
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    import sys

    from pipeline.cli import up

    repo = tmp_path / "proj"
    (repo / "logs").mkdir(parents=True)
    (repo / "logs/app.log").write_text(LOG)
    monkeypatch.chdir(repo)
    monkeypatch.setattr(up, "run_threads", lambda workers: 0)  # start, then stop at once
    home = Path(heal_env["HEAL_HOME"])

    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))  # CI: piped stdin, no terminal
    assert main(["up", "--stages", "fingerprint"]) == 0
    assert "backfill them now" not in capsys.readouterr().err
    assert not (home / ASKED_FILE).exists()

    stdin, master = tty
    os.write(master, b"n\n")
    monkeypatch.setattr(sys, "stdin", stdin)
    assert main(["up", "--stages", "fingerprint"]) == 0
    assert f"Found 1 log files under {repo}" in capsys.readouterr().err
    assert json.loads((home / ASKED_FILE).read_text())["answer"] == "no"
