"""The git layer: worktrees, heal branches, commits with trailers, revert commits.

Every operation goes through the git CLI (argv, never a shell string) or GitPython; any
failure becomes :class:`GitError` with git's own message. Nothing here rewrites history the
user already has: fixes land as new commits (fast-forward or cherry-pick), and rollbacks are
``git revert`` commits.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import GitError

log = logging.getLogger(__name__)
GIT_TIMEOUT_S = 60.0
BRANCH_PREFIX = "heal/"
#: how many attempt numbers past the counter :meth:`GitRepo.create_free_branch` tries
MAX_BRANCH_TRIES = 1000
#: git's message keeps at most this many lines and characters in a GitError
MAX_REASON_LINES = 8
MAX_REASON_CHARS = 600
#: Settings every git command heal runs is given (``-c`` outranks every config file): git then
#: starts no program that a repository's ``.git/config`` (or the user's global config) names.
#: Whoever can write ``.git/hooks`` can write ``.git/config`` too, so both are data to heal.
#: No hooks: a ``post-checkout`` hook writing into a verification worktree would otherwise be
#: committed with the fix, and ``prepare-commit-msg`` (which ``--no-verify`` does not skip)
#: could fail every commit. No fsmonitor program. No signing: heal's ``heal/`` commits are
#: not signed (a user's ``commit.gpgsign = true`` made every verification fail), and no
#: signature is checked (``log.showSignature``, ``merge.verifySignatures`` run gpg.program).
SAFE_CONFIG = (
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.fsmonitor=false",
    "-c", "commit.gpgSign=false",
    "-c", "tag.gpgSign=false",
    "-c", "log.showSignature=false",
    "-c", "merge.verifySignatures=false",
    "-c", "submodule.recurse=false",
)
#: subcommands that may print a diff: external diff programs (``diff.external``,
#: ``diff.<driver>.command``) and textconv filters (``diff.<driver>.textconv``) are off. An
#: empty ``diff.<driver>.command`` would not do: git tries to run the empty string
DIFF_FLAGS = ("--no-ext-diff", "--no-textconv")
_DIFFING = frozenset({"diff", "show", "log"})
#: filter drivers (``filter.<name>.clean/smudge/process``, attached by ``.gitattributes`` or
#: ``.git/info/attributes``): an empty command is no filter (git passes the content through),
#: and ``required = false`` keeps git from refusing a file for want of one
_FILTER_OFF = (("clean", ""), ("smudge", ""), ("process", ""), ("required", "false"))
#: merge drivers (``merge.<name>.driver``, used by cherry-pick, revert and merge): every
#: configured name becomes git's own three-way text merge (an empty command is an error,
#: and a name with no driver line dies in git)
_MERGE_OFF = (("driver", "git merge-file --marker-size=%L %A %O %B"),)
#: config scopes that are the operator's side: the user's ``~/.gitconfig``, ``/etc/gitconfig``
#: and ``-c`` from heal's own environment (``local`` and ``worktree`` are the repository's)
_OPERATOR_SCOPES = frozenset({"global", "system", "command"})
#: the environment variables ``--config-env`` reads for a driver name holding ``=`` (which
#: ``-c NAME=VALUE`` would split at the wrong place)
_OFF_ENV = {"": "HEAL_GIT_OFF_EMPTY", "false": "HEAL_GIT_OFF_FALSE",
            _MERGE_OFF[0][1]: "HEAL_GIT_OFF_MERGE"}
#: heal's commits: no hooks (``--no-verify``; they are off anyway), and the message exactly as
#: heal wrote it whatever ``commit.cleanup`` the repository sets
_COMMIT = ("--no-verify", "--cleanup=whitespace")
#: no editor ever runs (``:`` is git's "no editor"; the variables outrank ``core.editor`` and
#: ``sequence.editor``): heal's commands never ask for one, this keeps it so
_NO_EDITOR = {"GIT_EDITOR": ":", "GIT_SEQUENCE_EDITOR": ":"}
_SAFE_REF = re.compile(r"[^A-Za-z0-9._-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def branch_name(fingerprint: str, attempt: int) -> str:
    """``heal/<fingerprint>-<attempt>`` with anything git would refuse replaced."""
    clean = _SAFE_REF.sub("-", fingerprint).strip("-.")[:60] or "unknown"
    return f"{BRANCH_PREFIX}{clean}-{attempt}"


def one_line(text: str) -> str:
    """``text`` as one line: a subject or body paragraph of heal's commit quotes event text
    (the failing command), whose line breaks could otherwise end the paragraph, start a
    ``---`` line (where ``git interpret-trailers`` stops reading) or plant a trailer-looking
    last paragraph ahead of heal's own."""
    return _CONTROL.sub(" ", text).strip()


