"""Attack 6: programs named by a repository's git configuration. Whoever can write
``.git/hooks`` can write ``.git/config`` too, so heal's git runs none of what it names: hooks,
``core.fsmonitor``, filter drivers (``clean``/``smudge``/``process``), diff drivers
(``textconv``, ``command``, ``diff.external``), merge drivers, ``gpg.program`` (signing, and
signature checks), trailer programs (``trailer.<key>.command``/``.cmd``, run by ``git commit
--trailer``: heal writes its trailers into the message itself), editors; heal's ``heal/``
commits are not signed, even when the user's global config asks for it. Real git, real
embedded engines, ``heal run`` as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.demo.sample import git
from pipeline.gitops import GitRepo, Trailers

WORKTREE = Path(__file__).resolve().parents[2]
CLI = "import sys; from pipeline.cli import main; sys.exit(main())"


def _marker(bin_dir: Path, marks: Path, name: str) -> str:
    """A program that leaves ``marks/<name>`` behind and passes its input through."""
    script = bin_dir / f"{name}.sh"
    script.write_text(f"#!/bin/sh\ntouch '{marks / name}'\ncat\n")
    script.chmod(0o755)
    return str(script)


def _trailer_program(bin_dir: Path, marks: Path, name: str) -> str:
    """A trailer command: leaves ``marks/<name>`` behind and prints what git would then
    write into the commit message as a trailer's value."""
    script = bin_dir / f"{name}.sh"
    script.write_text(f"#!/bin/sh\ntouch '{marks / name}'\necho injected-{name}\n")
    script.chmod(0o755)
    return str(script)


def _hostile_config(root: Path, tmp_path: Path) -> Path:
    """Every program-running setting git honours, each naming a marker program: in the
    repository's config, in a file only heal's worktrees include, and in the user's global
    config (returned: GIT_CONFIG_GLOBAL)."""
    marks, bin_dir = tmp_path / "marks", tmp_path / "bin"
    marks.mkdir()
    bin_dir.mkdir()
    settings = {
        "core.fsmonitor": _marker(bin_dir, marks, "fsmonitor"),
        "filter.x.clean": _marker(bin_dir, marks, "clean"),
        "filter.x.smudge": _marker(bin_dir, marks, "smudge"),
        "filter.x.process": _marker(bin_dir, marks, "process"),
        "filter.x.required": "true",
        "filter.a=b.clean": _marker(bin_dir, marks, "clean-eq"),
        "filter.a=b.smudge": _marker(bin_dir, marks, "smudge-eq"),
        "diff.y.textconv": _marker(bin_dir, marks, "textconv"),
        "diff.y.command": _marker(bin_dir, marks, "diff-command"),
        "diff.external": _marker(bin_dir, marks, "diff-external"),
        "merge.z.driver": _marker(bin_dir, marks, "merge-driver") + " %O %A %B",
        "commit.gpgsign": "true",
        "tag.gpgsign": "true",
        "gpg.program": _marker(bin_dir, marks, "gpg"),
        "log.showSignature": "true",
        "merge.verifySignatures": "true",
        # run by git interpret-trailers: .command for every commit given a --trailer, .cmd
        # when a trailer of its key (here one of heal's own) is given
        "trailer.x.command": _trailer_program(bin_dir, marks, "trailer-command"),
        "trailer.y.cmd": _trailer_program(bin_dir, marks, "trailer-cmd"),
        "trailer.h.key": "Healed-by",
        "trailer.h.cmd": _trailer_program(bin_dir, marks, "trailer-cmd-healed-by"),
        "core.editor": _marker(bin_dir, marks, "editor"),
        "sequence.editor": _marker(bin_dir, marks, "sequence-editor"),
    }
    for key, value in settings.items():
        git(root, "config", key, value)
    # the same through a file the repository's config includes
    included = tmp_path / "included.gitconfig"
    included.write_text(f"[trailer \"inc\"]\n\tcommand = "
                        f"{_trailer_program(bin_dir, marks, 'trailer-included')}\n"
                        f"[trailer \"incf\"]\n\tkey = Heal-Fix\n\tcmd = "
                        f"{_trailer_program(bin_dir, marks, 'trailer-included-cmd')}\n")
    git(root, "config", "include.path", str(included))
    # a file only linked worktrees include (their git dir is .git/worktrees/<name>)
    only_worktrees = tmp_path / "worktree.gitconfig"
    only_worktrees.write_text(f"[filter \"w\"]\n\tclean = {_marker(bin_dir, marks, 'clean-w')}\n"
                              f"\tsmudge = {_marker(bin_dir, marks, 'smudge-w')}\n")
    git(root, "config", "includeIf.gitdir:**/worktrees/**.path", str(only_worktrees))
    (root / ".git/info").mkdir(exist_ok=True)
    (root / ".git/info/attributes").write_text(
        "* filter=x diff=y merge=z\n*.txt filter=a=b\n*.md filter=w\n")
    hooks = root / ".git/hooks"
    hooks.mkdir(exist_ok=True)
    for hook in ("post-checkout", "pre-commit", "prepare-commit-msg", "post-commit",
                 "post-merge", "post-rewrite", "reference-transaction"):
        (hooks / hook).write_text(f"#!/bin/sh\ntouch '{marks / hook}'\n")
        (hooks / hook).chmod(0o755)
    global_config = tmp_path / "global.gitconfig"
    global_config.write_text(f"[commit]\n\tgpgsign = true\n[gpg]\n\tprogram = "
                             f"{_marker(bin_dir, marks, 'gpg-global')}\n"
                             "[user]\n\tname = u\n\temail = u@example.com\n")
    return global_config


