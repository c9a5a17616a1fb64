"""One state per repository: with HEAL_HOME unset, `heal status` from a subdirectory sees the
state at the repository root, and `git status` stays clean (real CLI, real embedded Redis)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import Settings
from storage.engines import stop_engines

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c",
        "import sys; from pipeline.cli import main; sys.exit(main(sys.argv[1:]))"]


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    root = (tmp_path / "repo").resolve()
    (root / "src" / "deep").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "README").write_text("hello\n")
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=root, check=True)
    yield root
    stop_engines(Settings.from_env({"HEAL_HOME": str(root / ".heal"),
                                    "HEAL_DATABASE_URL": "postgresql://x/db"}), force=True)


def _heal(cwd: Path, env: dict[str, str], *args: str, stdin: str = ""
          ) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
    return subprocess.run([*HEAL, *args], cwd=cwd, input=stdin, capture_output=True, text=True,
                          env={**full, **env, "PYTHONPATH": str(ROOT)}, timeout=180)


def test_status_from_a_subdirectory_sees_the_root_state_and_git_stays_clean(
    repo: Path, database_url: str, prefix: str, tmp_path: Path
) -> None:
    # Given HEAL_HOME unset (embedded Redis) and an error published from the repository root
    env = {"HEAL_DATABASE_URL": database_url, "HEAL_STREAM_PREFIX": prefix,
           "XDG_STATE_HOME": str(tmp_path / "xdg")}
    event = json.dumps({"v": 1, "id": "state-1", "text": "ModuleNotFoundError: No module 'x'"})
    emitted = _heal(repo, env, "emit", stdin=event + "\n")
    assert emitted.returncode == 0, emitted.stderr
    # When `heal status` runs from a subdirectory
    done = _heal(repo / "src" / "deep", env, "status", "--json")
    # Then it uses the root's state and sees the published error
    status = json.loads(done.stdout)
    assert status["state"]["home"] == str(repo / ".heal")
    assert status["state"]["source"] == "repository"
    assert status["streams"][f"{prefix}:errors"]["length"] == 1
    assert (repo / ".heal").is_dir()
    assert not (repo / "src" / "deep" / ".heal").exists()
    # and the human output says which state it uses
    text = _heal(repo / "src", env, "status")
    assert f"state: {repo / '.heal'} (repository {repo}; excluded from git)" in text.stdout
    # and git sees nothing new: .heal/ is in info/exclude, not in .gitignore
    porcelain = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True,
                               text=True, check=True).stdout
    assert porcelain == ""
    assert "/.heal/" in (repo / ".git" / "info" / "exclude").read_text()
    assert not (repo / ".gitignore").exists()


def test_outside_a_repository_the_xdg_state_directory_is_used(
    tmp_path: Path, redis_url: str, database_url: str, prefix: str
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    env = {"HEAL_REDIS_URL": redis_url, "HEAL_DATABASE_URL": database_url,
           "HEAL_STREAM_PREFIX": prefix, "XDG_STATE_HOME": str(tmp_path / "xdg"),
           "GIT_CEILING_DIRECTORIES": str(tmp_path)}
    done = _heal(plain, env, "status", "--json")
    status = json.loads(done.stdout)
    assert status["state"] == {"home": str((tmp_path / "xdg" / "heal").resolve()),
                               "source": "xdg", "describe": status["state"]["describe"]}
    assert "XDG state directory" in status["state"]["describe"]
