"""QA s14d D2: a repository tracking a file whose name is not UTF-8 (a Latin-1 name, common
in old repositories) made every worktree verification of it a dead letter: heal read
``git ls-files -s -z`` (which prints names raw) as strict UTF-8, the validate stage raised
UnicodeDecodeError five times and the decision was ``none``. git's output is now decoded with
surrogate escapes (the OS's own form of such a name, usable as a path), and a message naming
one shows its bytes as ``\\xNN`` (real CLI in a subprocess, real engines, real ruff)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = "import sys; from pipeline.cli import main; sys.exit(main(sys.argv[1:]))"
GIT = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
UNUSED = "import os\n\n\ndef f():\n    return 1\n"
LATIN1 = b"r\xe9sum\xe9.py"  # "résumé.py" in Latin-1: not UTF-8


def _repo(tmp_path: Path, link_to: bytes) -> Path:
    """``calc/ops.py`` with an unused import (ruff fixes it), a tracked file with a Latin-1
    name, and a tracked symbolic link with a Latin-1 name leading to ``link_to``."""
    root = tmp_path / "repo"
    (root / "calc").mkdir(parents=True)
    (root / "calc" / "__init__.py").write_text("")
    (root / "calc" / "ops.py").write_text(UNUSED)
    with open(os.path.join(os.fsencode(root), LATIN1), "wb") as fh:
        fh.write(b"X = 1\n")
    os.symlink(link_to, os.path.join(os.fsencode(root), b"l\xffnk"))
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", "init"], cwd=root, check=True)
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True,
                            check=True).stdout.split(b"\0")
    assert LATIN1 in listed and b"l\xffnk" in listed
    return root


def _heal(root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([sys.executable, "-c", CLI, "run", "--mode", "auto-safe",
                           "--timeout", "120", "--", "ruff", "check", "calc"], cwd=root,
                          env=full, capture_output=True, timeout=300, check=False)


def _changed(root: Path) -> list[bytes]:
    return subprocess.run(["git", "diff", "--name-only", "-z", "HEAD~1", "HEAD"], cwd=root,
                          capture_output=True, check=True).stdout.split(b"\0")[:-1]


def test_a_repository_tracking_a_non_utf8_file_name_is_verified_and_fixed(
        tmp_path: Path, heal_env: dict[str, str], own_database: str) -> None:
    root = _repo(tmp_path, b"calc/ops.py")  # the link leads inside the repository
    done = _heal(root, heal_env)
    out = (done.stdout + done.stderr).decode("utf-8", "replace")
    assert "UnicodeDecodeError" not in out and "dead letter" not in out, out
    assert done.returncode == 0, out
    assert "import os" not in (root / "calc" / "ops.py").read_text(), out
    assert _changed(root) == [b"calc/ops.py"], out
    # the Latin-1 names are still tracked, as they were
    assert os.path.exists(os.path.join(os.fsencode(root), LATIN1))
    assert os.path.islink(os.path.join(os.fsencode(root), b"l\xffnk"))


def test_a_non_utf8_link_leading_out_is_refused_with_its_name_shown(
        tmp_path: Path, heal_env: dict[str, str], own_database: str) -> None:
    """tracked_symlinks lists the link under its OS name (so it is found), and the refusal
    shows the name's byte as ``\\xff``."""
    other = tmp_path / "other"
    other.mkdir()
    root = _repo(tmp_path, os.fsencode(other))
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                          text=True, check=True).stdout
    done = _heal(root, heal_env)
    out = (done.stdout + done.stderr).decode("utf-8", "replace")
    assert "UnicodeDecodeError" not in out and "dead letter" not in out, out
    assert done.returncode == 1, out
    assert "symbolic links leading outside it" in out and "l\\xffnk ->" in out, out
    assert (root / "calc" / "ops.py").read_text() == UNUSED, out
    assert subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                          text=True, check=True).stdout == head


def test_a_commit_touching_a_non_utf8_name_is_taught_and_non_utf8_text_refused(
        tmp_path: Path, heal_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`heal learn --commit` reads ``git diff --raw -z`` (names raw) the same way: a commit
    adding a file with a Latin-1 name is taught; one whose diff holds Latin-1 text is
    refused with what to change (exit 2), never an internal error."""
    from pipeline.cli import main

    token = "".join(chr(97 + int(c, 16)) for c in uuid.uuid4().hex[:10])
    repo = tmp_path / "repo"
    repo.mkdir()
    name = f"Glorp{token.capitalize()}Error"
    (repo / "app.py").write_text(
        f"import os\n\n\nclass {name}(Exception):\n    pass\n\n\n"
        f"if not os.path.exists('ready'):\n    raise {name}('the frob at /tmp/{token} is cold')\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*GIT, "commit", "-qm", "app"], cwd=repo, check=True)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("HEAL_WORKFLOW", f"wf-{token}")
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    status = main(["run", "--timeout", "120", "--mode", "suggest", "--",
                   sys.executable, "-c", "import app"])
    err = capsys.readouterr().err
    assert status == 1 and name in err, err

    # Latin-1 text in the diff: refused, nothing taught
    with open(os.path.join(os.fsencode(repo), b"notes.txt"), "wb") as fh:
        fh.write(b"caf\xe9\n")
    (repo / "ready").write_text("")
    subprocess.run([*GIT, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*GIT, "commit", "-qm", "warm up"], cwd=repo, check=True)
    assert main(["learn", "--last", "--commit", "HEAD"]) == 2
    err = capsys.readouterr().err
    assert "bytes that are not UTF-8" in err and "internal error" not in err, err

    # a Latin-1 file name (UTF-8 text): taught
    subprocess.run([*GIT, "reset", "-q", "--hard", "HEAD~1"], cwd=repo, check=True)
    with open(os.path.join(os.fsencode(repo), LATIN1), "wb") as fh:
        fh.write(b"X = 1\n")
    (repo / "ready").write_text("")
    subprocess.run([*GIT, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*GIT, "commit", "-qm", "warm up"], cwd=repo, check=True)
    status = main(["learn", "--last", "--commit", "HEAD"])
    out = capsys.readouterr()
    assert status == 0, out.out + out.err
    assert "internal error" not in out.err, out.err
