"""The embedded PostgreSQL is started and stopped without trusting what a path or a pid file
says: a HEAL_HOME (or repository folder) naming shell code never runs it, a stale
``postmaster.pid`` whose pid another process took never gets that process signalled, and a
failing initdb says why (QA conf report, items 1, 2 and 8)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from pipeline.config import Settings
from storage.embedded import EmbeddedPostgres
from storage.engines import stop_engines

ROOT = Path(__file__).resolve().parents[2]
#: the console script's entry (pyproject.toml), on this tree's code
HEAL = "import sys; from pipeline.cli import main; sys.exit(main())"


def _heal(home: Path, *args: str, extra: dict[str, str] | None = None,
          timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
    env.update(HEAL_HOME=str(home), HEAL_REDIS_URL="redis://127.0.0.1:1/0",
               PYTHONPATH=str(ROOT), **(extra or {}))
    return subprocess.run([sys.executable, "-c", HEAL, *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _stop(home: Path) -> None:
    stop_engines(Settings.from_env({"HEAL_HOME": str(home), "HEAL_REDIS_URL": "redis://x"}),
                 force=True)


@pytest.fixture
def marker_dir() -> Iterator[Path]:
    """A folder the server's user (``pgserver`` as root) may write to: where the injected
    command would leave its mark."""
    path = Path(tempfile.mkdtemp(prefix="heal-inject-", dir="/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_heal_home_naming_shell_code_never_runs_it(tmp_path: Path, marker_dir: Path) -> None:
    # Given a HEAL_HOME whose folder name is shell code (as a repository folder's name is
    # when HEAL_HOME is unset), with a space pg_ctl's options would split at
    marker = marker_dir / "pwned"
    home = tmp_path / 'r sp $(touch "$HEAL_QA_MARK")`touch "$HEAL_QA_MARK"`' / ".heal"
    extra = {"HEAL_QA_MARK": str(marker)}
    try:
        # When heal starts the embedded PostgreSQL on it: the first start (initdb), then,
        # after a stop, the start of the initialized data
        first = _heal(home, "engines", "start", extra=extra)
        assert first.returncode == 0, first.stdout + first.stderr
        stopped = _heal(home, "engines", "stop", extra=extra)
        assert stopped.returncode == 0 and "postgres: stopped" in stopped.stdout, stopped.stderr
        second = _heal(home, "engines", "start", extra=extra)
        assert second.returncode == 0, second.stdout + second.stderr
        # Then the server ran on that very folder both times, and the name never ran
        assert EmbeddedPostgres(home).pid() is not None
        assert not marker.exists()
        assert "Failed postgres command" not in first.stderr + second.stderr
    finally:
        _stop(home)
    assert not marker.exists()


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "home"
    yield path
    _stop(path)


def _innocent() -> subprocess.Popen[bytes]:
    """A process standing in for the one that later got the dead server's pid (as root, of
    the server's own user, as in the QA report)."""
    user = "pgserver" if os.geteuid() == 0 else None
    return subprocess.Popen(["sleep", "300"], user=user, stdin=subprocess.DEVNULL)


def _kill_server_leaving_its_pid_file(home: Path) -> Path:
    server = EmbeddedPostgres(home)
    pid = server.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # as the OOM killer does: postmaster.pid stays
    deadline = time.monotonic() + 30
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pid_file = server.pgdata / "postmaster.pid"
    assert pid_file.exists()
    return pid_file


def _hand_pid_to(pid_file: Path, pid: int) -> None:
    lines = pid_file.read_text().split("\n")
    pid_file.write_text("\n".join([str(pid), *lines[1:]]))