def trailer_block(*pairs: tuple[str, str]) -> str:
    """``Key: value`` lines, one per pair, for the last paragraph of a commit message, where
    ``git interpret-trailers --parse`` and ``git log --format=%(trailers)`` read them. heal
    writes its trailers itself and never passes ``--trailer``: that makes git run
    ``interpret-trailers``, which runs every ``trailer.<key>.command``/``.cmd`` the
    repository's config names and writes its output into the message (and ``-c`` cannot
    switch one off: an empty command is run, and fails). A value's line breaks and other
    control characters become spaces, so each trailer stays one line."""
    return "\n".join(f"{key}: {_CONTROL.sub(' ', value).strip()}" for key, value in pairs)


@dataclass(frozen=True)
class Trailers:
    healed_by: str
    fingerprint: str
    fix_id: str

    def block(self) -> str:
        """The trailer paragraph heal ends a fix commit's message with."""
        return trailer_block(("Healed-by", self.healed_by),
                             ("Heal-Fingerprint", self.fingerprint), ("Heal-Fix", self.fix_id))


def _driver_names(cwd: str | Path, env: Mapping[str, str], timeout: float) -> dict[str, set[str]]:
    """The filter and merge driver names that the repository's own config (or a file it
    includes) configures, as git reads it in ``cwd`` (``includeIf`` evaluated there), by
    section. Names set only in the user's global or the system config are the operator's and
    are not listed (git-lfs keeps working); with a git too old to tell scopes (before 2.26)
    every configured name is."""
    names: dict[str, set[str]] = {"filter": set(), "merge": set()}
    base = ["git", *SAFE_CONFIG, "config", "-z"]
    query = ["--get-regexp", r"^(filter|merge)\."]
    try:
        done = subprocess.run([*base, "--show-scope", *query], cwd=str(cwd),
                              capture_output=True, timeout=timeout, check=False, env=dict(env))
        scoped = done.returncode in (0, 1)  # 1: no such key
        if not scoped:
            done = subprocess.run([*base, *query], cwd=str(cwd), capture_output=True,
                                  timeout=timeout, check=False, env=dict(env))
    except (OSError, subprocess.SubprocessError):
        return names  # the command itself will fail the same way
    fields = done.stdout.decode("utf-8", "surrogateescape").split("\0")
    # --show-scope -z: "SCOPE\0KEY\nVALUE\0" per entry; without it "KEY\nVALUE\0"
    entries = (zip(fields[0::2], fields[1::2], strict=False) if scoped  # a last "" is unpaired
               else (("", f) for f in fields))
    for scope, entry in entries:
        if scope in _OPERATOR_SCOPES:
            continue
        section, _, rest = entry.partition("\n")[0].partition(".")
        name, _, variable = rest.rpartition(".")
        if section in names and name and variable:
            names[section].add(name)
    return names


def _overrides(names: dict[str, set[str]]) -> list[str]:
    args: list[str] = []
    for section, settings in (("filter", _FILTER_OFF), ("merge", _MERGE_OFF)):
        for name in sorted(names[section]):
            for variable, value in settings:
                key = f"{section}.{name}.{variable}"
                # -c splits at the first "=", --config-env at the last
                args += ([f"--config-env={key}={_OFF_ENV[value]}"] if "=" in name
                         else ["-c", f"{key}={value}"])
    return args


