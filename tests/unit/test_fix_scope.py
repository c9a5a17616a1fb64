"""pipeline.fixes.scope: which of a failing command's words reach a formatter/linter fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.fixes.render import FixSpec
from pipeline.fixes.scope import scoped
from pipeline.model import Category, FixKind

FIX = {"argv": ["ruff", "check", "--fix", "."], "scope_of": [["ruff", "check"]]}
ALL = [["ruff", "check"], ["ruff", "format"], ["black"], ["isort"]]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "calc").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "a.py").write_text("")
    return tmp_path


@pytest.mark.parametrize(("command", "argv_tail"), [
    (["ruff", "check", "calc", "tests"], ["--", "calc", "tests"]),
    (["ruff", "check"], ["--", "."]),
    (["/venv/bin/ruff", "check", "-q", "--no-cache", "calc"], ["--", "calc"]),
    (["ruff", "check", "--output-format=github", "--show-fixes", "calc"], ["--", "calc"]),
    (["ruff", "check", "--output-format", "concise", "calc"], ["--", "calc"]),
    (["ruff", "check", "--output-format", "calc"], ["--", "."]),  # calc is the format
    (["ruff", "format", "--check", "--diff", "-n"], ["--", "."]),
    (["ruff", "check", "--", "."], ["--", "."]),
    (["black", "--check", "-q", "calc"], ["--", "calc"]),
    (["isort", "--check-only", "--diff", "a.py"], ["--", "a.py"]),
    (["python3", "-m", "ruff", "check", "calc"], ["--", "calc"]),
    (["uv", "run", "ruff", "check", "a.py"], ["--", "a.py"]),
    (["bash", "-c", "ruff check 'calc'"], ["--", "calc"]),
    (["ruff", "check", "--", "-x-", "calc"], None),  # "-x-" does not exist: held
])
def test_the_checked_paths_replace_the_dot(root: Path, command: list[str],
                                           argv_tail: list[str] | None) -> None:
    fix = {**FIX, "scope_of": ALL}
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


@pytest.mark.parametrize("command", [
    # QA s14c D1/D2: any option outside the tool's output-only allow-list, in any form
    ["ruff", "check", "--extend-exclude=calc/legacy.py", "calc"],
    ["ruff", "check", "--exclude=boom.py,calc/legacy.py"],
    ["ruff", "check", "--config=ci.toml", "calc"], ["ruff", "check", "--stdin-filename=x.py"],
    ["ruff", "check", "--ignore=F401", "calc"], ["ruff", "check", "--ignore", "F401", "calc"],
    ["ruff", "check", "--select", "F401", "calc"], ["ruff", "check", "--extend-select=I", "a.py"],
    ["ruff", "check", "--config=evil.toml", "--fix", "calc"], ["ruff", "check", "-qe", "calc"],
    ["ruff", "check", "--preview", "calc"], ["ruff", "check", "--isolated", "calc"],
    ["ruff", "check", "--force-exclude", "a.py"], ["ruff", "check", "-q=1", "calc"],
    ["ruff", "check", "--output-format", "--exclude=x", "calc"],
    ["ruff", "check", "--output-format="], ["ruff", "format", "--line-length=200", "calc"],
    ["ruff", "format", "--show-fixes", "calc"], ["black", "-c", "x=1"], ["black", "--check"],
    ["black", "-S", "calc"], ["isort", "--profile=black", "a.py"], ["isort", "-V"],
    ["bash", "-c", "ruff check --ignore=F401 calc"],
    ["uv", "run", "ruff", "check", "--exclude=calc", "."],
])
def test_an_option_outside_the_allow_list_leaves_the_scope_untold(
        root: Path, command: list[str]) -> None:
    fix = {**FIX, "scope_of": ALL}
    rendered, held = scoped(fix, command, root, root)
    assert rendered == fix and "not applied by itself" in held
    assert ("the option" in held) or ("no path" in held), held


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


IMPORT_FIX = {"argv": ["ruff", "check", "--select", "I", "--fix", "."],
              "scope_of": [["ruff", "check"], ["isort"]]}


@pytest.mark.parametrize(("command", "argv_tail"), [
    # the failing step checked the very rules the fix passes itself: same scope
    (["ruff", "check", "--select", "I", "."], ["--", "."]),
    (["ruff", "check", "--select=I", "calc"], ["--", "calc"]),
    (["ruff", "check", "--select", "I"], ["--", "."]),
    # another selection than the fix's own: held
    (["ruff", "check", "--select", "I,F401", "calc"], None),
    (["ruff", "check", "--select", "F401", "calc"], None),
    (["ruff", "check", "--select", "I", "--ignore=I001", "calc"], None),
    # a bare flag the fix passes too, with a word after it that could be its value: held
    (["ruff", "check", "--fix", "calc"], None),
])
def test_an_option_the_fix_passes_itself_with_the_same_value_keeps_the_scope(
        root: Path, command: list[str], argv_tail: list[str] | None) -> None:
    rendered, held = scoped(IMPORT_FIX, command, root, root)
    if argv_tail is None:
        assert rendered == IMPORT_FIX and "not applied by itself" in held
    else:
        assert not held, held
        assert rendered["argv"] == ["ruff", "check", "--select", "I", "--fix", *argv_tail]
