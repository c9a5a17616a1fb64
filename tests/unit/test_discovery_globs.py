"""Log discovery: default globs, pruned directories, heal.toml [backfill] and extra globs."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from pipeline.errors import PolicyError, UsageError
from pipeline.policy import load_policy, parse_policy
from producers.discovery import DEFAULT_GLOBS, configured, discover, human_size, matches


def _write(root: Path, rel: str, data: bytes = b"ERROR boom\n") -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for rel in ("app.log", "logs/worker.txt", "logs/old/app.log.1", "build/logs/ci.out",
                "svc/api/server.log", "svc/api/server.log.12", ".tox/py311/log/1-commands.log",
                "vendor/lib/vendored.log", "fixtures/sample.log",
                # never: VCS, virtualenvs, dependencies, heal's own home, binaries, sources
                ".git/logs/HEAD.log", ".venv/lib/pip.log", "node_modules/pkg/npm.log",
                ".healhome/audit.log", "src/main.py", "notes.md"):
        _write(root, rel)
    _write(root, "core.log", b"\x7fELF\x00\x00binary")
    (root / "svc/api/server.log.gz").write_bytes(gzip.compress(b"ERROR zipped\n"))
    (root / "logs/bundle.tar.gz").write_bytes(gzip.compress(b"app.log\0\0\0ustar"))
    (root / "logs/broken.log.gz").write_bytes(b"\x1f\x8bnot really gzip")
    return root


def _rel(root: Path, found: list) -> list[str]:  # type: ignore[type-arg]
    return [f.path.relative_to(root).as_posix() for f in found]


def test_default_globs_find_logs_and_skip_what_is_not_the_projects(repo: Path) -> None:
    found = discover(repo, DEFAULT_GLOBS, home=repo / ".healhome")
    assert _rel(repo, found) == [
        ".tox/py311/log/1-commands.log",
        "app.log",
        "build/logs/ci.out",
        "fixtures/sample.log",
        # a damaged .gz is kept: backfill names it as damaged (exit 1), never drops it unsaid
        "logs/broken.log.gz",
        "logs/old/app.log.1",
        "logs/worker.txt",
        "svc/api/server.log",
        "svc/api/server.log.12",
        "svc/api/server.log.gz",
        "vendor/lib/vendored.log",
    ]
    assert all(f.size > 0 for f in found)


def test_excludes_are_directory_names_or_globs(repo: Path) -> None:
    found = discover(repo, DEFAULT_GLOBS, exclude=["vendor", "fixtures/**", "**/*.log.12"],
                     home=repo / ".healhome")
    rel = _rel(repo, found)
    assert "vendor/lib/vendored.log" not in rel
    assert "fixtures/sample.log" not in rel
    assert "svc/api/server.log.12" not in rel
    assert "svc/api/server.log" in rel


def test_heal_toml_replaces_the_globs_and_cli_globs_add_to_them(repo: Path) -> None:
    (repo / "heal.toml").write_text('[backfill]\npaths = ["svc/**/*.log"]\n'
                                    'exclude = ["api"]\n')
    globs, exclude = configured(repo, ["notes.md"])
    assert globs == ("svc/**/*.log", "notes.md")
    assert exclude == ("api",)
    assert _rel(repo, discover(repo, globs, exclude)) == ["notes.md"]


def test_glob_semantics() -> None:
    assert matches("a/b/c.log", ["**/*.log"]) and matches("c.log", ["**/*.log"])
    assert not matches("a/c.log", ["*.log"])
    assert matches("logs/x/y", ["logs/**"]) and not matches("xlogs/y", ["logs/**"])
    assert matches("x.log.3", ["**/*.log.[0-9]"]) and not matches("x.log.a", ["**/*.log.[0-9]"])


def test_bad_input_is_reported_clearly(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a directory"):
        discover(tmp_path / "missing")
    with pytest.raises(UsageError, match="unclosed"):
        discover(tmp_path, ["logs/[ab"])


@pytest.mark.parametrize(("toml", "message"), [
    ({"backfill": {"paths": "logs/**"}}, 'backfill.paths = "logs/\\*\\*": must be a list'),
    ({"backfill": {"exclude": [""]}}, "backfill.exclude"),
    ({"backfill": {"globs": []}}, "backfill.globs = \\[\\]: unknown key; allowed: exclude, paths"),
    ({"backfill": []}, "backfill = \\[\\]: must be a table"),
])
def test_policy_validates_the_backfill_table(toml: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(PolicyError, match=message):
        parse_policy(toml)


def test_policy_defaults_leave_discovery_to_the_built_in_globs(tmp_path: Path) -> None:
    policy = load_policy(tmp_path / "heal.toml")
    assert policy.backfill_paths == () and policy.backfill_exclude == ()
    assert configured(tmp_path) == (DEFAULT_GLOBS, ())


def test_human_size() -> None:
    assert human_size(12) == "12 B"
    assert human_size(2048) == "2.0 KB"
    assert human_size(5 * 1024 * 1024) == "5.0 MB"
