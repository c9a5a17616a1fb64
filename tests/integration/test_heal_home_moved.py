"""A HEAL_HOME moved without its database (QA s15c, finding 1). As root the embedded
PostgreSQL's data lives beside the home (``<HEAL_HOME>.pg``) and ``HEAL_HOME/pg/data`` is a link
to it; a home moved alone had heal run ``initdb`` beside it and carry on, exit 0, with an empty
database (every pattern, fix and issue "gone", the history split in two). heal now refuses,
exit 2, naming both folders and what to do; moved as told, the data is there.

Runs this checkout's CLI as a subprocess on the engines heal starts itself."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.homedir import outside_pg_dir
from storage.engines import stop_engines

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="PostgreSQL's data lives beside HEAL_HOME "
                       "only as root (pipeline/homedir.py pg_data_inside); not root here"),
]


def heal(home: Path, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
    env.update(HEAL_HOME=str(home), PYTHONPATH=str(ROOT))
    return subprocess.run([*HEAL, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600, check=False)


def stop(home: Path) -> None:
    stop_engines(Settings.from_env({"HEAL_HOME": str(home)}), force=True)


@pytest.fixture
def homes(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    old, new = tmp_path / "home", tmp_path / "moved" / "home"
    yield old, new
    for home in (old, new):
        if home.is_dir():
            stop(home)


def failing_run(home: Path, repo: Path, word: str) -> str:
    """A `heal run` of a command that fails in a way heal knows no fix for: a fingerprint,
    an attempt and an issue in the database. Returns the fingerprint's short id."""
    done = heal(home, "run", "--timeout", "120", "--", sys.executable, "-c",
                f"import sys; sys.stderr.write('{word} frobnicator exploded'); sys.exit(3)",
                cwd=repo)
    assert done.returncode == 3, done.stderr
    named = re.search(r"\[fingerprint ([0-9a-f]{12}): `heal explain \1`\]", done.stderr)
    assert named, done.stderr
    return named.group(1)


def test_a_heal_home_moved_without_its_database_is_refused_then_works_moved_as_told(
        homes: tuple[Path, Path], tmp_path: Path) -> None:
    old, new = homes
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    # Given a home as root with state in its database (beside it, <home>.pg), engines stopped
    fingerprint = failing_run(old, repo, "qzvemoved")
    assert (old / "pg" / "data").is_symlink()
    assert (outside_pg_dir(old) / "data" / "PG_VERSION").is_file()
    assert heal(old, "engines", "stop").returncode == 0

    # When the operator moves HEAL_HOME alone and runs heal there
    new.parent.mkdir()
    old.rename(new)
    refused = heal(new, "status")
    again = heal(new, "explain", fingerprint)

    # Then heal refuses (exit 2) naming where the data is and where it belongs, and made no
    # empty database beside the moved home
    for done in (refused, again):
        assert done.returncode == 2, done.stdout + done.stderr
        assert str(outside_pg_dir(old) / "data") in done.stderr
        assert f"move {outside_pg_dir(old)} to {outside_pg_dir(new)}" in done.stderr
        assert f"remove the link {new / 'pg' / 'data'}" in done.stderr
        assert "Traceback" not in done.stderr
    assert not outside_pg_dir(new).exists()
    assert (outside_pg_dir(old) / "data" / "PG_VERSION").is_file()
    info = heal(new, "engines", "info")
    assert info.returncode == 0 and "was HEAL_HOME moved without it?" in info.stdout

    # When the database folder is moved beside the home, as told
    outside_pg_dir(old).rename(outside_pg_dir(new))
    shown = heal(new, "explain", fingerprint)

    # Then the state is there, and the link names the data beside the home
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert fingerprint in shown.stdout
    assert os.readlink(new / "pg" / "data") == str(outside_pg_dir(new) / "data")
    assert heal(new, "status").returncode == 0


def test_a_moved_home_whose_database_is_gone_is_refused_and_removing_the_link_starts_afresh(
        homes: tuple[Path, Path]) -> None:
    old, new = homes
    # Given a home as root whose database was then lost (not moved along, not restored)
    assert heal(old, "engines", "start").returncode == 0
    assert heal(old, "engines", "stop").returncode == 0
    new.parent.mkdir()
    old.rename(new)
    outside_pg_dir(old).rename(old.parent / "elsewhere.pg")

    # When heal starts there: refused, naming the missing folder and where to restore it
    refused = heal(new, "status")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "which is gone" in refused.stderr
    assert f"restore that folder ({outside_pg_dir(old)}) to {outside_pg_dir(new)}" in \
        refused.stderr
    assert not outside_pg_dir(new).exists()

    # When the operator removes the link, deliberately: a fresh database
    (new / "pg" / "data").unlink()
    assert heal(new, "status").returncode == 0
    assert (outside_pg_dir(new) / "data" / "PG_VERSION").is_file()
