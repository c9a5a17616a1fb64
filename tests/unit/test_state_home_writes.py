"""A full or unwritable HEAL_HOME met while taking an engine's lease is the user's to fix: a
message naming HEAL_HOME, the file and what to do (StateHomeFull exit 1, ConfigError exit 2),
never "internal error: OSError". tests/integration/test_state_home_full.py fills a real disk."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pipeline.cli import _disk_problem
from pipeline.errors import ConfigError, StateHomeFull
from storage import engines
from storage.leases import LeaseRegistry


class _FakeEngine:
    """An embedded engine that is already running: only its leases are written."""

    def __init__(self, home: Path) -> None:
        self.directory = home / "redis"
        self.leases = LeaseRegistry(self.directory)

    def ensure_running(self) -> str:
        return "unix:///nowhere.sock"

    def stop(self) -> bool:
        return False

    def pid(self) -> int | None:
        return None


def _failing_write(code: int) -> object:
    def write(path: Path, text: str) -> None:
        raise OSError(code, os.strerror(code))
    return write


def test_a_full_disk_while_writing_the_lease_names_home_and_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a HEAL_HOME whose file system is full when the lease file is written
    monkeypatch.setattr("storage.leases._write_private", _failing_write(errno.ENOSPC))
    home = tmp_path / "home"
    # When a process takes the engine's lease
    with pytest.raises(StateHomeFull) as info:
        engines._acquire(_FakeEngine(home))
    # Then the message names HEAL_HOME, the lease folder and what to do; exit 1
    message = str(info.value)
    assert f"no space left in HEAL_HOME={home}" in message
    assert str(home / "redis" / "users") in message
    assert "free space on that file system, or set HEAL_HOME" in message
    assert info.value.exit_code == 1


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS, errno.EPERM])
def test_an_unwritable_lease_folder_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    monkeypatch.setattr("storage.leases._write_private", _failing_write(code))
    with pytest.raises(ConfigError) as info:
        engines._acquire(_FakeEngine(tmp_path / "home"))
    assert f"HEAL_HOME={tmp_path / 'home'}" in str(info.value)
    assert "set HEAL_HOME to a folder heal may create and write" in str(info.value)
    assert info.value.exit_code == 2


def test_other_os_errors_are_not_dressed_up(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("storage.leases._write_private", _failing_write(errno.EIO))
    with pytest.raises(OSError) as info:
        engines._acquire(_FakeEngine(tmp_path / "home"))
    assert info.value.errno == errno.EIO


def test_an_untranslated_full_disk_is_no_internal_error() -> None:
    message = _disk_problem(OSError(errno.ENOSPC, "No space left on device", "/x/y"))
    assert message.startswith("No space left on device (/x/y): free space")
    assert _disk_problem(OSError(errno.EIO, "I/O error")) == ""
    assert _disk_problem(ValueError("no")) == ""


@pytest.mark.parametrize(("said", "full"), [
    ("could not write init file: No space left on device", True),
    ("could not extend file: Disk quota exceeded", True),
    ("the database system is shutting down", False),
])
def test_the_postgresql_status_line_says_free_space_on_a_full_disk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, said: str, full: bool) -> None:
    """QA s15d #10: with HEAL_HOME full, the embedded PostgreSQL refused new connections
    ("could not write init file: No space left on device") and `heal status` advised "run
    `heal engines stop`", which frees nothing, where the Redis line of the same output said
    to free space (the same recognition, storage.embedded.says_no_space, is used for both).
    The server's refusal is raised here as asyncpg raises it (a full tmpfs did not make a
    real server refuse reliably)."""
    import asyncpg

    from pipeline.config import Settings

    async def refused(url: str) -> tuple[str, str]:
        raise asyncpg.exceptions.InternalServerError(said)

    monkeypatch.setattr(engines, "database_url", lambda settings: "postgresql://x@/postgres")
    monkeypatch.setattr(engines, "_pg_versions", refused)
    home = tmp_path / "home"
    info = engines._postgres_info(Settings(None, None, home, "heal"), start=True)
    assert engines.engine_label(info) == "UNREACHABLE"
    if full:
        assert info["error"].startswith(f"no space left in HEAL_HOME={home}: the embedded "
                                        "PostgreSQL under "), info
        assert said in info["error"] and "free space on that file system" in info["error"]
        assert "heal engines stop" not in info["error"]
    else:
        assert "run `heal engines stop`" in info["error"], info