def run_git(args: Sequence[str], cwd: str | Path, *, config: Sequence[str] = (),
            env: Mapping[str, str] | None = None, timeout: float = GIT_TIMEOUT_S,
            **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    """``git [SAFE_CONFIG] [driver overrides] [config] ARGS`` in ``cwd``: every git command
    heal runs goes through here, so none starts a program a repository's or the user's git
    config names (hooks, fsmonitor, gpg, filter, merge, external diff and textconv drivers,
    editors; heal's commits carry no ``--trailer``, see :func:`trailer_block`).
    ``kwargs`` go to :func:`subprocess.run`.

    Raises:
        OSError, subprocess.SubprocessError: as :func:`subprocess.run` (git cannot start,
            times out, or ``check`` and it failed).
    """
    full_env = {**(os.environ if env is None else env),
                **{var: value for value, var in _OFF_ENV.items()}, **_NO_EDITOR}
    overrides = _overrides(_driver_names(cwd, full_env, timeout))
    args = list(args)
    if args and args[0] in _DIFFING:
        args[1:1] = DIFF_FLAGS
    return subprocess.run(["git", *SAFE_CONFIG, *overrides, *config, *args], cwd=str(cwd),
                          env=full_env, timeout=timeout, **kwargs)


def find_root(path: str | Path) -> Path:
    """The top of the git work tree holding ``path``.

    Raises:
        GitError: not inside a git repository.
    """
    # the git command answers in milliseconds; importing GitPython takes 0.2 s. Without the
    # GIT_* variables (a hook sets GIT_DIR, and git would then call any folder the top): the
    # root is discovered from ``path`` alone, as GitPython does when given a path
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    try:
        # a root that is not UTF-8 comes back as the OS's own path (surrogate escapes)
        out = run_git(["rev-parse", "--show-toplevel"], cwd=path, capture_output=True,
                      encoding="utf-8", errors="surrogateescape", timeout=30, check=False,
                      env=env)
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip()).resolve()
    except (OSError, subprocess.SubprocessError):
        pass
    # not a work tree, or git refused (e.g. another owner): GitPython decides and says why
    import git

    try:
        repo = git.Repo(str(path), search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise GitError(f"{path} is not inside a git repository") from exc
    if repo.working_tree_dir is None:
        raise GitError(f"{path} is a bare repository; heal needs a work tree")
    return Path(repo.working_tree_dir).resolve()


class GitRepo:
    """One repository (``root`` is its work tree); every method may raise GitError."""

    def __init__(self, root: str | Path) -> None:
        self.root = find_root(root)

    # -- plumbing -------------------------------------------------------------------------
    def run(self, *args: str, cwd: Path | None = None, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``git ARGS`` (argv) in ``cwd`` (default the root). Output (and ``stdin``) is
        UTF-8 with surrogate escapes (PEP 383): a byte that is not UTF-8 (a file name
        ``ls-files -z`` prints raw, in Latin-1 say) decodes, and such a name is the OS's own
        path (:func:`os.fsdecode`'s form), usable as one.

        Raises:
            GitError: git exits non-zero (when ``check``), times out or cannot start.
        """
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
        try:
            proc: subprocess.CompletedProcess[str] = run_git(
                args, cwd or self.root, config=self._identity(), env=env, input=stdin,
                capture_output=True, encoding="utf-8", errors="surrogateescape", check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise GitError(f"git {' '.join(args[:2])} failed: {exc}") from exc
        if check and proc.returncode != 0:
            msg = git_reason(proc.stderr or proc.stdout) or f"exit {proc.returncode}"
            raise GitError(f"git {' '.join(args[:2])}: {msg}")
        return proc

    def _identity(self) -> list[str]:
        # Commits must not fail on machines with no git identity; the user's own identity
        # wins whenever it is configured.
        if not hasattr(self, "_ident"):
            probe = run_git(["config", "user.email"], self.root, capture_output=True,
                            encoding="utf-8", errors="surrogateescape", check=False)
            self._ident = [] if probe.stdout.strip() else [
                "-c", "user.name=heal", "-c", "user.email=heal@localhost"]
        return self._ident

    # -- queries --------------------------------------------------------------------------
    def head(self) -> str:
        return self.run("rev-parse", "HEAD").stdout.strip()

    def is_dirty(self, paths: list[str] | None = None) -> bool:
        out = self.run("status", "--porcelain", "--untracked-files=no", "--", *(paths or []))
        return bool(out.stdout.strip())

    def is_dirty_in(self, cwd: Path) -> bool:
        """Any change (untracked files included) in the work tree at ``cwd``."""
        return bool(self.run("status", "--porcelain", cwd=cwd).stdout.strip())

    def changed_files(self, commit: str) -> list[str]:
        # -z: each name raw (not C-quoted, which no file system path is), see run()
        out = self.run("show", "--name-only", "--format=", "-z", commit)
        return [name for name in out.stdout.split("\0") if name.strip("\n")]

    def snapshot(self) -> str:
        """A commit of the current work tree (tracked changes included) without touching it.

        ``git stash create`` writes a dangling commit and leaves the tree and stash list alone.
        """
        made = self.run("stash", "create").stdout.strip()
        return made or self.head()

    # -- worktrees ------------------------------------------------------------------------
    def add_worktree(self, path: Path, ref: str) -> Path:
        """A detached worktree of ``ref`` at ``path``, made without running any hook (so it
        holds exactly the tracked files of ``ref``)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        # checked out from inside the new worktree, so the drivers neutralized are the ones
        # git reads there (an ``includeIf "gitdir:..."`` may match only a worktree's)
        self.run("worktree", "add", "--no-checkout", "--detach", str(path), ref)
        self.run("reset", "--hard", "--quiet", cwd=path)
        return path

    def tracked_symlinks(self, cwd: Path) -> list[str]:
        """The paths of the symbolic links git tracks in the work tree at ``cwd``."""
        out = self.run("ls-files", "-s", "-z", cwd=cwd).stdout
        links: list[str] = []
        for entry in out.split("\0"):
            meta, _, path = entry.partition("\t")
            if path and meta.startswith("120000 "):
                links.append(path)
        return links

    def remove_worktree(self, path: Path) -> None:
        self.run("worktree", "remove", "--force", str(path), check=False)
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
        self.run("worktree", "prune", check=False)

    # -- changes --------------------------------------------------------------------------
    def apply_check(self, diff: str, cwd: Path | None = None,
                    unidiff_zero: bool = False) -> tuple[bool, str]:
        """``git apply --check``: (applies cleanly?, git's message)."""
        zero = ["--unidiff-zero"] if unidiff_zero else []
        proc = self.run("apply", "--check", "--verbose", *zero, "-", cwd=cwd, stdin=diff,
                        check=False)
        return proc.returncode == 0, (proc.stderr or proc.stdout).strip()

    def apply_diff(self, diff: str, cwd: Path, unidiff_zero: bool = False) -> None:
        zero = ["--unidiff-zero"] if unidiff_zero else []
        self.run("apply", "--whitespace=nowarn", *zero, "-", cwd=cwd, stdin=diff)

    def diff_numstat(self, cwd: Path) -> list[tuple[int, int, str]]:
        """Uncommitted changes in ``cwd`` (untracked included): (added, deleted, path), a
        renamed file under its new path. Paths are raw (``-z``: not C-quoted), see run()."""
        self.run("add", "-A", cwd=cwd)
        fields = self.run("diff", "--cached", "--numstat", "-z", cwd=cwd).stdout.split("\0")
        rows: list[tuple[int, int, str]] = []
        i = 0
        while i < len(fields):
            added, _, rest = fields[i].partition("\t")
            deleted, _, path = rest.partition("\t")
            i += 1
            if not rest:
                continue  # the empty field after the last record
            if not path:  # a rename: "ADDED\tDELETED\t\0OLD\0NEW\0"
                path = fields[i + 1] if i + 1 < len(fields) else ""
                i += 2
            rows.append((int(added) if added.isdigit() else 0,
                         int(deleted) if deleted.isdigit() else 0, path))
        return rows

    def staged_diff(self, cwd: Path) -> str:
        return self.run("diff", "--cached", cwd=cwd).stdout

    def commit_all(self, cwd: Path, subject: str, body: str, trailers: Trailers) -> str:
        """Stage everything in ``cwd`` and commit it; returns the new commit id.

        Raises:
            GitError: nothing to commit, or git refuses.
        """
        self.run("add", "-A", cwd=cwd)
        if not self.run("diff", "--cached", "--name-only", cwd=cwd).stdout.strip():
            raise GitError("the fix changed nothing in the work tree; nothing to commit")
        self.run("commit", *_COMMIT, "-m", one_line(subject), "-m", one_line(body),
                 "-m", trailers.block(), cwd=cwd)
        return self.run("rev-parse", "HEAD", cwd=cwd).stdout.strip()

    def branch_exists(self, name: str) -> bool:
        return self.run("show-ref", "--verify", "--quiet", f"refs/heads/{name}",
                        check=False).returncode == 0

    def create_branch(self, name: str, commit: str) -> None:
        """A new branch ``name`` at ``commit``; an existing branch is never moved.

        Raises:
            GitError: a branch of that name exists (its commits stay where they are).
        """
        if self.branch_exists(name):
            raise GitError(f"a branch named {name} already exists; heal never moves it")
        # without --force git refuses to overwrite a ref created meanwhile (checked again
        # under its own lock), so a race cannot move someone's branch either
        self.run("branch", name, commit)

    def create_free_branch(self, fingerprint: str, attempt: int, commit: str) -> str:
        """``heal/<fingerprint>-<n>`` at ``commit`` for the first ``n >= attempt`` no branch
        has (a user's branch, or heal's own suggestion branch from an attempt counter that
        restarted, is never moved); returns the name.

        Raises:
            GitError: no free name among the next MAX_BRANCH_TRIES numbers.
        """
        for n in range(max(attempt, 1), max(attempt, 1) + MAX_BRANCH_TRIES):
            name = branch_name(fingerprint, n)
            try:
                self.create_branch(name, commit)
            except GitError:
                if self.branch_exists(name):  # taken (before, or meanwhile): next number
                    continue
                raise
            self._record_branch(name, commit)
            return name
        raise GitError(f"no free branch name {branch_name(fingerprint, attempt)} .. "
                       f"-{attempt + MAX_BRANCH_TRIES - 1}: delete old heal/ branches")

    def _record_branch(self, name: str, commit: str) -> None:
        # the evidence retention needs before it may delete the branch (see branch_record);
        # not recorded, the branch is only kept
        from pipeline.branch_record import record

        try:
            record(self, name, commit)
        except (OSError, GitError) as exc:
            log.warning("could not record heal's branch %s (%s): it will not be pruned",
                        name, exc)

    def bring_onto_current(self, commit: str) -> str:
        """Put ``commit`` on the checked-out branch as a new commit (fast-forward when the
        branch has not moved, else cherry-pick); returns the new HEAD.

        Raises:
            AlreadyApplied: the change is already on the branch (nothing is changed).
            WorkTreeInTheWay: files of the working tree are in its way.
            GitError: conflicts (the cherry-pick is aborted, the tree left as it was).
        """
        head = self.head()
        parent = self.run("rev-parse", f"{commit}^").stdout.strip()
        aborted = ""
        if parent == head:
            proc = self.run("merge", "--ff-only", "--quiet", commit, check=False)
        else:
            proc = self.run("cherry-pick", "--allow-empty", commit, check=False)
            if proc.returncode != 0:
                empty = self._pick_is_empty()
                self.run("cherry-pick", "--abort", check=False)
                if empty:
                    raise AlreadyApplied(f"already applied: nothing to do: the change of "
                                         f"{commit[:10]} is already on the working branch "
                                         f"(at {head[:10]}); nothing was changed")
                aborted = " (the cherry-pick was aborted)"
        if proc.returncode != 0:
            output = proc.stdout + proc.stderr
            error = (WorkTreeInTheWay if _IN_THE_WAY.search(output)
                     and not _CONFLICT.search(output) else GitError)
            raise error(f"cannot bring {commit[:10]} onto the working branch: "
                        f"{_pick_failure(output)}; nothing was changed{aborted}")
        return self.head()

    def _pick_is_empty(self) -> bool:
        """A cherry-pick that stopped because the commit's change is already on the branch
        (git: "The previous cherry-pick is now empty"): one is in progress, nothing is in
        conflict and the index equals HEAD. A refusal before it started (files in the way)
        leaves no CHERRY_PICK_HEAD; a conflict leaves unmerged paths."""
        if self.run("rev-parse", "-q", "--verify", "CHERRY_PICK_HEAD",
                    check=False).returncode != 0:
            return False
        if self.run("ls-files", "-u", check=False).stdout.strip():
            return False
        return self.run("diff", "--cached", "--quiet", "HEAD", check=False).returncode == 0

    def abort_pick_of(self, commit: str) -> bool:
        """Abort a cherry-pick of ``commit`` left in progress (its process died before it
        aborted it); one of any other commit (a person's) is left alone. Returns whether
        one was aborted."""
        pick = self.run("rev-parse", "-q", "--verify", "CHERRY_PICK_HEAD", check=False)
        if pick.returncode != 0 or pick.stdout.strip() != commit:
            return False
        self.run("cherry-pick", "--abort", check=False)
        return True

    def first_parent_since(self, base: str) -> list[str]:
        """The commits of the checked-out branch's first-parent line after ``base``, oldest
        first ([] when ``base`` is not on that line)."""
        if self.run("merge-base", "--is-ancestor", base, "HEAD", check=False).returncode:
            return []
        out = self.run("rev-list", "--first-parent", "--reverse", f"{base}..HEAD").stdout
        line = out.split()
        if line and self.run("rev-parse", f"{line[0]}^").stdout.strip() != base:
            return []  # base was reached through a merge, not on the first-parent line
        return line

    def same_change(self, one: str, other: str) -> bool:
        """``one`` and ``other`` are the same change with the same message (a cherry-pick
        of the other): equal stable patch ids (git patch-id) and commit messages."""
        def patch_id(commit: str) -> str:
            diff = self.run("show", "--format=", "--binary", commit).stdout
            return self.run("patch-id", "--stable", stdin=diff).stdout.split(" ", 1)[0]

        def message(commit: str) -> str:
            return self.run("log", "-1", "--format=%B", commit).stdout.strip()

        ids = patch_id(one)
        return bool(ids) and ids == patch_id(other) and message(one) == message(other)

    def revert(self, commit: str, reason: str) -> str:
        """A new commit undoing ``commit`` (history is never rewritten); returns its id."""
        self.run("revert", "--no-edit", "--no-commit", commit)
        self.run("commit", *_COMMIT, "-m", f"Revert heal fix {commit[:10]}", "-m", one_line(reason),
                 "-m", trailer_block(("Healed-by", "heal (rollback)")))
        return self.head()


class AlreadyApplied(GitError):
    """The commit's change is already on the working branch (made by hand, or by another
    fix): bringing it there would add an empty commit, so nothing is done."""


class WorkTreeInTheWay(GitError):
    """The commit would apply, but files of the working tree are in its way (an untracked
    file it would overwrite, local or staged changes): once they are moved, it applies."""


#: git refusing because of the working tree, not because of the commit: "untracked working
#: tree files would be overwritten by merge", "Your local changes to the following files
#: would be overwritten by cherry-pick", "your local changes would be overwritten by ..."
_IN_THE_WAY = re.compile(r"would be overwritten by (?:merge|checkout|cherry-pick)")

#: ``CONFLICT (content): Merge conflict in a.py`` (and the other kinds git names)
_CONFLICT = re.compile(r"^CONFLICT \([^)\n]{1,40}\): (?:Merge conflict in )?(.{1,300})$", re.M)


def _pick_failure(output: str) -> str:
    """Why a cherry-pick failed, for a person: the files in conflict, else git's last line
    that is not one of its hints (which tell how to go on with the cherry-pick heal has just
    aborted)."""
    files = list(dict.fromkeys(m.group(1).strip() for m in _CONFLICT.finditer(output)))
    if files:
        shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
        return (f"it conflicts with changes made since it was verified ({shown}); run the "
                "failing step again for a fix of the current code")
    return git_reason(output) or "git gave no reason"


#: git's advice, which tells how to go on with an operation heal does not go on with: its
#: ``hint:`` lines, and the status advice it prints on a line of its own
#: (``(use "git cherry-pick --skip" to skip this patch)``, ``(all conflicts fixed: run
#: "git cherry-pick --continue")``, ``(fix conflicts and run ...)``); anchored, no nesting
_ADVICE = re.compile(r"hint:|\((?:use \"git |all conflicts fixed|fix conflicts and )")


def git_reason(output: str) -> str:
    """git's message for a person: its lines that are not hints or advice (_ADVICE), joined
    with ``; ``, at most MAX_REASON_LINES lines (the first ones, where git says why, and the
    last) and MAX_REASON_CHARS characters. '' when git said nothing."""
    lines = [line.strip() for line in output.splitlines()
             if line.strip() and not _ADVICE.match(line.strip())]
    if len(lines) > MAX_REASON_LINES:
        lines = [*lines[:MAX_REASON_LINES - 1], "...", lines[-1]]
    text = "; ".join(lines)
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS - 3] + "..."
