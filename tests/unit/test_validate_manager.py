"""The repository's Node package manager (pipeline.validate.manager), on real folders."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pipeline.validate import manager, pymanager, reqfile
from pipeline.validate.manager import choose, managed_fix


def _write(root: Path, files: dict[str, str]) -> None:
    """The files, tracked by git (an untracked file never chooses a Python install)."""
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)


@pytest.mark.parametrize(("files", "argv", "source"), [
    ({}, ["npm", "install"], ""),
    ({"package-lock.json": "{}"}, ["npm", "ci"], "package-lock.json"),
    ({"pnpm-lock.yaml": ""}, ["pnpm", "install", "--frozen-lockfile"], "pnpm-lock.yaml"),
    ({"yarn.lock": "# yarn lockfile v1\n"}, ["yarn", "install", "--frozen-lockfile"],
     "yarn.lock"),
    ({"yarn.lock": "\n__metadata:\n  version: 8\n"}, ["yarn", "install", "--immutable"],
     "yarn.lock"),
    ({"bun.lockb": ""}, ["bun", "install", "--frozen-lockfile"], "bun.lockb"),
    ({"bun.lock": ""}, ["bun", "install", "--frozen-lockfile"], "bun.lock"),
    # the field wins over another manager's lockfile beside it; its own lockfile is frozen
    ({"package.json": json.dumps({"packageManager": "pnpm@9.1.0"}), "yarn.lock": ""},
     ["pnpm", "install"], "package.json packageManager 'pnpm@9.1.0'"),
    ({"package.json": json.dumps({"packageManager": "yarn@4.1.0"}), "yarn.lock": ""},
     ["yarn", "install", "--immutable"], "package.json packageManager 'yarn@4.1.0'"),
    ({"package.json": json.dumps({"packageManager": "yarn@1.22.19"})},
     ["yarn", "install"], "package.json packageManager 'yarn@1.22.19'"),
])
def test_the_manager_is_read_from_the_repository(tmp_path: Path, files: dict[str, str],
                                                  argv: list[str], source: str) -> None:
    _write(tmp_path, files)
    choice, why = choose(tmp_path, tmp_path)
    assert why == "" and choice is not None
    assert (choice.argv, choice.source) == (argv, source)


def test_the_nearest_folder_with_a_signal_wins(tmp_path: Path) -> None:
    _write(tmp_path, {"pnpm-lock.yaml": "", "packages/web/package.json": "{}",
                      "tools/own/yarn.lock": "", "tools/own/package.json": "{}"})
    web, _ = choose(tmp_path, tmp_path / "packages" / "web")
    own, _ = choose(tmp_path, tmp_path / "tools" / "own")
    assert web is not None and web.source == "pnpm-lock.yaml"
    assert own is not None and own.source == "tools/own/yarn.lock"


@pytest.mark.parametrize(("files", "said"), [
    ({"yarn.lock": "", "pnpm-lock.yaml": ""}, "lockfiles of pnpm and yarn"),
    ({"package.json": json.dumps({"packageManager": "/bin/evil@1"})}, "does not know"),
])
def test_no_choice_when_the_repository_is_ambiguous_or_names_an_unknown_program(
        tmp_path: Path, files: dict[str, str], said: str) -> None:
    _write(tmp_path, files)
    choice, why = choose(tmp_path, tmp_path)
    assert choice is None and said in why


def test_only_a_fix_declaring_package_manager_is_changed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, {"pnpm-lock.yaml": ""})
    monkeypatch.setattr(manager, "installed", lambda program: program == "pnpm")
    plain = {"rendered": {"argv": ["npm", "install"]}}
    assert managed_fix(plain, tmp_path, tmp_path) == (plain, "", "")
    fix = {"rendered": {"argv": ["npm", "install"], "package_manager": "node"},
           "explanation": "x"}
    out, escalate, note = managed_fix(fix, tmp_path, tmp_path)
    assert out["rendered"]["argv"] == ["pnpm", "install", "--frozen-lockfile"]
    assert "pnpm-lock.yaml" in out["explanation"] and "pnpm-lock.yaml" in note
    monkeypatch.setattr(manager, "installed", lambda program: False)
    _, escalate, _ = managed_fix(fix, tmp_path, tmp_path)
    assert "pnpm" in escalate and "not installed" in escalate and "corepack" in escalate


_PNPM = json.dumps({"packageManager": "pnpm@9.1.0"})


def test_a_byte_order_mark_or_a_symlink_inside_the_repository_is_read(tmp_path: Path) -> None:
    (tmp_path / "repo" / "config").mkdir(parents=True)
    (tmp_path / "repo" / "package.json").write_bytes(b"\xef\xbb\xbf" + _PNPM.encode())
    choice, why = choose(tmp_path / "repo", tmp_path / "repo")
    assert why == "" and choice is not None and choice.argv == ["pnpm", "install"]
    (tmp_path / "repo" / "config" / "package.json").write_text(_PNPM)
    (tmp_path / "repo" / "package.json").unlink()
    (tmp_path / "repo" / "package.json").symlink_to("config/package.json")
    choice, why = choose(tmp_path / "repo", tmp_path / "repo")
    assert why == "" and choice is not None and choice.argv == ["pnpm", "install"]


@pytest.mark.parametrize(("text", "link", "said"), [
    (_PNPM[:-1] + ',}', "", "it is not valid JSON"),
    ('["pnpm@9"]', "", "it is not a JSON object"),
    (_PNPM[:-1] + ', "d": "' + "x" * 1_000_001 + '"}', "", "over the 1000000-byte limit"),
    ("", "../outside.json", "a symlink that leaves the repository"),
    ("", "missing.json", "a symlink to a file that does not exist"),
], ids=["invalid", "not-an-object", "too-big", "symlink-outside", "dangling"])
def test_a_package_json_heal_cannot_read_is_not_npm(tmp_path: Path, text: str, link: str,
                                                    said: str) -> None:
    """QA s18c D4: it hid packageManager, and heal chose npm install ("no packageManager")."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (tmp_path / "outside.json").write_text(_PNPM)
    if link:
        (repo / "package.json").symlink_to(link)
    else:
        (repo / "package.json").write_text(text)
    (repo / "package-lock.json").write_text("{}")  # a lockfile does not outrank the field
    choice, why = choose(repo, repo)
    assert choice is None
    assert why.startswith("heal could not read package.json: ") and said in why
    assert "run the project's own install yourself" in why