def test_engines_stop_leaves_alone_the_process_a_stale_postmaster_pid_names(home: Path) -> None:
    # Given a server that was SIGKILLed, its postmaster.pid left behind, and its pid since
    # taken by an unrelated process
    started = _heal(home, "engines", "start")
    assert started.returncode == 0, started.stderr
    pid_file = _kill_server_leaving_its_pid_file(home)
    innocent = _innocent()
    try:
        _hand_pid_to(pid_file, innocent.pid)
        # When the engines are stopped
        begun = time.monotonic()
        stopped = _heal(home, "engines", "stop")
        # Then that process got no signal, the stale file is reported and gone, and heal
        # does not claim it stopped a server
        time.sleep(0.2)
        assert innocent.poll() is None, "heal signalled an unrelated process"
        assert stopped.returncode == 0, stopped.stderr
        assert "postgres: not running" in stopped.stdout, stopped.stdout
        assert f"stale postmaster.pid naming pid {innocent.pid}," in stopped.stdout, stopped.stdout
        assert not pid_file.exists()
        assert time.monotonic() - begun < 30
    finally:
        innocent.kill()
        innocent.wait(10)


def test_a_stale_postmaster_pid_naming_a_live_process_does_not_block_the_start(
        home: Path) -> None:
    # Given the same stale postmaster.pid naming a live unrelated process
    started = _heal(home, "engines", "start")
    assert started.returncode == 0, started.stderr
    pid_file = _kill_server_leaving_its_pid_file(home)
    innocent = _innocent()
    try:
        _hand_pid_to(pid_file, innocent.pid)
        # When heal starts the engines again (PostgreSQL itself refused: "another postmaster
        # is running", and heal's status took that pid for a server that does not answer)
        again = _heal(home, "engines", "start")
        # Then a new server runs on the data, and the other process was left alone
        assert again.returncode == 0, again.stdout + again.stderr
        new_pid = EmbeddedPostgres(home).pid()
        assert new_pid is not None and new_pid != innocent.pid
        assert innocent.poll() is None
    finally:
        innocent.kill()
        innocent.wait(10)


def test_a_failing_initdb_says_why_and_names_no_missing_log(home: Path) -> None:
    # Given a data folder initdb refuses (here: not empty, as a full disk makes it fail too)
    pgdata = EmbeddedPostgres(home).pgdata
    pgdata.mkdir(parents=True)
    (pgdata / "left-over").write_text("x")
    # When heal starts the embedded PostgreSQL
    result = _heal(home, "engines", "start")
    # Then it fails with initdb's own words, and names no log file that does not exist
    assert result.returncode == 1, result.stdout + result.stderr
    assert "initdb" in result.stderr and "is not empty" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert f"see {pgdata / 'log'}" not in result.stderr, result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="as root only: the server runs as pgserver then")
def test_as_root_the_folders_above_the_data_get_search_permission_only(tmp_path: Path) -> None:
    """pgserver's permission helper made every folder up to / g+rx,o+rx at each start, so any
    user could list /root, the repository or the folder holding HEAL_HOME. Only what the
    server's user needs is added now: x, on a folder it could not enter."""
    import stat

    # Given a HEAL_HOME under a folder nobody else may enter, one only its group may list,
    # and one everybody may already enter
    private = tmp_path / "private"
    private.mkdir()
    private.chmod(0o700)
    grouped = private / "grouped"
    grouped.mkdir()
    grouped.chmod(0o750)
    entered = grouped / "entered"
    entered.mkdir()
    entered.chmod(0o755)
    home = entered / "home"
    above = [*reversed(tmp_path.parents), tmp_path, private, grouped, entered]
    before = {folder: stat.S_IMODE(folder.stat().st_mode) for folder in above}
    try:
        # When heal starts the embedded PostgreSQL there (initdb, then the server)
        started = _heal(home, "engines", "start")
        assert started.returncode == 0, started.stdout + started.stderr
        assert EmbeddedPostgres(home).pid() is not None
        # Then no folder above the data gained more than o+x: never read or write for others
        for folder, mode in before.items():
            now = stat.S_IMODE(folder.stat().st_mode)
            assert now & ~mode in (0, stat.S_IXOTH), (folder, oct(mode), oct(now))
        assert stat.S_IMODE(private.stat().st_mode) == 0o701
        assert stat.S_IMODE(grouped.stat().st_mode) == 0o751
        assert stat.S_IMODE(entered.stat().st_mode) == 0o755
        # ... the data's own folder is the server user's, 0700
        outside = entered / "home.pg"
        assert stat.S_IMODE(outside.stat().st_mode) == 0o700
        assert outside.stat().st_uid != 0
        # ... and heal said which folder it opened, why, and how to avoid it
        assert f"(o+x: enter it, never list, read or write it) on {private}:" in \
            started.stderr, started.stderr
        assert f"setfacl -m u:pgserver:x {private}" in started.stderr
        # A second start finds nothing to open, and says nothing
        assert _heal(home, "engines", "stop").returncode == 0
        again = _heal(home, "engines", "start")
        assert again.returncode == 0, again.stderr
        assert "o+x" not in again.stderr
    finally:
        _stop(home)


