"""QA: ``python.module_not_found`` always ran ``pip install NAME``, also in a Poetry, uv, PDM or
Pipenv project, where pip ignores the lockfile (another version, outside the project's
environment) and a requirements file's pins. The validate stage now runs the repository's own
manager (the nearest lockfile, else a ``[tool.*]`` table or a ``Pipfile``, else a requirements
file declaring the package, with ``-r``), restoring the lockfile without rewriting it; two
managers, a manager not installed, a package the project does not declare, or a
``pyproject.toml`` heal cannot read escalate saying what to do (the real CLI in subprocesses,
the session's engines; ``poetry``/``uv``/``pdm``/``pipenv`` are shims on PATH that record
their argv and provide the module; the ``-r`` case runs the real pip on a local wheel)."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.integration._heal_install import apply as _apply
from tests.integration._heal_install import calls as _calls
from tests.integration._heal_install import run_and_explain, shim_env
from tests.integration._repos import git

MODULE = "heal_fixture_mod"
#: a manager that records its argv and provides the module where it runs
SHIM = ("#!/bin/sh\nprintf '%s %s\\n' \"$(basename \"$0\")\" \"$*\" >> {log}\n"
        f"echo 'VALUE = 1' > {MODULE}.py\n")
PYPROJECT = ('[project]\nname = "app"\nversion = "1.0"\n'
             'dependencies = ["heal-fixture-mod>=1"]\n')
LOCK = '[[package]]\nname = "heal-fixture-mod"\nversion = "1.0"\n'


def _env(heal_env: dict[str, str], database: str, tmp: Path, *managers: str) -> dict[str, str]:
    return shim_env(heal_env, database, tmp, SHIM, managers)


def _repo(root: Path, files: dict[str, str], where: str = ".") -> Path:
    files = {f"{where}/app.py": f"import {MODULE}\n", **files}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


def _run(env: dict[str, str], cwd: Path, python: str = "python") -> tuple[str, str]:
    """heal run's stderr and ``heal explain --json`` of it."""
    stderr, explained = run_and_explain(env, cwd, python, "app.py")
    assert f"No module named '{MODULE}'" in stderr, stderr
    return stderr, explained


@pytest.mark.parametrize(("files", "call", "chosen"), [
    ({"pyproject.toml": PYPROJECT + "[tool.poetry]\nname = \"app\"\n", "poetry.lock": LOCK},
     "poetry install", "chosen by poetry.lock"),
    ({"pyproject.toml": PYPROJECT, "uv.lock": LOCK}, "uv sync --locked", "chosen by uv.lock"),
    ({"pyproject.toml": PYPROJECT, "pdm.lock": LOCK}, "pdm install --check",
     "chosen by pdm.lock"),
    ({"Pipfile": '[packages]\nheal-fixture-mod = "*"\n', "Pipfile.lock": "{}\n"},
     "pipenv install --deploy", "chosen by Pipfile.lock"),
    # no lockfile: the project's [tool.poetry] table names the manager (which writes one)
    ({"pyproject.toml": PYPROJECT + "[tool.poetry]\nname = \"app\"\n"}, "poetry install",
     "chosen by pyproject.toml [tool.poetry]"),
], ids=["poetry.lock", "uv.lock", "pdm.lock", "Pipfile.lock", "tool.poetry"])
def test_the_install_runs_the_projects_own_python_manager(
        heal_env: dict[str, str], own_database: str, tmp_path: Path,
        files: dict[str, str], call: str, chosen: str) -> None:
    env = _env(heal_env, own_database, tmp_path, "poetry", "uv", "pdm", "pipenv")
    repo = _repo(tmp_path / "app", files)
    stderr, explained = _run(env, repo)
    assert "python.module_not_found/fix" in stderr, stderr
    assert chosen in explained, explained  # the verdict's "package manager" row
    assert "pip install heal_fixture_mod" not in explained, explained
    applied = _apply(env, repo, stderr)
    assert _calls(tmp_path)[-1:] == [call], applied  # what ran: the project's manager
    assert set(_calls(tmp_path)) == {call}, _calls(tmp_path)  # never pip
    for lock in ("poetry.lock", "uv.lock", "pdm.lock", "Pipfile.lock"):
        assert (repo / lock).exists() == (lock in files)  # no lockfile written or removed


