"""README "Backup and restore", end to end (QA s15c, finding 4): the documented procedure (stop
the engines, archive HEAL_HOME and, as root, ``<HEAL_HOME>.pg`` with ``tar -cpf``; restore by
removing both and extracting the archive) brings back the state as it was: the audit chain
verifies, `heal explain` tells what was learned before the backup and nothing after it, the
signing key is the same, and heal carries on from there.

Runs this checkout's CLI as a subprocess on the engines heal starts itself."""

from __future__ import annotations

import os
import re
import shutil
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

pytestmark = pytest.mark.slow


def heal(home: Path, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
    env.update(HEAL_HOME=str(home), PYTHONPATH=str(ROOT))
    return subprocess.run([*HEAL, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600, check=False)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "state" / "heal"
    yield path
    if path.is_dir():
        stop_engines(Settings.from_env({"HEAL_HOME": str(path)}), force=True)


def failing_run(home: Path, repo: Path, word: str) -> str:
    """A `heal run` of a command that fails in a way heal knows no fix for: a fingerprint,
    an attempt, an issue and an audit record. Returns the fingerprint's short id."""
    done = heal(home, "run", "--timeout", "120", "--", sys.executable, "-c",
                f"import sys; sys.stderr.write('{word} frobnicator exploded'); sys.exit(3)",
                cwd=repo)
    assert done.returncode == 3, done.stderr
    named = re.search(r"\[fingerprint ([0-9a-f]{12}): `heal explain \1`\]", done.stderr)
    assert named, done.stderr
    return named.group(1)


def folders(home: Path) -> list[str]:
    """What the README says to archive: HEAL_HOME and, when it exists (root), <HEAL_HOME>.pg."""
    return [home.name] + ([outside_pg_dir(home).name] if outside_pg_dir(home).exists() else [])


def test_the_documented_backup_restores_the_state_it_was_taken_of(
        home: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    archive = tmp_path / "heal-backup.tar"

    # Given state: a fingerprint heal escalated, its issue, audit records, a signing key
    before = failing_run(home, repo, "qzvebackup")
    signing_key = (home / "keys" / "signing.key").read_bytes()
    if os.geteuid() == 0:
        assert folders(home) == ["heal", "heal.pg"]  # as root the database lives beside

    # When the operator backs up as documented: engines stopped, both folders archived
    assert heal(home, "engines", "stop").returncode == 0
    subprocess.run(["tar", "-C", str(home.parent), "-cpf", str(archive), *folders(home)],
                   check=True)

    # and heal goes on working (more state), then the state is destroyed
    after = failing_run(home, repo, "qzveafter")
    assert heal(home, "explain", after).returncode == 0
    assert heal(home, "engines", "stop").returncode == 0
    for name in folders(home):
        shutil.rmtree(home.parent / name)

    # and restored as documented
    subprocess.run(["tar", "-C", str(home.parent), "-xpf", str(archive)], check=True)

    # Then the audit chain verifies, the state before the backup is there and nothing after it
    verified = heal(home, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "chain intact" in verified.stdout and "file vs table: ok" in verified.stdout
    shown = heal(home, "explain", before)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert before in shown.stdout
    gone = heal(home, "explain", after)
    assert gone.returncode == 1 and "no record" in gone.stdout + gone.stderr
    assert (home / "keys" / "signing.key").read_bytes() == signing_key
    issues = heal(home, "issues", "list")
    assert issues.returncode == 0, issues.stdout + issues.stderr
    assert "qzvebackup" in issues.stdout and "qzveafter" not in issues.stdout, issues.stdout

    # and heal carries on from the restored state
    failing_run(home, repo, "qzvelater")
    again = heal(home, "audit", "verify")
    assert again.returncode == 0, again.stdout + again.stderr
