"""QA: ``node.modules_missing`` always ran ``npm install``, also in a yarn, pnpm or Bun
project, where npm does not read the lockfile, installs another tree and writes a
package-lock.json the project does not want. The validate stage now runs the repository's own
manager (package.json's packageManager, else the lockfile, nearest the failing command's
directory first), restoring the lockfile without rewriting it; a manager heal does not know,
lockfiles of two managers, or a manager not installed escalate saying what to do (the real
CLI in subprocesses, real node, the session's engines; ``yarn``/``pnpm`` are shims on PATH
that record their argv and install the package)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration._heal_install import HEAL, run_and_explain, shim_env
from tests.integration._heal_install import apply as _apply
from tests.integration._heal_install import calls as _calls
from tests.integration._repos import git

pytestmark = pytest.mark.skipif(not shutil.which("node"), reason="needs node")

#: a package manager that records its argv and installs left-pad where it runs
SHIM = ("#!/bin/sh\nprintf '%s %s\\n' \"$(basename \"$0\")\" \"$*\" >> {log}\n"
        "mkdir -p node_modules/left-pad\n"
        "echo 'module.exports = (s) => s;' > node_modules/left-pad/index.js\n")


def _env(heal_env: dict[str, str], database: str, tmp: Path, *managers: str) -> dict[str, str]:
    return shim_env(heal_env, database, tmp, SHIM, managers, "node")


def _repo(root: Path, files: dict[str, str], manifest: dict[str, object] | None = None,
          where: str = "package.json", links: dict[str, str] | None = None) -> Path:
    manifest = {"name": "app", "version": "1.0.0",
                "dependencies": {"left-pad": "^1.3.0"}, **(manifest or {})}
    app = str(Path(where).parent / "app.js")
    files = {where: json.dumps(manifest) + "\n", app: "require('left-pad');\n", **files}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for name, target in (links or {}).items():  # committed as symlinks
        (root / name).unlink(missing_ok=True)
        (root / name).symlink_to(target)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


def _run(env: dict[str, str], cwd: Path) -> tuple[str, str]:
    """heal run's stderr and ``heal explain --json`` of it."""
    return run_and_explain(env, cwd, "node", "app.js")


@pytest.mark.parametrize(("files", "manifest", "call", "chosen"), [
    ({"yarn.lock": "left-pad@^1.3.0:\n  version \"1.3.0\"\n"}, None,
     "yarn install --frozen-lockfile", "chosen by yarn.lock"),
    ({"pnpm-lock.yaml": "lockfileVersion: '9.0'\n"}, None,
     "pnpm install --frozen-lockfile", "chosen by pnpm-lock.yaml"),
    # the field wins over a stale lockfile of another manager beside it
    ({"package-lock.json": "{}\n"}, {"packageManager": "pnpm@9.1.0"},
     "pnpm install", "packageManager 'pnpm@9.1.0'"),
], ids=["yarn.lock", "pnpm-lock", "packageManager"])
def test_the_install_runs_the_projects_own_package_manager(
        heal_env: dict[str, str], own_database: str, tmp_path: Path,
        files: dict[str, str], manifest: dict[str, object] | None, call: str,
        chosen: str) -> None:
    env = _env(heal_env, own_database, tmp_path, "yarn", "pnpm", "npm")
    repo = _repo(tmp_path / "app", files, manifest)
    stderr, explained = _run(env, repo)
    assert "suggested fix node.modules_missing/fix" in stderr, stderr
    assert chosen in explained, explained  # the verdict's "package manager" row
    applied = _apply(env, repo, stderr)
    assert _calls(tmp_path) == [call], applied  # what ran: the project's manager, not npm
    assert not (repo / "package-lock.json").exists() or "package-lock.json" in files


def test_a_workspace_packages_install_is_chosen_by_the_workspace_root(
        heal_env: dict[str, str], own_database: str, tmp_path: Path) -> None:
    """The failing command ran in packages/web, which has no lockfile of its own: the
    workspace root's pnpm-lock.yaml decides."""
    env = _env(heal_env, own_database, tmp_path, "pnpm", "npm")
    repo = _repo(tmp_path / "app", {"package.json": '{"name": "root", "private": true}\n',
                                    "pnpm-workspace.yaml": "packages:\n  - packages/*\n",
                                    "pnpm-lock.yaml": "lockfileVersion: '9.0'\n"},
                 where="packages/web/package.json")
    stderr, explained = _run(env, repo / "packages" / "web")
    applied = _apply(env, repo / "packages" / "web", stderr)
    assert _calls(tmp_path) == ["pnpm install --frozen-lockfile"], applied
    assert "chosen by pnpm-lock.yaml" in explained, explained


@pytest.mark.parametrize(("files", "manifest", "said"), [
    ({"bun.lock": "{}\n"}, None, "installs with bun (bun.lock), which is not installed"),
    ({"yarn.lock": "", "package-lock.json": "{}\n"}, None,
     "lockfiles of npm and yarn"),
    ({}, {"packageManager": "deno@2.0.0"}, "which heal does not know"),
], ids=["bun-missing", "two-lockfiles", "unknown-manager"])
def test_a_manager_heal_cannot_run_escalates_saying_what_to_do(
        heal_env: dict[str, str], own_database: str, tmp_path: Path,
        files: dict[str, str], manifest: dict[str, object] | None, said: str) -> None:
    env = _env(heal_env, own_database, tmp_path, "npm")  # npm there: never a silent fallback
    repo = _repo(tmp_path / "app", files, manifest)
    stderr, explained = _run(env, repo)
    assert said in explained, explained
    assert "Traceback" not in stderr, stderr
    assert _calls(tmp_path) == []  # nothing ran: not npm install either
    assert not (repo / "node_modules").exists()


