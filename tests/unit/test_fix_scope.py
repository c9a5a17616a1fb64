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


@pytest.mark.parametrize("command", [["tools/ruff", "check", "calc"],
                                     ["./ruff", "check", "calc"]])
def test_a_repository_program_named_like_the_tool_is_not_the_tool(
        root: Path, command: list[str]) -> None:
    """QA s14e D2: a wrapper `tools/ruff` (running ruff with options of its own) was taken for
    ruff, so the fix acted without those options; a relative path is the repository's
    program, and the fix is held."""
    rendered, held = scoped(FIX, command, root, root)
    assert rendered == FIX and "not applied by itself" in held


def _seed_fix(pattern_id: str) -> dict[str, object]:
    import yaml

    seeds = yaml.safe_load((Path(__file__).resolve().parents[2] / "seeds" / "format.yaml")
                           .read_text())
    (pattern,) = [p for p in seeds["patterns"] if p["id"] == pattern_id]
    fix: dict[str, object] = pattern["fix"]
    return fix


def test_the_ruff_seed_fixes_apply_no_unsafe_fix_whatever_the_repository_allows(
        tmp_path: Path) -> None:
    """QA s14e D3/D4: `unsafe-fixes = true` in a repository's ruff.toml made the SAFE fix
    apply `x == None` -> `x is None` (ruff: may change runtime behaviour); and a failing isort
    got the ruff import fix, which reads none of isort's configuration."""
    import shutil
    import subprocess
    import sys

    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff is not None
    (tmp_path / "ruff.toml").write_text("unsafe-fixes = true\n")
    source = "import os\n\n\ndef f(x):\n    return x == None\n"
    (tmp_path / "m.py").write_text(source)
    fix = _seed_fix("lint.ruff_fixable")
    argv = [str(a) for a in fix["argv"]]  # type: ignore[attr-defined]
    subprocess.run([ruff, *argv[1:]], cwd=tmp_path, capture_output=True, check=False)
    fixed = (tmp_path / "m.py").read_text()
    assert "import os" not in fixed  # the safe fix was applied
    assert "x == None" in fixed  # the unsafe one was not
    assert ["isort"] not in _seed_fix("imports.unsorted")["scope_of"]  # type: ignore[operator]
    assert "--no-unsafe-fixes" in _seed_fix("imports.unsorted")["argv"]  # type: ignore[operator]
