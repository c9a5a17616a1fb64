"""The default state home: the git root's .heal (excluded via info/exclude), else XDG."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pipeline import statehome
from pipeline.config import Settings


def _repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path.resolve()


def test_heal_home_wins(tmp_path: Path) -> None:
    found = statehome.resolve({"HEAL_HOME": str(tmp_path / "h")}, str(tmp_path))
    assert found.path == (tmp_path / "h").resolve() and found.source == "HEAL_HOME"


def test_every_subdirectory_of_a_repository_shares_the_root_state(tmp_path: Path) -> None:
    root = _repo(tmp_path / "repo")
    sub = root / "a" / "b"
    sub.mkdir(parents=True)
    at_root = statehome.resolve({}, str(root))
    below = statehome.resolve({}, str(sub))
    assert at_root == below
    assert below.path == root / ".heal" and below.source == "repository" and below.root == root


def test_outside_a_repository_the_xdg_state_directory_is_used(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    found = statehome.resolve({"XDG_STATE_HOME": str(tmp_path / "xdg")}, str(plain))
    assert found.path == (tmp_path / "xdg" / "heal").resolve() and found.source == "xdg"
    default = statehome.resolve({"HOME": str(tmp_path / "me")}, str(plain))
    assert default.path == (tmp_path / "me" / ".local" / "state" / "heal").resolve()


def test_exclusion_goes_to_info_exclude_once_and_never_to_gitignore(tmp_path: Path) -> None:
    root = _repo(tmp_path / "repo")
    found = statehome.resolve({}, str(root))
    assert statehome.exclude_from_git(found) is True
    assert statehome.exclude_from_git(found) is False  # idempotent
    exclude = (root / ".git" / "info" / "exclude").read_text()
    assert exclude.count("/.heal/") == 1 and exclude.count("/.heal.pg/") == 1
    assert not (root / ".gitignore").exists()
    (root / ".heal").mkdir()
    (root / ".heal" / "data").write_text("x")
    (root / ".heal.pg").mkdir()  # the embedded PostgreSQL's data when heal runs as root
    (root / ".heal.pg" / "PG_VERSION").write_text("18")
    porcelain = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True,
                               text=True, check=True).stdout
    assert porcelain == ""


def test_settings_name_the_source(tmp_path: Path) -> None:
    root = _repo(tmp_path / "repo")
    settings = Settings.from_env({}, cwd=str(root))
    assert settings.home == root / ".heal" and settings.home_source == "repository"
    assert str(root) in settings.describe_home() and "excluded from git" in settings.describe_home()
