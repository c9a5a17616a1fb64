"""QA s16c item 13: ``node.modules_missing`` offers ``npm install``, which restores what
package.json declares; for a module package.json does not declare it cannot help (applying it
left a package-lock.json behind and escalated with "the failing step still fails"). The
validate stage's pre-flight reads the repository's manifest and refuses such a fix before
anything runs (the real CLI in subprocesses, real node and npm, the session's engines)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration._repos import committed_repo

ROOT = Path(__file__).resolve().parents[2]
HEAL = str(Path(sys.executable).with_name("heal"))

pytestmark = pytest.mark.skipif(not (shutil.which("node") and shutil.which("npm")),
                                reason="needs node and npm")


@pytest.fixture
def env(heal_env: dict[str, str], own_database: str) -> dict[str, str]:
    return {**os.environ, **heal_env, "HEAL_DATABASE_URL": own_database,
            "PYTHONPATH": str(ROOT), "HEAL_PROGRESS": "0"}


def heal(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HEAL, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)


def project(root: Path, manifest: dict[str, object], require: str,
            extra: dict[str, str] | None = None) -> Path:
    manifest = {"name": "app", "version": "1.0.0",
                "scripts": {"start": "node app.js"}, **manifest}
    return committed_repo(root, {"package.json": json.dumps(manifest, indent=2) + "\n",
                                 "app.js": f"require({require!r});\n", **(extra or {})})


def verdict(env: dict[str, str], repo: Path) -> tuple[str, str]:
    """heal run's stderr and the verdict's reason (``heal explain --json``)."""
    done = heal(env, repo, "run", "--timeout", "120", "--", "npm", "run", "start")
    assert done.returncode == 1, done.stderr
    run_id = done.stderr.split("published ", 1)[1].split(None, 1)[0].rstrip(";")
    explained = heal(env, repo, "explain", "--json", run_id)
    return done.stderr, explained.stdout


def test_an_undeclared_module_is_refused_before_npm_install_runs(
        env: dict[str, str], tmp_path: Path) -> None:
    repo = project(tmp_path / "app", {"dependencies": {}}, "left-padzz/lib/x")
    stderr, explained = verdict(env, repo)
    assert "module left-padzz is not declared in package.json" in stderr, stderr
    assert "`npm install left-padzz`" in stderr and "fix the import" in stderr, stderr
    assert "pre-flight refused" in stderr and "apply with" not in stderr, stderr
    assert "not declared in package.json" in explained, explained
    # nothing ran in the user's tree: no lockfile, no node_modules
    assert not (repo / "package-lock.json").exists()
    assert not (repo / "node_modules").exists()
    status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain"],
                            capture_output=True, text=True, check=True).stdout
    assert status == "", status


@pytest.mark.parametrize("manifest,extra", [
    ({"dependencies": {"@acme/left-padzz": "^1.0.0"}}, {}),  # declared: npm install may help
    ({"workspaces": ["packages/*"]}, {}),  # a workspace root: heal cannot tell, no refusal
], ids=["declared", "workspaces"])
def test_a_declared_or_uncertain_module_is_still_suggested(
        env: dict[str, str], tmp_path: Path, manifest: dict[str, object],
        extra: dict[str, str]) -> None:
    repo = project(tmp_path / "app", manifest, "@acme/left-padzz/sub", extra)
    stderr, _ = verdict(env, repo)
    assert "suggested fix node.modules_missing/fix" in stderr, stderr
    assert "not declared" not in stderr, stderr


@pytest.mark.parametrize("require,extra", [
    # no lockfile: express may bring debug (npm hoists it), so npm install may help
    ("debug", {".npmrc": "package-lock=false\n"}),
    # a TypeScript paths alias: the project's own module, never `npm install utils`
    ("utils/date", {"package-lock.json": '{"packages": {"node_modules/express": {}}}\n',
                    "tsconfig.json": '{\n  // aliases\n  "compilerOptions": {"baseUrl": ".",'
                                     ' "paths": {"utils/*": ["src/utils/*"]}},\n}\n'}),
], ids=["transitive-no-lockfile", "tsconfig-alias"])
def test_a_transitive_dependency_or_an_alias_is_not_refused(
        env: dict[str, str], tmp_path: Path, require: str, extra: dict[str, str]) -> None:
    repo = project(tmp_path / "app", {"dependencies": {"express": "4.21.2"}}, require, extra)
    stderr, explained = verdict(env, repo)
    assert "pre-flight refused" not in stderr and "not declared" not in stderr, stderr
    assert "npm install utils" not in stderr + explained, stderr