def _pip(package: str = "heal-fixture-mod") -> dict[str, object]:
    return {"argv": ["/venv/bin/python", "-m", "pip", "install", package],
            "package_manager": "python"}


_DECLARES = '[project]\nname = "app"\ndependencies = ["heal-fixture-mod"]\n'


@pytest.mark.parametrize(("files", "argv", "source"), [
    ({"pyproject.toml": _DECLARES, "poetry.lock": ""}, ["poetry", "install"], "poetry.lock"),
    ({"pyproject.toml": _DECLARES, "uv.lock": ""}, ["uv", "sync", "--locked"], "uv.lock"),
    ({"pyproject.toml": _DECLARES, "pdm.lock": ""}, ["pdm", "install", "--check"], "pdm.lock"),
    ({"Pipfile": '[packages]\nheal-fixture-mod = "*"\n', "Pipfile.lock": "{}"},
     ["pipenv", "install", "--deploy"], "Pipfile.lock"),
    ({"Pipfile": '[packages]\nheal-fixture-mod = "*"\n'}, ["pipenv", "install"], "Pipfile"),
    ({"pyproject.toml": _DECLARES + "[tool.uv]\ndev-dependencies = []\n"}, ["uv", "sync"],
     "pyproject.toml [tool.uv]"),
    # requirements.txt does not declare it: the file that does is installed with -r
    ({"requirements.txt": "requests\n", "requirements-dev.txt": "heal_fixture.mod==1.0\n"},
     ["/venv/bin/python", "-m", "pip", "install", "-r", "requirements-dev.txt"],
     "requirements-dev.txt"),
])
def test_the_python_manager_is_read_from_the_repository(
        tmp_path: Path, files: dict[str, str], argv: list[str], source: str) -> None:
    _write(tmp_path, files)
    choice, why = pymanager.choose(_pip(), tmp_path, tmp_path)
    assert why == "" and choice is not None
    assert (choice.argv, choice.source) == (argv, source)


@pytest.mark.parametrize(("files", "said"), [
    # a table only configuring pdm-backend's build or uv pip names no manager
    ({"pyproject.toml": _DECLARES + "[tool.pdm.build]\nincludes = []\n[tool.uv.pip]\n"}, ""),
    ({"requirements.txt": "requests\n"}, ""),  # undeclared: the bounded pip install NAME
    ({}, ""),
    ({"pyproject.toml": _DECLARES, "uv.lock": "", "pdm.lock": ""}, "lockfiles of pdm and uv"),
    ({"pyproject.toml": '[project]\nname = "app"\n', "uv.lock": ""},
     "add it with `uv add heal-fixture-mod`"),
    ({"pyproject.toml": "[project\n"}, "heal could not read pyproject.toml: it is not valid"),
])
def test_no_python_manager_or_an_escalation(tmp_path: Path, files: dict[str, str],
                                            said: str) -> None:
    _write(tmp_path, files)
    choice, why = pymanager.choose(_pip(), tmp_path, tmp_path)
    assert choice is None
    assert (said in why) if said else why == ""