def test_a_uv_workspace_members_install_is_chosen_by_the_workspace_root(
        heal_env: dict[str, str], own_database: str, tmp_path: Path) -> None:
    """The failing command ran in packages/api, whose pyproject.toml names no manager: the
    workspace root's uv.lock decides."""
    env = _env(heal_env, own_database, tmp_path, "uv", "poetry")
    repo = _repo(tmp_path / "app", {"pyproject.toml": PYPROJECT, "uv.lock": LOCK,
                                    "packages/api/pyproject.toml": PYPROJECT},
                 where="packages/api")
    stderr, explained = _run(env, repo / "packages" / "api")
    assert "chosen by uv.lock" in explained, explained
    _apply(env, repo / "packages" / "api", stderr)
    assert set(_calls(tmp_path)) == {"uv sync --locked"}, _calls(tmp_path)


@pytest.mark.parametrize(("files", "said"), [
    ({"pyproject.toml": PYPROJECT, "poetry.lock": LOCK, "uv.lock": LOCK},
     "lockfiles of poetry and uv (poetry.lock and uv.lock)"),
    ({"pyproject.toml": PYPROJECT, "uv.lock": LOCK},
     "installs with uv (uv.lock), which is not installed on this machine: install uv"),
    ({"pyproject.toml": '[project]\nname = "app"\n', "poetry.lock": ""},
     "the package 'heal_fixture_mod' is not declared by the project (poetry.lock names "
     "poetry"),
    ({"pyproject.toml": '[project\nname = "app"\n'},
     "heal could not read pyproject.toml: it is not valid TOML"),
    # 200 KB, under the size limit, deeper than the TOML parser goes (was a RecursionError)
    ({"pyproject.toml": "a = " + "[" * 100_000 + "]" * 100_000 + "\n"},
     "heal could not read pyproject.toml: it is nested too deeply"),
    ({"pyproject.toml": PYPROJECT + "[tool.poetry]\nname = \"app\"\n[tool.pdm]\n"
      "distribution = true\n"}, "the project declares poetry (pyproject.toml [tool.poetry]) "
     "and pdm (pyproject.toml [tool.pdm]) and no lockfile"),
], ids=["two-lockfiles", "uv-missing", "undeclared", "bad-toml", "deep-toml",
        "two-tool-tables"])
def test_a_python_manager_heal_cannot_run_escalates_saying_what_to_do(
        heal_env: dict[str, str], own_database: str, tmp_path: Path,
        files: dict[str, str], said: str) -> None:
    # poetry and pdm there (uv not): never pip install NAME instead
    env = _env(heal_env, own_database, tmp_path, "poetry", "pdm")
    repo = _repo(tmp_path / "app", files)
    stderr, explained = _run(env, repo)
    assert said in explained, explained
    assert stderr.count("Traceback") == 1, stderr  # the failing program's own, not heal's
    assert _calls(tmp_path) == []  # nothing ran
    assert not (repo / f"{MODULE}.py").exists()


def _wheel(folder: Path) -> Path:
    """A wheel of ``heal-fixture-mod`` 1.0, built by hand (pip installs it offline)."""
    files = {f"{MODULE}.py": b"VALUE = 1\n",
             "heal_fixture_mod-1.0.dist-info/METADATA":
                 b"Metadata-Version: 2.1\nName: heal-fixture-mod\nVersion: 1.0\n",
             "heal_fixture_mod-1.0.dist-info/WHEEL":
                 b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                 b"Tag: py3-none-any\n"}
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(data)}")
    record.append("heal_fixture_mod-1.0.dist-info/RECORD,,")
    path = folder / "heal_fixture_mod-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        for name, data in files.items():
            whl.writestr(name, data)
        whl.writestr("heal_fixture_mod-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return path


def test_a_requirements_file_declaring_the_package_is_installed_with_its_pins(
        heal_env: dict[str, str], own_database: str, tmp_path: Path) -> None:
    """The real pip, into the interpreter that failed (a virtualenv of the test's own): the
    requirements file that declares the package is installed with -r (its pin, a local wheel,
    holds), not ``pip install heal_fixture_mod`` (which would look the name up on an index)."""
    venv = tmp_path / "venv"
    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True,
                          text=True, timeout=300, check=False)
    if made.returncode != 0:
        pytest.skip(f"python -m venv with pip is not available here: {made.stderr[-300:]}")
    python = str(venv / "bin" / "python")
    wheel = _wheel(tmp_path)
    env = _env(heal_env, own_database, tmp_path)
    env["PIP_NO_INDEX"] = "1"  # nothing from an index: only the pinned wheel can install it
    env["PIP_FIND_LINKS"] = str(wheel.parent)  # pip's own configuration (the operator's)
    repo = _repo(tmp_path / "app", {
        "requirements.txt": "# runtime: nothing\n",
        "requirements-dev.txt": "-r requirements.txt\n--prefer-binary\n"
                                "heal-fixture-mod==1.0  # the pin\n"})
    stderr, explained = _run(env, repo, python)
    assert "chosen by requirements-dev.txt" in explained, explained
    applied = _apply(env, repo, stderr)
    done = subprocess.run([python, "-c", f"import {MODULE}"], cwd=tmp_path, check=False,
                          capture_output=True, text=True)
    assert done.returncode == 0, applied + done.stderr
    assert "-r requirements-dev.txt" in applied or "-r requirements-dev.txt" in explained


