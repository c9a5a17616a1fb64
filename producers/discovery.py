"""Where a repository keeps its historical logs: ``heal backfill --discover [REPO]``.

Globs (relative to the repository root, ``**`` = any number of directories) select files;
directories that never hold the project's own logs (``.git``, virtualenvs, ``node_modules``,
heal's own ``$HEAL_HOME``) are pruned before descending, so a large ``node_modules`` costs
nothing. ``heal.toml`` ``[backfill] paths = [...]`` replaces the default globs and
``exclude = [...]`` adds exclusions; ``--glob`` on the command line adds globs.

Only text files (also inside ``.gz``) are kept: a NUL byte in the first 4 KiB means binary.
A file heal may not read (permission denied) is not kept either, but handed back to the
caller (``unreadable``), which names it with what to do; ``heal backfill --discover`` counts
it in its summary and exits 2, as for a PATH heal cannot read, after backfilling the rest.
A damaged ``.gz`` (cut short, or not gzip) is kept unless what it yields shows a NUL byte:
backfill publishes what can be read of it and names it as damaged (exit 1), as it does for
one given by hand, rather than it being left out without a word.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import stat
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO

from pipeline.config import Settings
from pipeline.errors import HealError, UsageError
from pipeline.events import ErrorEvent
from pipeline.homedir import home_writes
from producers.backfill import BackfillStats

DEFAULT_GLOBS: tuple[str, ...] = (
    "**/*.log",
    "**/*.log.[0-9]",
    "**/*.log.[0-9][0-9]",
    "**/*.log.gz",
    "**/*.log.[0-9].gz",
    "logs/**",
    "log/**",
    # CI output folders (downloaded or written by the job)
    "ci-logs/**",
    "ci/logs/**",
    "build/logs/**",
    "test-results/**/*.txt",
    "artifacts/**/*.log",
    # tox keeps each environment's command output under .tox/<env>/log/
    ".tox/*/log/*.log",
    ".tox/*/log/*.txt",
)
DEFAULT_EXCLUDES: tuple[str, ...] = (
    ".git", ".hg", ".svn", ".venv", "venv", "env", "node_modules", "__pycache__",
    ".mypy_cache", ".ruff_cache", ".cache", "site-packages", ".heal",
)
BINARY_PROBE = 4096


@dataclass(frozen=True)
class Found:
    path: Path
    size: int

    def to_dict(self) -> dict[str, object]:
        return {"path": str(self.path), "size": self.size}


#: what to do about a discovered file heal may not read
UNREADABLE_ADVICE = ("give the user heal runs as read access to it (its permissions), run heal "
                     "as a user who can read it, or exclude it (heal.toml [backfill] exclude)")


#: what to do about a folder discovery may not list or enter
UNREADABLE_FOLDER_ADVICE = (
    "give the user heal runs as read and search access to it (its permissions, r-x), run heal "
    "as a user who can read it, or exclude it (heal.toml [backfill] exclude)")


@dataclass(frozen=True)
class Unreadable:
    """A file the globs select that heal cannot read (its events are not published), or a
    folder (``folder``) that could hold such files and heal cannot list or enter (its logs
    are left out)."""

    path: Path
    reason: str  # e.g. "Permission denied"
    folder: bool = False

    def message(self) -> str:
        if self.folder:
            return (f"{self.path}/ (a folder: the logs in it are left out) cannot be read: "
                    f"{self.reason}; {UNREADABLE_FOLDER_ADVICE}")
        return f"{self.path} cannot be read: {self.reason}; {UNREADABLE_ADVICE}"

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"path": str(self.path), "reason": self.reason}
        if self.folder:
            out["folder"] = True
        return out


@lru_cache(maxsize=256)
def _compile(glob: str) -> re.Pattern[str]:
    """A glob on posix relative paths: ``**`` crosses directories, ``*``/``?`` do not."""
    out, i = [], 0
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = glob.find("]", i + 1)
            if end < 0:
                raise UsageError(f"glob {glob!r}: unclosed '['")
            out.append("[" + glob[i + 1:end].replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def matches(rel: str, globs: Iterable[str]) -> bool:
    return any(_compile(g).match(rel) for g in globs)


def _excluded_dir(rel: str, name: str, excludes: Sequence[str]) -> bool:
    for ex in excludes:
        if "/" not in ex.strip("/") and not any(ch in ex for ch in "*?["):
            if name == ex.strip("/"):
                return True
        elif matches(rel, [ex.rstrip("/")]) or matches(rel + "/", [ex]):
            return True
    return False


def _may_hold(rel_dir: str, globs: Iterable[str]) -> bool:
    """Whether a file under the folder ``rel_dir`` (relative, ``""`` for the root) could match
    one of ``globs``: each of the folder's names matches the glob's name at its place, with a
    name left for the file, or a ``**`` comes first (then anything below may match)."""
    parts = [p for p in rel_dir.split("/") if p]
    for glob in globs:
        names = glob.split("/")
        for i, part in enumerate(parts):
            if i < len(names) and "**" in names[i]:
                return True
            if i >= len(names) - 1 or not _compile(names[i]).match(part):
                break
        else:
            return True
    return False


def _is_text(path: Path) -> bool:
    """No NUL byte in the first 4 KiB (decompressed for ``.gz``: a ``.tar.gz`` is binary).

    Raises:
        OSError: the file cannot be opened or read (heal may not read it).
    """
    if path.suffix == ".gz":
        return _gz_is_text(path)
    with open(path, "rb") as fh:
        return b"\0" not in fh.read(BINARY_PROBE)


def _gz_is_text(path: Path) -> bool:
    """No NUL byte in what the first 4 KiB decompress to; a ``.gz`` cut short or corrupt is
    judged by what it yields before the damage (none: kept, for backfill to name it).

    Raises:
        OSError: the file cannot be opened or read.
    """
    probe = b""
    with open(path, "rb") as raw, gzip.open(raw, "rb") as gz:
        try:
            while len(probe) < BINARY_PROBE:
                block = gz.read1(BINARY_PROBE - len(probe))
                if not block:
                    break
                probe += block
        except (gzip.BadGzipFile, EOFError, zlib.error):
            pass  # damaged: backfill reads it as far as it goes and says what is wrong
    return b"\0" not in probe


def _probe(path: Path) -> Found | Unreadable | None:
    """A listed file that matched: Found (a regular text file), Unreadable (heal may not
    read it, or not enter its folder: named, not left out) or None (a symbolic link, a FIFO,
    a device, binary, or removed since it was listed)."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode) or not _is_text(path):
            return None
        return Found(path, path.stat().st_size)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return Unreadable(path, exc.strerror or str(exc))