def test_a_python_manager_not_installed_escalates_and_never_falls_back_to_pip(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, {"pyproject.toml": _DECLARES, "poetry.lock": ""})
    fix = {"rendered": _pip(), "explanation": "x"}
    monkeypatch.setattr(manager, "installed", lambda program: False)
    out, escalate, note = managed_fix(fix, tmp_path, tmp_path)
    assert out is fix and note == ""
    assert "installs with poetry (poetry.lock), which is not installed" in escalate
    assert "pipx install poetry" in escalate and "does not fall back to pip install" in escalate
    monkeypatch.setattr(manager, "installed", lambda program: True)
    out, escalate, note = managed_fix(fix, tmp_path, tmp_path)
    assert out["rendered"]["argv"] == ["poetry", "install"] and escalate == ""
    assert note == "package manager: poetry install (chosen by poetry.lock)"


@pytest.mark.parametrize(("files", "argv", "source"), [
    ({"bun.lock": ""}, ["bun", "install", "--frozen-lockfile"], "bun.lock"),
    ({"bun.lockb": ""}, ["bun", "install", "--frozen-lockfile"], "bun.lockb"),
    ({}, ["bun", "install"], ""),
])
def test_bun_restores_its_lockfile(tmp_path: Path, files: dict[str, str], argv: list[str],
                                   source: str) -> None:
    _write(tmp_path, {"packages/web/package.json": "{}", **files})
    choice = manager.choose_bun(tmp_path, tmp_path / "packages" / "web")
    assert (choice.argv, choice.source) == (argv, source)


@pytest.mark.parametrize(("text", "names", "said"), [
    ("requests==2.31 ; python_version > '3.8'  # ok\n--pre\n", {"requests"}, ""),
    ("requests[socks]>=2 --hash=sha256:aa \\\n  --hash=sha256:bb\n", {"requests"}, ""),
    ("-r base.txt\nflask\n", {"flask", "requests"}, ""),  # a tracked, clean include
    ("--index-url https://pkgs.invalid/simple\nflask\n", {"flask"},
     "requirements.txt line 1 ('--index-url https://pkgs.invalid/simple') is the pip option"),
    ("flask\n-i https://pkgs.invalid\n", {"flask"}, "line 2"),
    ("-e .\n", set(), "the pip option '-e'"),
    ("x @ git+https://git.invalid/x\n", set(), "a URL, VCS or path requirement"),
    ("x-1.0.tar.gz\n", set(), "an archive file requirement"),
    ("${PKG}\n", set(), "names an environment variable"),
    ("-r /etc/hosts\n", set(), "includes a file heal does not check"),
    ("-r bad.txt\n", set(), "bad.txt line 1 ('--find-links ./w')"),  # checked the same way
    ("-r requirements.txt\nflask\n", {"flask"}, "includes a file heal does not check"),  # loop
    ("flask --global-option=x\n", set(), "the option '--global-option=x' after a requirement"),
])
def test_a_requirements_line_fetching_from_elsewhere_is_named(
        tmp_path: Path, text: str, names: set[str], said: str) -> None:
    _write(tmp_path, {"requirements.txt": text, "base.txt": "requests\n",
                      "bad.txt": "--find-links ./w\n"})
    review = reqfile.review(tmp_path / "requirements.txt", tmp_path,
                            lambda p: bool(reqfile.tracked(tmp_path, [p])))
    assert review.names == names
    assert (said in review.problem) if said else review.problem == ""


def test_untracked_files_never_choose_a_python_install(tmp_path: Path) -> None:
    _write(tmp_path, {".gitignore": "venv/\n", "requirements.txt": "rich\n"})
    _write(tmp_path, {})  # git add: nothing below is tracked
    for name, text in {"venv/pkg/poetry.lock": 'name = "heal-fixture-mod"\n',
                       "venv/pkg/pyproject.toml": "[tool.poetry]\n",
                       "other/requirements.txt": "heal-fixture-mod\n"}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    for cwd in ("venv/pkg", "other"):  # ignored, untracked: the bounded pip install NAME
        assert pymanager.choose(_pip(), tmp_path, tmp_path / cwd) == (None, "")