@pytest.mark.parametrize(("line", "said"), [
    ("--index-url http://pkgs.invalid/simple", "line 1 ('--index-url http://pkgs.invalid/simple')"
     " is the pip option '--index-url'"),
    ("--extra-index-url=http://pkgs.invalid/simple", "is the pip option '--extra-index-url'"),
    ("--find-links ./wheels", "is the pip option '--find-links'"),
    ("-e git+https://git.invalid/x.git#egg=x", "is the pip option '-e'"),
    ("x @ https://files.invalid/x-1.0-py3-none-any.whl", "is a URL, VCS or path requirement"),
    ("./vendored/x", "is a path or URL requirement"),
    ("-r ../../../untracked.txt", "includes a file heal does not check"),
], ids=["index-url", "extra-index-url", "find-links", "editable-vcs", "url", "path",
        "untracked-include"])
def test_a_requirements_file_fetching_from_elsewhere_escalates_naming_the_line(
        heal_env: dict[str, str], own_database: str, tmp_path: Path, line: str,
        said: str) -> None:
    """The failing command ran in a tracked test fixture whose requirements file declares
    the package but names another index, a VCS checkout, a URL, a path or an include heal
    does not check: the event's cwd chose it, so a person decides (the root's
    requirements.txt declares the package too, which once let it run unattended)."""
    env = _env(heal_env, own_database, tmp_path)
    env["PIP_NO_INDEX"] = "1"
    where = "tests/fixtures/bad"
    repo = _repo(tmp_path / "app", {"requirements.txt": "heal-fixture-mod==1.0\n",
                                    f"{where}/requirements.txt":
                                        f"{line}\nheal-fixture-mod\n"}, where=where)
    (repo / "untracked.txt").write_text("heal-fixture-mod\n")  # not committed
    stderr, explained = _run(env, repo / where)
    assert (f"heal will not run `pip install -r {where}/requirements.txt` unattended: "
            f"{where}/requirements.txt line 1") in explained, explained
    assert said in explained, explained
    assert '"decision": "escalate"' in explained or "escalate" in explained, explained
    assert "-r requirements.txt" not in explained, explained


def test_an_ignored_folders_lockfile_never_chooses_the_install(
        heal_env: dict[str, str], own_database: str, tmp_path: Path) -> None:
    """A third-party package's pyproject.toml and poetry.lock inside the git-ignored .venv
    (the event's cwd pointing there) are not the project's: poetry never runs."""
    env = _env(heal_env, own_database, tmp_path, "poetry")
    env["PIP_NO_INDEX"] = "1"
    where = ".venv/lib/python3.11/site-packages/somepkg"
    repo = _repo(tmp_path / "app", {".gitignore": ".venv/\n", "requirements.txt": "rich\n"})
    for name, text in {"app.py": f"import {MODULE}\n",
                       "pyproject.toml": PYPROJECT + '[tool.poetry]\nname = "somepkg"\n',
                       "poetry.lock": LOCK}.items():
        (repo / where).mkdir(parents=True, exist_ok=True)
        (repo / where / name).write_text(text)
    assert git(repo, "status", "--porcelain") == ""  # ignored: nothing untracked to show
    stderr, explained = _run(env, repo / where)
    assert "poetry" not in explained, explained
    assert _calls(tmp_path) == [], _calls(tmp_path)
