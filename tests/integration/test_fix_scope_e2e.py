"""QA s14a D14: `heal run --mode auto-safe -- ruff check calc` was healed with `ruff check
--fix .`, so heal's commit also removed `import nosuchmod_abc` from boom.py, a module outside
calc/ that nothing checked (re-running `ruff check calc` verified only calc/). The formatter
and linter seed fixes now act on the paths the failing command checked, and a path that is
not a plain path inside the repository is never handed to the tool (real CLI in a
subprocess, real engines, real ruff)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = "import sys; from pipeline.cli import main; sys.exit(main(sys.argv[1:]))"
GIT = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
UNUSED = "import os\n\n\ndef f():\n    return 1\n"
SIDE_EFFECT = "import nosuchmod_abc\n\n\ndef g():\n    return 2\n"


def _repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "calc").mkdir(parents=True)
    (root / "calc" / "__init__.py").write_text("")
    (root / "calc" / "ops.py").write_text(UNUSED)
    (root / "boom.py").write_text(SIDE_EFFECT)  # outside calc/: must stay as it is
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", "init"], cwd=root, check=True)
    return root


def _heal(root: Path, env: dict[str, str], *command: str,
          cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``heal run --mode auto-safe -- COMMAND`` with a ``ruff`` first on PATH that logs each
    argv it gets (to ``ruff-calls.log`` beside the repository) and runs the real ruff."""
    real = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert real is not None
    shims = root.parent / "shims"
    shims.mkdir(exist_ok=True)
    shim = shims / "ruff"
    shim.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> {root.parent / 'ruff-calls.log'}\n"
                    f"exec {real} \"$@\"\n")
    shim.chmod(0o755)
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT),
            "PATH": f"{shims}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}"
                    f"{os.environ['PATH']}"}
    return subprocess.run([sys.executable, "-c", CLI, "run", "--mode", "auto-safe",
                           "--timeout", "120", "--", *command], cwd=cwd or root, env=full,
                          capture_output=True, text=True, timeout=300, check=False)


def _fix_calls(root: Path) -> list[str]:
    """The argv (joined) of every ``ruff ... --fix`` heal ran."""
    log = root.parent / "ruff-calls.log"
    return [line for line in log.read_text().splitlines() if "--fix" in line]


def _head(root: Path) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                          text=True, check=True).stdout.strip()


def _changed(root: Path) -> list[str]:
    out = subprocess.run(["git", "diff", "--name-only", "HEAD~1", "HEAD"], cwd=root,
                         capture_output=True, text=True, check=False).stdout
    return out.split()


@pytest.mark.parametrize("command", [("ruff", "check", "calc"),
                                     ("bash", "-c", "ruff check calc")])  # the Action's run:
def test_ruff_fix_acts_only_on_the_path_the_failing_step_checked(
        tmp_path: Path, heal_env: dict[str, str], own_database: str,
        command: tuple[str, ...]) -> None:
    root = _repo(tmp_path)
    done = _heal(root, heal_env, *command)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "import os" not in (root / "calc" / "ops.py").read_text()
    assert (root / "boom.py").read_text() == SIDE_EFFECT  # its import was not removed
    assert _changed(root) == ["calc/ops.py"]
    assert _fix_calls(root) == ["check --fix --no-unsafe-fixes -- calc"]


@pytest.mark.parametrize(("command", "fix_call"), [
    (("ruff", "check"), "check --fix --no-unsafe-fixes -- ."),
    (("ruff", "check", "ops.py"), "check --fix --no-unsafe-fixes -- ops.py")])
def test_run_from_a_subdirectory_the_fix_acts_there_not_at_the_root(
        tmp_path: Path, heal_env: dict[str, str], own_database: str,
        command: tuple[str, ...], fix_call: str) -> None:
    """QA s14e D1: heal run did not say where it ran, so from calc/ the fix and the re-run ran
    at the root: `ruff check` there removed boom.py's import, and `ruff check ops.py` found
    no file and counted the fix as failed. The event now carries the directory (tags.cwd,
    signed with the command)."""
    root = _repo(tmp_path)
    done = _heal(root, heal_env, *command, cwd=root / "calc")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (root / "boom.py").read_text() == SIDE_EFFECT
    assert _changed(root) == ["calc/ops.py"]
    assert _fix_calls(root) == [fix_call]


