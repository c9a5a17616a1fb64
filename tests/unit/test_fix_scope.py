"""pipeline.fixes.scope: which of a failing command's words reach a formatter/linter fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.fixes.render import FixSpec
from pipeline.fixes.scope import scoped
from pipeline.model import Category, FixKind

FIX = {"argv": ["ruff", "check", "--fix", "."], "scope_of": [["ruff", "check"]]}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "calc").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "a.py").write_text("")
    return tmp_path


@pytest.mark.parametrize(("command", "argv_tail"), [
    (["ruff", "check", "calc", "tests"], ["--", "calc", "tests"]),
    (["ruff", "check"], ["--", "."]),
    (["/venv/bin/ruff", "check", "--select", "F401", "calc"], ["--", "calc"]),
    (["ruff", "check", "--config=evil.toml", "--fix", "calc"], ["--", "calc"]),
    (["black", "--check", "-q", "calc"], ["--", "calc"]),
    (["python3", "-m", "ruff", "check", "calc"], ["--", "calc"]),
    (["uv", "run", "ruff", "check", "a.py"], ["--", "a.py"]),
    (["bash", "-c", "ruff check 'calc'"], ["--", "calc"]),
    (["ruff", "check", "--", "-x-", "calc"], None),  # "-x-" does not exist: held
])
def test_the_checked_paths_replace_the_dot(root: Path, command: list[str],
                                           argv_tail: list[str] | None) -> None:
    fix = {**FIX, "scope_of": [["ruff", "check"], ["black"]]}
    rendered, held = scoped(fix, command, root, root)
    if argv_tail is None:
        assert held and rendered["argv"][-1] == "."
    else:
        assert not held and rendered["argv"] == ["ruff", "check", "--fix", *argv_tail]


def test_an_absolute_path_under_the_working_directory_is_made_relative(root: Path) -> None:
    rendered, held = scoped(FIX, ["ruff", "check", str(root / "calc")], root, root)
    assert not held and rendered["argv"][-2:] == ["--", "calc"]


@pytest.mark.parametrize("command", [
    [], ["make", "lint"], ["ruff", "format", "calc"], ["ruff", "check", "../x"],
    ["ruff", "check", "/etc"], ["ruff", "check", "-"], ["ruff", "check", "nothere"],
    ["bash", "-c", "ruff check $DIR"], ["bash", "-c", "ruff check calc; rm -rf x"],
    ["bash", "-c", "ruff check *"], ["ruff", "check", "out"],
    ["ruff", "check", "--exclude", "tests", "calc"], ["ruff", "check", "--config", "a.py"],
])
def test_an_unknown_scope_keeps_the_dot_and_is_held(root: Path, command: list[str]) -> None:
    (root / "out").symlink_to(root.parent)
    rendered, held = scoped(FIX, command, root, root)
    assert rendered == FIX and "not applied by itself" in held


def test_a_fix_without_scope_of_is_left_alone(root: Path) -> None:
    fix = {"argv": ["go", "mod", "tidy"]}
    assert scoped(fix, [], root, root) == (fix, "")


@pytest.mark.parametrize("template", [
    {"argv": ["ruff", "check", "--fix"], "scope_of": [["ruff", "check"]]},
    {"argv": ["ruff", "check", "--fix", "."], "scope_of": "ruff"},
    {"argv": ["ruff", "check", "--fix", "."], "scope_of": [[]]},
])
def test_a_malformed_scope_of_is_refused_with_what_to_change(template: dict[str, object]
                                                            ) -> None:
    spec = FixSpec("p/fix", "p", FixKind.COMMAND, Category.SAFE, "t", "e", template)
    with pytest.raises(ConfigError, match="scope_of"):
        spec.check_template()
