"""The audit log's anchors are kept under an id stored beside it (``audit.id``), not under the
host name and path: after HEAL_HOME moves or its host is renamed (a container recreated on
the same volume) a truncated log is still caught by its anchors, and a log written under
the legacy id (host and path) keeps verifying after the upgrade.

Runs this worktree's ``heal`` (``pipeline.cli.main``) as a subprocess with a fresh HEAL_HOME
and the embedded engines, as a user would.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.fingerprint.hashing import ALGORITHM_VERSION as V

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]
#: heal on a host of another name (socket.gethostname patched before heal is imported)
RENAMED = [sys.executable, "-c", "import socket, sys; socket.gethostname = lambda: "
           "'heal-pod-2'; from pipeline.cli import main; sys.exit(main())"]


def _env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"HEAL_REDIS_URL", "HEAL_DATABASE_URL", "HEAL_STREAM_PREFIX",
                        "HEAL_AUDIT_KEY"}}
    env["HEAL_HOME"] = str(home)
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra or {})
    return env


def _heal(home: Path, *args: str, argv: list[str] = HEAL,
          extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*argv, *args], env=_env(home, extra), cwd=home.parent,
                          capture_output=True, text=True, timeout=300, check=False)


def _ignore(home: Path, *names: str) -> None:
    for name in names:  # `heal ignore` audits to the file and the table
        fingerprint = f"{V}:{hashlib.sha256(name.encode()).hexdigest()[:16]}"  # one per name
        done = _heal(home, "ignore", fingerprint, "--reason", "noise")
        assert done.returncode == 0, done.stdout + done.stderr


def _verify(home: Path, argv: list[str] = HEAL) -> tuple[int, str]:
    done = _heal(home, "audit", "verify", argv=argv)
    return done.returncode, done.stdout + done.stderr


def _truncate(home: Path, keep: int) -> None:
    path = home / "audit.jsonl"
    lines = path.read_text().splitlines()
    assert len(lines) > keep
    path.write_text("\n".join(lines[:keep]) + "\n")


class Home:
    """A HEAL_HOME whose embedded engines heal started; ``path`` follows a move."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def move(self, to: Path) -> None:
        """Stop the engines and move HEAL_HOME (and, as root, its PostgreSQL data beside
        it, ``<home>.pg``) to ``to``, as an operator moving the state folder."""
        stopped = _heal(self.path, "engines", "stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        to.parent.mkdir(parents=True, exist_ok=True)
        beside = self.path.parent / f"{self.path.name}.pg"
        shutil.move(self.path, to)
        if beside.exists():
            shutil.move(beside, to.parent / f"{to.name}.pg")
            link = to / "pg" / "data"
            if link.is_symlink():  # it named the old place
                link.unlink()
        self.path = to


@pytest.fixture
def base() -> Iterator[Path]:
    """Not under pytest's basetemp: as root the embedded PostgreSQL's own user must traverse
    every parent of its data, and a concurrent pytest session resets that folder to 0700."""
    folder = Path(tempfile.mkdtemp(prefix="heal-logid-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def home(base: Path) -> Iterator[Home]:
    state = Home(base / "home")
    started = _heal(state.path, "engines", "start")
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield state
    finally:
        _heal(state.path, "engines", "stop", "--force")


def test_a_new_log_gets_a_random_id_of_its_own(home: Home) -> None:
    _ignore(home.path, "fp-id-0")
    ident = (home.path / "audit.id").read_text().strip()
    assert socket.gethostname() not in ident and str(home.path) not in ident, ident
    assert (home.path / "audit.id").stat().st_mode & 0o777 == 0o600
    code, out = _verify(home.path)
    assert code == 0, out
    assert "file vs table: ok, 1 record(s)" in out, out


def test_a_moved_home_still_catches_a_truncated_log(home: Home, base: Path) -> None:
    _ignore(home.path, "fp-move-0", "fp-move-1", "fp-move-2")
    home.move(base / "elsewhere" / "home")
    code, out = _verify(home.path)
    assert code == 0, out
    assert "file vs table: ok, 3 record(s)" in out, out
    # Given an attacker who removes the last records of the moved log
    _truncate(home.path, 1)
    code, out = _verify(home.path)
    assert code == 1, out
    assert "truncated" in out and "anchored at record 3" in out, out


def test_a_renamed_host_still_catches_a_truncated_log(home: Home) -> None:
    _ignore(home.path, "fp-host-0", "fp-host-1", "fp-host-2")
    code, out = _verify(home.path, RENAMED)
    assert code == 0, out
    assert "file vs table: ok, 3 record(s)" in out, out
    _truncate(home.path, 1)
    code, out = _verify(home.path, RENAMED)
    assert code == 1, out
    assert "truncated" in out and "anchored at record 3" in out, out


def _legacy_home(home: Home) -> str:
    """Records anchored under the legacy id (host and path) and no id file, as a heal made
    before logs had ids leaves them; returns that id."""
    legacy = f"{socket.gethostname()}:{(home.path / 'audit.jsonl').resolve()}"
    ident = home.path / "audit.id"
    fd = os.open(ident, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, legacy.encode() + b"\n")
    os.close(fd)
    _ignore(home.path, "fp-old-0", "fp-old-1", "fp-old-2")
    ident.unlink()
    return legacy


def test_a_log_written_under_the_legacy_id_keeps_verifying_and_catches_truncation(
        home: Home) -> None:
    legacy = _legacy_home(home)
    code, out = _verify(home.path)
    assert code == 0, out
    assert "file vs table: ok, 3 record(s)" in out, out
    assert not (home.path / "audit.id").exists()  # verify writes nothing
    # the upgraded heal's first append adopts the legacy id: the old anchors still count
    _ignore(home.path, "fp-old-3")
    assert (home.path / "audit.id").read_text().strip() == legacy
    code, out = _verify(home.path)
    assert code == 0, out
    assert "file vs table: ok, 4 record(s)" in out, out
    _truncate(home.path, 2)
    code, out = _verify(home.path)
    assert code == 1, out
    assert "truncated" in out and "anchored at record 4" in out, out


def test_a_legacy_log_moved_before_the_upgrade_finds_its_anchors_by_their_head(
        home: Home, base: Path) -> None:
    legacy = _legacy_home(home)
    home.move(base / "elsewhere" / "home")
    code, out = _verify(home.path)
    assert code == 0, out
    assert "file vs table: ok, 3 record(s)" in out and legacy in out, out
    _ignore(home.path, "fp-old-3")  # adopted: the head it holds is that id's
    assert (home.path / "audit.id").read_text().strip() == legacy
    _truncate(home.path, 1)
    code, out = _verify(home.path)
    assert code == 1, out
    assert "truncated" in out and "anchored at record 4" in out, out


def test_a_legacy_log_truncated_on_a_renamed_host_is_not_anchored(home: Home) -> None:
    legacy = _legacy_home(home)
    _truncate(home.path, 1)
    code, out = _verify(home.path, RENAMED)
    assert code == 1, out
    assert "NOT ANCHORED" in out and legacy in out and "ok, 0 record(s)" not in out, out


def test_a_truncated_log_whose_id_file_was_deleted_is_caught_and_not_appended_to(
        home: Home) -> None:
    _ignore(home.path, "fp-del-0", "fp-del-1", "fp-del-2")
    ident = (home.path / "audit.id").read_text().strip()
    # Given an attacker who truncates the log and deletes its id file
    _truncate(home.path, 1)
    (home.path / "audit.id").unlink()
    code, out = _verify(home.path)
    assert code == 1, out
    assert "NOT ANCHORED" in out and ident in out and "ok, 0 record(s)" not in out, out
    # heal takes no new id for it (which would leave the old anchors unchecked)
    done = _heal(home.path, "ignore", f"{V}:35c7f04a565cadb3", "--reason", "noise")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no id file" in done.stdout + done.stderr and ident in done.stdout + done.stderr
    assert not (home.path / "audit.id").exists()
    assert len((home.path / "audit.jsonl").read_text().splitlines()) == 1


def test_a_deleted_log_and_id_file_are_caught_by_the_homes_own_engines(home: Home) -> None:
    _ignore(home.path, "fp-gone-0")
    ident = (home.path / "audit.id").read_text().strip()
    (home.path / "audit.jsonl").unlink()
    (home.path / "audit.id").unlink()
    code, out = _verify(home.path)
    assert code == 1, out
    assert "deleted" in out and ident in out, out


# -- QA s15d: whoever can write HEAL_HOME deletes or truncates the log and deletes or
# rewrites audit.id; the locator (the id this host and path last anchored, in Redis) still
# tells which log lived here


def test_a_deleted_log_and_id_file_start_no_silent_new_chain(home: Home) -> None:
    _ignore(home.path, "fp-loc-0", "fp-loc-1", "fp-loc-2")
    ident = (home.path / "audit.id").read_text().strip()
    (home.path / "audit.jsonl").unlink()
    (home.path / "audit.id").unlink()
    # the next command appends nothing under a new id (which hid the deletion)
    done = _heal(home.path, "ignore", f"{V}:fdb2875a13ef4a10", "--reason", "noise")
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert ident in out and "heal audit restart" in out, out
    assert not (home.path / "audit.jsonl").exists() and not (home.path / "audit.id").exists()
    code, out = _verify(home.path)
    assert code == 1, out
    assert "TAMPERED" in out and ident in out, out


def test_a_truncated_log_with_a_fresh_id_file_is_caught_and_not_appended_to(
        home: Home) -> None:
    _ignore(home.path, "fp-fresh-0", "fp-fresh-1", "fp-fresh-2", "fp-fresh-3")
    ident = (home.path / "audit.id").read_text().strip()
    # Given an attacker who truncates the log and writes a fresh id beside it
    _truncate(home.path, 2)
    (home.path / "audit.id").write_text("0123456789abcdef0123456789abcdef\n")
    done = _heal(home.path, "ignore", f"{V}:2b2c7ad6aa0a280c", "--reason", "noise")
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert ident in out and "up to record 4" in out, out
    assert len((home.path / "audit.jsonl").read_text().splitlines()) == 2
    code, out = _verify(home.path)
    assert code == 1, out
    assert "ok, 2 record(s)" not in out and ident in out and "up to record 4" in out, out


def test_with_external_engines_a_deleted_log_and_id_file_fail_verify(
        base: Path, redis_url: str, database_url: str) -> None:
    """The shipped compose setup: HEAL_REDIS_URL and HEAL_DATABASE_URL name servers of
    their own (here the session's, shared with other tests' logs), one HEAL_HOME."""
    home = base / "home"
    extra = {"HEAL_REDIS_URL": redis_url, "HEAL_DATABASE_URL": database_url,
             "HEAL_STREAM_PREFIX": f"loc{uuid.uuid4().hex[:8]}"}
    for name in (f"{V}:{0:016x}", f"{V}:{1:016x}"):
        done = _heal(home, "ignore", name, "--reason", "noise", extra=extra)
        assert done.returncode == 0, done.stdout + done.stderr
    ident = (home / "audit.id").read_text().strip()
    (home / "audit.jsonl").unlink()
    (home / "audit.id").unlink()
    done = _heal(home, "audit", "verify", extra=extra)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "no audit log yet" not in out and "TAMPERED" in out and ident in out, out
    done = _heal(home, "ignore", f"{V}:03a1f1787b2c10c4", "--reason", "noise", extra=extra)
    assert done.returncode == 2, done.stdout + done.stderr
    # a deliberate fresh start is recorded where a file writer cannot, and verify says so
    done = _heal(home, "audit", "restart", "--reason", "disk lost", extra=extra)
    assert done.returncode == 0, done.stdout + done.stderr
    done = _heal(home, "ignore", f"{V}:1cde2f56f07e2451", "--reason", "noise", extra=extra)
    assert done.returncode == 0, done.stdout + done.stderr
    done = _heal(home, "audit", "verify", extra=extra)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert f"retired log: {ident} was retired by `heal audit restart`" in out, out
    assert "disk lost" in out, out


def test_heal_audit_restart_records_a_deliberate_fresh_start(home: Home) -> None:
    _ignore(home.path, "fp-rs-0", "fp-rs-1")
    ident = (home.path / "audit.id").read_text().strip()
    (home.path / "audit.jsonl").unlink()
    (home.path / "audit.id").unlink()
    done = _heal(home.path, "audit", "restart", "--reason", "the disk was replaced")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert f"retired the log {ident} (head 2)" in out, out
    new = (home.path / "audit.id").read_text().strip()
    assert new != ident and (home.path / "audit.id").stat().st_mode & 0o777 == 0o600
    first = (home.path / "audit.jsonl").read_text().splitlines()
    assert len(first) == 1 and '"kind":"audit.restart"' in first[0] and ident in first[0]
    _ignore(home.path, "fp-rs-2")
    code, out = _verify(home.path)
    assert code == 0, out
    assert f"retired log: {ident} was retired by `heal audit restart`" in out, out
    # the restarted log is guarded like any other: truncating it is caught
    _truncate(home.path, 1)
    code, out = _verify(home.path)
    assert code == 1, out


#: heal whose Redis refuses every script (the anchors and the locator are written by one):
#: a connection dropped just then, as by a Redis restarting
NO_SCRIPTS = [sys.executable, "-c", "import sys, redis\n"
              "def refused(self, *args, **kwargs):\n"
              "    raise redis.exceptions.ConnectionError('Connection reset by peer')\n"
              "redis.Redis.eval = refused\n"
              "from pipeline.cli import main; sys.exit(main())"]


def test_a_restart_whose_new_log_was_never_anchored_is_not_blamed_for_the_retired_one(
        home: Home) -> None:
    """`heal audit restart` with PostgreSQL unreachable and Redis dropping its scripts: the
    retirement is recorded (a plain SET) but the new log has no anchor anywhere and the
    locator still names the retired log. The next command must not take the restarted log
    for the retired one deleted ("deleted or truncated"): the retirement says it was not."""
    _ignore(home.path, "fp-rn-0", "fp-rn-1")
    ident = (home.path / "audit.id").read_text().strip()
    (home.path / "audit.jsonl").unlink()
    (home.path / "audit.id").unlink()
    done = _heal(home.path, "audit", "restart", "--reason", "disk replaced", argv=NO_SCRIPTS,
                 extra={"HEAL_DATABASE_URL":
                        f"postgresql://postgres@/postgres?host={home.path.parent}/nopg"})
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert f"retired the log {ident} (head 2)" in out, out
    assert "audit head not anchored in Redis" in out, out
    done = _heal(home.path, "ignore", f"{V}:a42be461cb52dd42", "--reason", "noise")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert len((home.path / "audit.jsonl").read_text().splitlines()) == 2
    code, out = _verify(home.path)
    assert code == 0, out
    assert f"retired log: {ident} was retired by `heal audit restart`" in out, out


def test_verify_with_no_witness_reachable_says_the_head_was_not_checked(home: Home) -> None:
    _ignore(home.path, "fp-none-0", "fp-none-1", "fp-none-2")
    _truncate(home.path, 1)
    done = _heal(home.path, "audit", "verify", extra={
        "HEAL_REDIS_URL": f"unix://{home.path.parent}/nonexistent.sock",
        "HEAL_DATABASE_URL": f"postgresql://postgres@/postgres?host={home.path.parent}/nopg"})
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "head not checked: witnesses unreachable" in out, out
    assert "skipped" in out, out


def test_the_table_anchor_name_is_refused_as_a_log_id(home: Home) -> None:
    _ignore(home.path, "fp-res-0")
    (home.path / "audit.id").write_text("postgres:audit_log\n")
    done = _heal(home.path, "ignore", f"{V}:9a096f3d68aa60f1", "--reason", "noise")
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert "'postgres:audit_log'" in out and "not an id heal gives a log" in out, out
    assert len((home.path / "audit.jsonl").read_text().splitlines()) == 1
    code, out = _verify(home.path)
    assert code == 2, out
    assert "not an id heal gives a log" in out, out


@pytest.mark.parametrize("edited", ["host:/x\nsecond line\n", "host:/x\x1b[2J\n"],
                         ids=["two-lines", "escape"])
def test_an_id_file_holding_more_than_one_printable_line_is_refused(
        home: Home, edited: str) -> None:
    """Shaped like a legacy id (``host:/...``) but holding a second line or a control
    character: not one id; refused (exit 2) saying what to change, nothing appended."""
    _ignore(home.path, "fp-line-0")
    (home.path / "audit.id").write_text(edited)
    done = _heal(home.path, "ignore", f"{V}:a76a2d5508bdd0d1", "--reason", "noise")
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert "does not hold one id (one printable line" in out and "put back the id" in out, out
    assert "\x1b" not in out, out
    assert len((home.path / "audit.jsonl").read_text().splitlines()) == 1


def test_a_new_home_where_a_moved_one_lived_is_not_blamed(
        base: Path, redis_url: str, database_url: str) -> None:
    """External engines (the only ones a home at another path shares): the first append of
    the moved home drops the old place's locator, so a new home made there starts its own."""
    old = base / "home"
    extra = {"HEAL_REDIS_URL": redis_url, "HEAL_DATABASE_URL": database_url,
             "HEAL_STREAM_PREFIX": f"loc{uuid.uuid4().hex[:8]}"}
    for name in (f"{V}:{0:016x}", f"{V}:{1:016x}"):
        assert _heal(old, "ignore", name, "--reason", "n", extra=extra).returncode == 0
    moved = base / "elsewhere" / "home"
    moved.parent.mkdir()
    shutil.move(old, moved)
    done = _heal(moved, "ignore", f"{V}:5f3fddeb0c446c51", "--reason", "n", extra=extra)
    assert done.returncode == 0, done.stdout + done.stderr
    done = _heal(old, "ignore", f"{V}:129bda216062c2bf", "--reason", "n", extra=extra)
    assert done.returncode == 0, done.stdout + done.stderr
    for where in (moved, old):
        done = _heal(where, "audit", "verify", extra=extra)
        assert done.returncode == 0, done.stdout + done.stderr