def _repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    git(root, "config", "user.email", "t@example.com")
    git(root, "config", "user.name", "t")
    (root / "run.sh").write_text("#!/bin/sh\necho ok\n")
    (root / "run.sh").chmod(0o644)
    (root / "notes.txt").write_text("1\n2\n3\n4\n5\n6\n")
    (root / "README.md").write_text("readme\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


def test_heal_run_starts_no_program_the_repository_s_git_config_names(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    # Given a registered (heal run) repository whose git config names a marker program for
    # every setting that runs one, a global config asking for signed commits, and a script
    # that lacks its execute bit
    root = _repo(tmp_path)
    global_config = _hostile_config(root, tmp_path)
    head = git(root, "rev-parse", "HEAD")
    env = {**os.environ, **heal_env, "PYTHONPATH": str(WORKTREE),
           "GIT_CONFIG_GLOBAL": str(global_config)}
    # When heal run verifies and applies the fix (chmod +x, committed)
    done = subprocess.run([sys.executable, "-c", CLI, "run", "--mode", "auto-safe",
                           "--timeout", "120", "--", "sh", "-c", "./run.sh"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    # Then the fix was committed on the branch, unsigned, and the step passes
    assert done.returncode == 0, done.stderr
    assert "gpg failed" not in done.stderr
    # And no program the configuration names ran, nor any hook
    assert sorted(p.name for p in (tmp_path / "marks").iterdir()) == []
    log = git(root, "log", "--format=%H %s", f"{head}..HEAD")
    assert log, done.stderr
    commit = subprocess.run(["git", "cat-file", "commit", "HEAD"], cwd=root,
                            capture_output=True, text=True, check=True).stdout
    assert "Heal-Fix: fs.permission_denied_exec/fix" in commit
    assert "gpgsig" not in commit
    assert git(root, "ls-files", "-s", "run.sh").startswith("100755 ")
    # And heal's commit message is heal's alone: subject, body, and its three trailers, which
    # git still reads as trailers (no trailer program ran, none of their output is in it)
    message = git(root, "log", "-1", "--format=%B")
    assert "injected" not in message
    subject, body, trailers = message.split("\n\n")
    assert subject.startswith("heal: ")
    assert body.startswith("Automated fix for error ")
    fine = trailers.splitlines()[1].removeprefix("Heal-Fingerprint: ")
    assert trailers.splitlines() == ["Healed-by: heal", f"Heal-Fingerprint: {fine}",
                                     "Heal-Fix: fs.permission_denied_exec/fix"]
    assert git(root, "log", "-1", "--format=%(trailers:only,unfold)").splitlines() == \
        trailers.splitlines()
    parsed = subprocess.run(["git", "interpret-trailers", "--parse"], input=message,
                            cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert parsed.splitlines() == trailers.splitlines()


def test_cherry_pick_revert_and_diffs_start_no_configured_program(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the same hostile configuration, a filter the user's own global config sets up for
    # *.dat (as git-lfs does), and a verified fix commit whose branch moved on
    root = _repo(tmp_path)
    (root / "a.dat").write_text("data\n")
    git(root, "add", "a.dat")
    git(root, "commit", "-q", "-m", "data")
    base = git(root, "rev-parse", "HEAD")
    global_config = _hostile_config(root, tmp_path)
    marks, bin_dir = tmp_path / "marks", tmp_path / "bin"
    with global_config.open("a") as fh:
        fh.write(f"[filter \"lfs-like\"]\n\tclean = {_marker(bin_dir, marks, 'user-clean')}\n"
                 f"\tsmudge = {_marker(bin_dir, marks, 'user-smudge')}\n")
    with (root / ".git/info/attributes").open("a") as fh:
        fh.write("*.dat filter=lfs-like\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(global_config))
    repo = GitRepo(root)
    work = repo.add_worktree(tmp_path / "wt", base)
    (work / "notes.txt").write_text("one\n2\n3\n4\n5\n6\n")
    (work / "README.md").write_text("readme\nfixed\n")
    (work / "a.dat").write_text("data\nfixed\n")
    fix = repo.commit_all(work, "fix", "body", Trailers("heal", "fp", "f/fix"))
    (root / "notes.txt").write_text("1\n2\n3\n4\n5\nsix\n")  # merged by the driver
    repo.run("commit", "-q", "-am", "moved on")
    # When heal diffs it, cherry-picks it onto the branch and reverts it
    assert "+one" in repo.run("show", fix).stdout
    assert "+one" in repo.run("diff", base, fix).stdout
    assert repo.run("log", "-1", "--format=%s", fix).stdout.strip() == "fix"
    picked = repo.bring_onto_current(fix)
    merged = (root / "notes.txt").read_text()
    repo.revert(picked, "rolled back")
    repo.remove_worktree(work)
    # Then every step worked, no program the repository's config names ran (the user's own
    # filter did), and no commit is signed
    assert merged == "one\n2\n3\n4\n5\nsix\n"
    assert (root / "notes.txt").read_text() == "1\n2\n3\n4\n5\nsix\n"
    assert sorted(p.name for p in marks.iterdir()) == ["user-clean", "user-smudge"]
    for commit in (fix, picked, "HEAD"):
        assert "gpgsig" not in repo.run("cat-file", "commit", commit).stdout
    # And the fix's and the revert's trailers are heal's own, read back as trailers
    assert repo.run("log", "-1", "--format=%(trailers:key=Heal-Fix,valueonly)",
                    picked).stdout.strip() == "f/fix"
    assert repo.run("log", "-1", "--format=%B", fix).stdout.rstrip("\n") == \
        "fix\n\nbody\n\nHealed-by: heal\nHeal-Fingerprint: fp\nHeal-Fix: f/fix"
    assert repo.run("log", "-1", "--format=%(trailers)").stdout.strip() == \
        "Healed-by: heal (rollback)"


def test_a_commit_heal_runs_without_a_message_opens_no_editor(tmp_path: Path) -> None:
    # Given a repository whose config names an editor (core.editor) and a staged change
    root = _repo(tmp_path)
    marks, bin_dir = tmp_path / "marks", tmp_path / "bin"
    marks.mkdir()
    bin_dir.mkdir()
    git(root, "config", "core.editor", _marker(bin_dir, marks, "editor"))
    git(root, "config", "sequence.editor", _marker(bin_dir, marks, "sequence-editor"))
    (root / "README.md").write_text("changed\n")
    git(root, "add", "README.md")
    # When heal's git is asked for a commit that would need a message typed in
    done = GitRepo(root).run("commit", check=False)
    # Then no editor ran: git stops for want of a message and nothing is committed
    assert done.returncode != 0
    assert sorted(p.name for p in marks.iterdir()) == []
    assert git(root, "log", "--format=%s") == "init"