#: a workspace whose root package.json names pnpm, and no lockfile: the failing command runs
#: in packages/web (node reads that package.json only), the root's field decides
_PNPM_ROOT = json.dumps({"name": "root", "private": True, "packageManager": "pnpm@9.1.0"})


@pytest.mark.parametrize(("root_manifest", "links", "said"), [
    (_PNPM_ROOT.replace('"}', '",}'), {}, "package.json: it is not valid JSON"),
    (_PNPM_ROOT[:-1] + ', "description": "' + "x" * 1_100_000 + '"}', {},
     "package.json: it is 1100"),
    (None, {"package.json": "../outside/package.json"},
     "package.json: it is a symlink that leaves the repository"),
], ids=["invalid-json", "over-1-MB", "symlink-outside"])
def test_a_package_json_heal_cannot_read_escalates_instead_of_npm_install(
        heal_env: dict[str, str], own_database: str, tmp_path: Path,
        root_manifest: str | None, links: dict[str, str], said: str) -> None:
    """QA s18c D4: an unreadable package.json hid its packageManager and heal ran
    ``npm install`` "(no packageManager nor lockfile)" in a pnpm project."""
    env = _env(heal_env, own_database, tmp_path, "npm", "pnpm")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "package.json").write_text(_PNPM_ROOT)
    files = {"package.json": root_manifest} if root_manifest is not None else {}
    repo = _repo(tmp_path / "app", files, where="packages/web/package.json", links=links)
    stderr, explained = _run(env, repo / "packages" / "web")
    assert "heal could not read " + said in explained, explained
    assert "does not fall back to npm install" in explained, explained
    assert "Traceback" not in stderr, stderr
    assert _calls(tmp_path) == []  # nothing ran: not npm install either


def test_a_byte_order_mark_does_not_hide_the_package_manager(
        heal_env: dict[str, str], own_database: str, tmp_path: Path) -> None:
    """QA s18c D4: a package.json starting with a UTF-8 BOM (npm accepts it) was unread."""
    env = _env(heal_env, own_database, tmp_path, "npm", "pnpm")
    repo = _repo(tmp_path / "app", {"package.json": "\ufeff" + _PNPM_ROOT},
                 where="packages/web/package.json")
    stderr, explained = _run(env, repo / "packages" / "web")
    assert "packageManager 'pnpm@9.1.0'" in explained, explained
    applied = _apply(env, repo / "packages" / "web", stderr)
    assert _calls(tmp_path) == ["pnpm install"], applied


def test_heal_explain_text_shows_the_package_manager_row(
        heal_env: dict[str, str], own_database: str, tmp_path: Path) -> None:
    """QA s18c D9: only ``heal explain --json`` had the verdict's package manager row."""
    env = _env(heal_env, own_database, tmp_path, "npm", "pnpm")
    repo = _repo(tmp_path / "app", {"pnpm-lock.yaml": "lockfileVersion: '9.0'\n"})
    stderr, _ = _run(env, repo)
    run_id = stderr.split("published ", 1)[1].split(None, 1)[0].rstrip(";")
    text = subprocess.run([HEAL, "explain", run_id], env=env, cwd=repo, capture_output=True,
                          text=True, timeout=120, check=False).stdout
    assert ("package manager: pnpm install --frozen-lockfile (chosen by pnpm-lock.yaml)"
            in text), text
    assert "pre-flight passed: " in text, text


#: Bun as the failing runtime and its installer: ``bun app.js`` fails until left-pad is
#: installed; ``bun install ...`` records its argv and installs it
BUN = ("#!/bin/sh\nif [ \"$1\" = install ]; then\n"
       "  printf '%s %s\\n' \"$(basename \"$0\")\" \"$*\" >> {log}\n"
       "  mkdir -p node_modules/left-pad; exit 0\nfi\n"
       "[ -d node_modules/left-pad ] && exit 0\n"
       "echo \"error: Cannot find package 'left-pad' from '$PWD/app.js'\" >&2\n"
       "echo 'Bun v1.1.30 (Linux x64)' >&2\nexit 1\n")


@pytest.mark.parametrize(("files", "call", "chosen"), [
    ({"bun.lock": "{}\n"}, "bun install --frozen-lockfile", "chosen by bun.lock"),
    ({"bun.lockb": "\x00"}, "bun install --frozen-lockfile", "chosen by bun.lockb"),
    ({}, "bun install", "no bun.lock nor bun.lockb"),
], ids=["bun.lock", "bun.lockb", "no-lockfile"])
def test_bun_installs_frozen_when_the_project_has_a_bun_lockfile(
        heal_env: dict[str, str], own_database: str, tmp_path: Path,
        files: dict[str, str], call: str, chosen: str) -> None:
    """QA: ``bun.modules_missing`` always ran ``bun install``, which may rewrite bun.lock;
    the other managers restore their lockfile as it is."""
    env = _env(heal_env, own_database, tmp_path, "npm")
    (tmp_path / "shims" / "bun").write_text(BUN.format(log=tmp_path / "calls.log"))
    (tmp_path / "shims" / "bun").chmod(0o755)
    repo = _repo(tmp_path / "app", files)
    stderr, explained = run_and_explain(env, repo, "bun", "app.js")
    assert "bun.modules_missing/fix" in stderr, stderr
    assert chosen in explained, explained
    applied = _apply(env, repo, stderr)
    assert _calls(tmp_path) == [call], applied