def discover(root: Path, globs: Sequence[str] = DEFAULT_GLOBS,
             exclude: Sequence[str] = (), home: Path | None = None,
             unreadable: list[Unreadable] | None = None) -> list[Found]:
    """Log files under ``root`` matching ``globs``, sorted by path.

    ``exclude`` holds directory names (pruned anywhere) or globs on relative paths (a file
    or directory matching one is skipped); ``DEFAULT_EXCLUDES`` and ``home`` always apply.
    A matching file heal cannot read is not returned but added to ``unreadable`` (sorted by
    path), so the caller names it instead of it being left out without a word; so is a folder
    heal cannot list or enter, unless it is excluded or no glob could select a file in it.

    Raises:
        UsageError: ``root`` is not a directory, or a glob is malformed.
    """
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root}: not a directory; give the repository to search for logs")
    for glob in (*globs, *exclude):
        _compile(glob)  # a malformed glob is reported before the walk
    excludes = (*DEFAULT_EXCLUDES, *exclude)
    home_real = os.path.realpath(home) if home is not None else None
    found: list[Found] = []
    refused: list[Unreadable] = []

    def unlisted(exc: OSError) -> None:
        # a folder os.walk could not list (excluded ones were pruned before: never listed);
        # named when the globs could select a file in it
        folder = Path(exc.filename) if exc.filename else root
        rel = folder.relative_to(root).as_posix()
        if not isinstance(exc, FileNotFoundError) and _may_hold("" if rel == "." else rel,
                                                                globs):
            refused.append(Unreadable(folder, exc.strerror or str(exc), folder=True))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unlisted):
        base = Path(dirpath)
        rel_dir = base.relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(
            d for d in dirnames
            if not _excluded_dir(rel_dir + d, d, excludes)
            and os.path.realpath(base / d) != home_real
            and not os.path.islink(base / d)  # a symlinked dir can loop or leave the repo
        )
        for name in sorted(filenames):
            rel = rel_dir + name
            if not matches(rel, globs) or matches(rel, exclude):
                continue
            probed = _probe(base / name)
            if isinstance(probed, Found):
                found.append(probed)
            elif probed is not None:
                refused.append(probed)
    if unreadable is not None:
        unreadable.extend(sorted(refused, key=lambda u: u.path.relative_to(root).as_posix()))
    return sorted(found, key=lambda f: f.path.relative_to(root).as_posix())