def _socket_dir(home: Path) -> Path:
    url = EmbeddedPostgres(home).url()
    assert url is not None and "host=" in url, url
    return Path(url.split("host=", 1)[1])


@pytest.mark.skipif(os.geteuid() != 0, reason="as root only: the server runs as pgserver then")
def test_as_root_a_symbolic_link_planted_at_the_socket_folder_is_never_followed(
        tmp_path: Path) -> None:
    """QA s12 N1: when PostgreSQL's socket has to leave PGDATA (a space in the path) it goes
    to a hashed folder in /tmp. A local user who put a symbolic link at that name (after /tmp
    was cleaned, or before the first start) had heal chown the link's target to pgserver,
    chmod it 0700 (0777 before) and put the socket there."""
    import stat

    home = tmp_path / "sp ace" / "home"
    victim = tmp_path / "victim"
    victim.mkdir()
    victim.chmod(0o755)
    planted: list[Path] = []
    used: list[Path] = []

    def plant_and_restart() -> subprocess.CompletedProcess[str]:
        # ... a link to another folder put in the place of the socket folder it used
        assert _heal(home, "engines", "stop").returncode == 0
        shutil.rmtree(used[-1])
        used[-1].symlink_to(victim)
        planted.append(used[-1])
        # When heal starts the engines again
        again = _heal(home, "engines", "start")
        # Then the server runs with its socket in another folder, its own, 0700, pgserver's
        assert again.returncode == 0, again.stdout + again.stderr
        used.append(_socket_dir(home))
        assert used[-1] not in planted and used[-1].resolve() != victim, used
        st = os.lstat(used[-1])
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
        assert st.st_uid != 0
        # ... and the link's target is untouched: owner, mode, no socket
        st = victim.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o755)
        assert list(victim.iterdir()) == []
        assert all(link.is_symlink() for link in planted)
        return again

    try:
        # Given a home whose socket goes outside PGDATA (to /tmp), started once
        first = _heal(home, "engines", "start")
        assert first.returncode == 0, first.stdout + first.stderr
        used.append(_socket_dir(home))
        assert not str(used[0]).startswith(str(tmp_path)), used
        # When a link takes its socket folder's name: the other fixed name is used
        plant_and_restart()
        # When links take both fixed names: a fresh folder, and heal says so
        again = plant_and_restart()
        assert f"the socket goes to {used[-1]} instead" in again.stderr, again.stderr
        # And a stop removes that folder and forgets it (none piles up in /tmp); a restart
        # makes a fresh one
        assert _heal(home, "engines", "stop").returncode == 0
        assert not os.path.lexists(used[-1]) and not (home / "pg" / "socket-dir").exists()
        third = _heal(home, "engines", "start")
        assert third.returncode == 0, third.stderr
        used.append(_socket_dir(home))
        assert used[-1] not in used[:-1] and used[-1].parent == used[-2].parent
    finally:
        _stop(home)
        for link in planted:
            link.unlink()
        if len(used) > 2:
            shutil.rmtree(used[-1], ignore_errors=True)