@pytest.mark.parametrize("hostile", ["--config=ruff.toml", "../other", "OUTSIDE", "link"])
def test_a_hostile_path_argument_never_reaches_the_fix(
        tmp_path: Path, heal_env: dict[str, str], own_database: str, hostile: str) -> None:
    root = _repo(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.py").write_text(UNUSED)
    (root / "ruff.toml").write_text("line-length = 100\n")
    subprocess.run([*GIT, "add", "ruff.toml"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", "config"], cwd=root, check=True)
    (root / "link").symlink_to(other)  # untracked: a symbolic link leading out
    (root / ".git" / "info" / "exclude").write_text("link\n")
    argument = str(other) if hostile == "OUTSIDE" else hostile
    head = _head(root)
    done = _heal(root, heal_env, "ruff", "check", argument, "calc")
    out = done.stdout + done.stderr
    # the fix never got the argument, as an option or as a path
    calls = _fix_calls(root)
    assert calls and not any(argument in call for call in calls), (calls, out)
    assert (other / "x.py").read_text() == UNUSED, out
    assert (root / "boom.py").read_text() == SIDE_EFFECT, out
    # an option (QA s14c D1: also as --opt=value) or a path that is not plain inside the
    # repository: the fix may act on the whole working directory in a verification worktree
    # only; nothing is applied
    assert all(call == "check --fix --no-unsafe-fixes ." for call in calls), (calls, out)
    assert done.returncode != 0 and _head(root) == head, out
    assert (root / "calc" / "ops.py").read_text() == UNUSED, out


@pytest.mark.parametrize("command", [
    ("ruff", "check", "--extend-exclude=calc/legacy.py", "calc"),  # QA s14c D1
    ("ruff", "check", "--exclude=boom.py,calc/legacy.py"),  # D1: no operand, was `-- .`
    ("ruff", "check", "--ignore=F401", "calc"),  # D2: fails on F541 only
    ("ruff", "check", "--ignore", "F401", "calc"),  # D2, two words
    ("bash", "-c", "ruff check --extend-select F541 --exclude calc/legacy.py calc"),
])
def test_an_option_that_narrows_the_check_holds_the_fix(
        tmp_path: Path, heal_env: dict[str, str], own_database: str,
        command: tuple[str, ...]) -> None:
    """QA s14c D1/D2: the failing step excluded a file or ignored a rule, so a fix run without
    that option would edit what nothing checked (the side-effect import in calc/legacy.py),
    and re-running the failing command could not notice: the fix is verified but held."""
    root = _repo(tmp_path)
    (root / "calc" / "legacy.py").write_text(SIDE_EFFECT)
    (root / "calc" / "fs.py").write_text('def k():\n    return f"abc"\n')  # F541
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", "more"], cwd=root, check=True)
    head = _head(root)
    done = _heal(root, heal_env, *command)
    out = done.stdout + done.stderr
    assert done.returncode != 0 and _head(root) == head, out
    assert "not applied by itself" in out and "the option" in out, out
    assert (root / "calc" / "legacy.py").read_text() == SIDE_EFFECT, out
    assert (root / "boom.py").read_text() == SIDE_EFFECT, out
    assert (root / "calc" / "ops.py").read_text() == UNUSED, out
    assert all(call == "check --fix --no-unsafe-fixes ." for call in _fix_calls(root)), out


def test_an_output_only_option_keeps_the_scope(
        tmp_path: Path, heal_env: dict[str, str], own_database: str) -> None:
    """`ruff check --output-format=concise -q calc` changes only the output (as the Action's
    `--output-format=github` does): the fix still acts on calc/ and is applied."""
    root = _repo(tmp_path)
    done = _heal(root, heal_env, "ruff", "check", "--output-format=concise", "-q", "calc")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _changed(root) == ["calc/ops.py"]
    assert _fix_calls(root) == ["check --fix --no-unsafe-fixes -- calc"]


def test_an_unknown_scope_is_verified_but_held_for_a_person(
        tmp_path: Path, heal_env: dict[str, str], own_database: str) -> None:
    """A wrapper (a shell script, `make lint`) hides which paths were checked: the fix is verified
    in a worktree and suggested, never applied by itself."""
    root = _repo(tmp_path)
    head = _head(root)
    done = _heal(root, heal_env, "sh", "-c", "ruff check calc || exit 1")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "not applied by itself" in out, out
    assert _head(root) == head and (root / "boom.py").read_text() == SIDE_EFFECT, out
    assert (root / "calc" / "ops.py").read_text() == UNUSED, out
