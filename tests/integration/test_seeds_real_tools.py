"""Run the real tools (python, ruff, git, bash, node; apt, bundler, composer, yarn and pnpm
when installed) and check the seeded detection rules
recognise what they print today, not only the captured fixtures."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.lookup.catalog import Catalog, load_catalog

RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def run(argv: list[str], cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e", "LC_ALL": "C"}
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode != 0, f"{argv} unexpectedly succeeded"
    return proc.stdout + proc.stderr


def detected(catalog: Catalog, text: str) -> str | None:
    found = catalog.detect(text)
    return found[0].id if found else None


def test_python_errors(catalog: Catalog, tmp_path: Path) -> None:
    out = run([sys.executable, "-c", "import no_such_module_zz"], tmp_path)
    assert detected(catalog, out) == "python.module_not_found"
    (tmp_path / "bad.py").write_text("def f(:\n    pass\n")
    assert detected(catalog, run([sys.executable, "bad.py"], tmp_path)) == "python.syntax_error"
    (tmp_path / "ind.py").write_text("def f():\nreturn 1\n")
    out = run([sys.executable, "ind.py"], tmp_path)
    assert detected(catalog, out) == "python.indentation_error"
    out = run([sys.executable, "-c", "from json import no_such_name"], tmp_path)
    assert detected(catalog, out) == "python.import_name_error"


@pytest.mark.skipif(RUFF is None, reason="ruff not installed")
def test_ruff_outputs(catalog: Catalog, tmp_path: Path) -> None:
    assert RUFF is not None
    (tmp_path / "a.py").write_text("x=[1,2]\n")
    assert detected(catalog, run([RUFF, "format", "--check", "a.py"], tmp_path)) == \
        "format.ruff_format"
    (tmp_path / "b.py").write_text("import sys\nimport os\nprint(sys, os)\n")
    assert detected(catalog, run([RUFF, "check", "--select", "I", "b.py"], tmp_path)) == \
        "imports.unsorted"
    (tmp_path / "c.py").write_text("import os\nx = 1\n")
    assert detected(catalog, run([RUFF, "check", "--select", "F401", "c.py"], tmp_path)) == \
        "lint.ruff_fixable"


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_git_outputs(catalog: Catalog, tmp_path: Path) -> None:
    run_ok = lambda *a: subprocess.run(a, cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    run_ok("git", "init", "-q", "-b", "main")
    (tmp_path / "f.txt").write_text("base\n")
    run_ok("git", "add", ".")
    run_ok("git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "base")
    (tmp_path / ".git" / "index.lock").write_text("")
    assert detected(catalog, run(["git", "add", "f.txt"], tmp_path)) == "git.index_lock"
    (tmp_path / ".git" / "index.lock").unlink()
    run_ok("git", "checkout", "-q", "-b", "side")
    (tmp_path / "f.txt").write_text("side\n")
    run_ok("git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qam", "side")
    run_ok("git", "checkout", "-q", "main")
    (tmp_path / "f.txt").write_text("main\n")
    assert detected(catalog, run(["git", "checkout", "side"], tmp_path)) == \
        "git.local_changes_overwritten"
    run_ok("git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qam", "main")
    assert detected(catalog, run(["git", "merge", "side"], tmp_path)) == "git.merge_conflict"


def test_shell_outputs(catalog: Catalog, tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_text("echo hi\n")
    (tmp_path / "run.sh").chmod(0o644)
    assert detected(catalog, run(["bash", "-c", "./run.sh"], tmp_path)) == \
        "fs.permission_denied_exec"
    assert detected(catalog, run(["bash", "-c", "no_such_cmd_zz --x"], tmp_path)) == \
        "proc.command_not_found"


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_node_outputs(catalog: Catalog, tmp_path: Path) -> None:
    (tmp_path / "t.js").write_text('require("left-pad-zz")\n')
    assert detected(catalog, run(["node", "t.js"], tmp_path)) == "node.modules_missing"


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="apt-get not installed")
def test_apt_outputs(catalog: Catalog, tmp_path: Path) -> None:
    out = run(["apt-get", "-s", "install", "nonexistent-pkg-zz"], tmp_path)  # no lock taken
    found = catalog.detect(out)
    assert found is not None and found[0].id == "apt.package_not_found"
    assert found[1]["package"] == "nonexistent-pkg-zz"


@pytest.mark.skipif(shutil.which("bundle") is None, reason="bundler not installed")
def test_bundler_outputs(catalog: Catalog, tmp_path: Path) -> None:
    assert detected(catalog, run(["bundle", "nope"], tmp_path)) == "build.unknown_task"
    (tmp_path / "Gemfile").write_text('source "https://rubygems.org"\ngem "nonexistent-gem-zz9"\n')
    out = run(["bundle", "install", "--local"], tmp_path)
    found = catalog.detect(out)
    assert found is not None and found[0].id == "deps.package_not_found"
    assert found[1]["package"] == "nonexistent-gem-zz9"


@pytest.mark.skipif(shutil.which("composer") is None, reason="composer not installed")
def test_composer_outputs(catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                          ) -> None:
    monkeypatch.setenv("COMPOSER_ALLOW_SUPERUSER", "1")
    monkeypatch.setenv("COMPOSER_NO_INTERACTION", "1")
    monkeypatch.setenv("COMPOSER_HOME", str(tmp_path / ".composer"))
    assert detected(catalog, run(["composer", "nope"], tmp_path)) == "build.unknown_task"
    (tmp_path / "composer.json").write_text(
        '{"name": "acme/app", "repositories": [{"packagist.org": false}], '
        '"require": {"nonexistent/pkg-zz9": "^1.0"}}')
    found = catalog.detect(run(["composer", "update", "--no-plugins"], tmp_path))
    assert found is not None and found[0].id == "deps.package_not_found"
    assert found[1]["package"] == "nonexistent/pkg-zz9"


@pytest.mark.skipif(shutil.which("yarn") is None or shutil.which("pnpm") is None,
                    reason="yarn or pnpm not installed")
def test_yarn_and_pnpm_outputs(catalog: Catalog, tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text('{"name": "app", "version": "1.0.0", "license": "MIT"}')
    assert detected(catalog, run(["yarn", "run", "nope"], tmp_path)) == "node.missing_script"
    assert detected(catalog, run(["pnpm", "run", "nope"], tmp_path)) == "node.missing_script"