def configured(root: Path, extra_globs: Sequence[str] = ()) -> tuple[tuple[str, ...],
                                                                     tuple[str, ...]]:
    """(globs, excludes) for ``root``: heal.toml ``[backfill]`` (or the defaults) + ``--glob``.

    Raises:
        PolicyError: heal.toml is invalid.
    """
    from pipeline.policy import POLICY_FILE, load_policy

    policy = load_policy(Path(root) / POLICY_FILE)
    globs = policy.backfill_paths or DEFAULT_GLOBS
    return (*globs, *extra_globs), policy.backfill_exclude


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


# -- backfill of what was found ---------------------------------------------------------------


def backfill_found(client: object, settings: Settings, found: Sequence[Found],
                   force: bool = False, emit: Callable[[ErrorEvent], None] | None = None,
                   dry_run: bool = False) -> BackfillStats:
    """Publish the error records of the discovered files (``producers.backfill`` does the work).

    Raises:
        StreamUnavailable: Redis cannot be reached.
    """
    from producers.backfill import Backfiller
    from producers.publisher import Publisher

    publish = None if dry_run else Publisher(client, settings).publish_many
    backfiller = Backfiller(client, settings, publish, force=force)
    for item in found:
        backfiller.run_file(item.path, emit=emit)
    return backfiller.stats


# -- the one-time question on the first `heal up` -------------------------------------------

ASKED_FILE = "backfill.asked"


def offer_backfill(settings: Settings, client: object, root: Path | None = None,
                   stdin: IO[str] | None = None, out: IO[str] | None = None) -> str:
    """Ask once (only on a terminal) whether to backfill the logs of the repository.

    Returns what happened: ``"no-tty"``, ``"already-asked"``, ``"none-found"``, ``"no"`` or
    ``"yes"``. The answer is recorded in ``$HEAL_HOME/backfill.asked``, so it is asked once;
    without a terminal nothing is asked (CI and piped stdin never wait on a question).
    """
    stdin = stdin or sys.stdin
    out = out or sys.stderr
    try:
        if not stdin.isatty():
            return "no-tty"
    except (ValueError, OSError):
        return "no-tty"  # closed stdin
    marker = settings.home / ASKED_FILE
    if marker.exists():
        return "already-asked"
    root = Path(root) if root is not None else _repo_root()
    unreadable: list[Unreadable] = []
    try:
        globs, exclude = configured(root)
        found = discover(root, globs, exclude, home=settings.home, unreadable=unreadable)
    except HealError as exc:
        print(f"heal: log discovery skipped: {exc}", file=out)
        return "none-found"
    for item in unreadable:  # (not offered: heal could not read them)
        print(f"heal: {item.message()}", file=out)
    if not found:
        return "none-found"
    total = human_size(sum(f.size for f in found))
    print(f"Found {len(found)} log files under {root} ({total}); backfill them now? [y/N] ",
          end="", file=out, flush=True)
    line = stdin.readline()
    answer = "yes" if line.strip().lower() in ("y", "yes") else "no"
    with home_writes(settings.home, "recording the backfill answer", marker):
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"answer": answer, "repo": str(root), "files": len(found),
                                      "at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                          time.gmtime())}) + "\n",
                          encoding="utf-8")
    if answer == "yes":
        try:
            stats = backfill_found(client, settings, found)
        except HealError as exc:  # heal up goes on; the user can retry by hand
            print(f"heal: backfill failed: {exc} (retry: heal backfill --discover {root})",
                  file=out)
            return answer
        print(f"heal: backfilled {stats.events} error event(s) from {stats.files} file(s)",
              file=out)
        for damaged in stats.damaged:  # published as far as readable; the others went on
            print(f"heal: backfill: {damaged}", file=out)
    else:
        print(f"heal: not now (later: heal backfill --discover {root})", file=out)
    return answer


def _repo_root() -> Path:
    from pipeline.errors import GitError
    from pipeline.gitops import find_root

    try:
        return Path(find_root(os.getcwd()))
    except GitError:
        return Path.cwd()
