"""HEAL_HOME is private: the directory 0700, the files heal keeps in it 0600 (issue 11,
item 9).

As root the embedded PostgreSQL drops to its own ``pgserver`` user, which must traverse every
folder above its data. Its data therefore lives beside HEAL_HOME, not in it
(:func:`outside_pg_dir`: ``<HEAL_HOME>.pg``, owned by ``pgserver`` and 0700), so HEAL_HOME
stays 0700 as root too. Only a home whose data an older heal already made inside it
(``pg/data``, a real folder) keeps 0711: moving a database is left to the operator.

It holds the audit log and its key, notifications, the lookup cache and the embedded
engines' data; error texts in them are redacted (``pipeline/redact.py``), but the files
still say what ran where. ``heal`` tightens an existing home at every start (a home made
by an older heal was 0755 with 0644 files) and every file it creates there is 0600; a
guarded file (the audit key, the operator configuration) that others may write is not made
trustworthy by that: it keeps its write bits and stays refused until the operator looks.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

DIR_MODE = 0o700
#: a root installation whose PostgreSQL data an older heal made inside HEAL_HOME: the
#: ``pgserver`` user must traverse HEAL_HOME to it; others may traverse, never list or read
LEGACY_ROOT_DIR_MODE = 0o711
FILE_MODE = 0o600


def outside_pg_dir(home: Path) -> Path:
    """Where the embedded PostgreSQL keeps its data when heal runs as root: beside HEAL_HOME."""
    return home.parent / f"{home.name}.pg"


def pg_data_inside(home: Path) -> bool:
    """Whether the embedded PostgreSQL's data is (or goes) in ``home/pg/data``: always when
    not root; as root only for a home an older heal made that way."""
    inside = home / "pg" / "data"
    return os.geteuid() != 0 or (inside.is_dir() and not inside.is_symlink())


def dir_mode(home: Path | None = None) -> int:
    """The mode of HEAL_HOME (``home``) and the directories heal keeps in it: 0700; 0711
    only as root for a home with PostgreSQL data inside it (see the module's note)."""
    if home is not None and os.geteuid() == 0 and pg_data_inside(home):
        return LEGACY_ROOT_DIR_MODE
    return DIR_MODE


#: files directly in HEAL_HOME that heal trusts only while no other user may write them
#: (:func:`pipeline.trust.private.check_private`): the audit key, the audit log's id and the
#: operator configuration. Found writable by others, only their read bits are taken away, so heal
#: keeps refusing them ("it may have been replaced") until the operator has looked
GUARDED_FILES = frozenset({"audit.key", "audit.id", "heal.toml"})

#: what :func:`secure_home` found writable by other users and tightened in this process:
#: path -> the mode it had
_LOOSE: dict[Path, int] = {}


def secure_home(home: Path) -> None:
    """Make ``home`` 0700 and the files and directories directly in it private.

    Engine data directories are not walked (PostgreSQL keeps its own 0700); a path heal
    cannot change (another owner) is left as is, since the 0700 home already hides it. A
    guarded file (:data:`GUARDED_FILES`) that others may write keeps its write bits, so
    the check of it refuses it; a home that others could write is tightened, with a
    warning, and remembered (:func:`found_writable`): a file in it may have been replaced.
    """
    if not home.is_dir():
        return
    mode = dir_mode(home)
    with contextlib.suppress(OSError):
        info = home.stat()
        if info.st_mode & 0o022:
            _LOOSE[home.resolve()] = stat.S_IMODE(info.st_mode)
            logging.getLogger("heal.home").warning(
                "HEAL_HOME %s was writable by other users (mode %s); made %s: a file in it "
                "may have been replaced (heal audit verify refuses its audit.key this time)",
                shown_path(home), oct(stat.S_IMODE(info.st_mode)), oct(mode))
        os.chmod(home, mode)
    for entry in home.iterdir():
        with contextlib.suppress(OSError):
            info = entry.lstat()
            if stat.S_ISREG(info.st_mode) and info.st_mode & 0o077:
                keep = info.st_mode & 0o022 if entry.name in GUARDED_FILES else 0
                os.chmod(entry, FILE_MODE | keep)
            elif stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() \
                    and stat.S_IMODE(info.st_mode) != mode:
                os.chmod(entry, mode)


def found_writable(path: Path) -> int | None:
    """The mode the folder holding ``path`` had when :func:`secure_home` found it writable
    by other users and tightened it in this process (None when it did not)."""
    with contextlib.suppress(OSError):
        return _LOOSE.get(path.parent.resolve())
    return None


#: a control character: none may be in a state home's path (the engines' config files are one
#: setting a line: a newline in HEAL_HOME broke the embedded Redis's), and none goes raw into
#: a message or an engine's config file (storage/embedded.py uses this one too)
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def shown_path(path: Path | str) -> str:
    """``path`` for a message: control characters written as ``\\n``, ``\\xHH``."""
    return CONTROL_CHARS.sub(lambda m: repr(m.group())[1:-1], str(path))


def home_problem(home: Path) -> str:
    """Why ``home`` cannot be heal's state directory, without creating anything ("" when
    nothing is known to be wrong): its path holds a control character (a newline, a tab),
    it, or the nearest folder above it that exists, is not a directory, or that folder is
    not writable."""
    if CONTROL_CHARS.search(str(home)):
        return "its path holds a control character (a newline or a tab)"
    if home.exists():
        if not home.is_dir():
            return f"{home} is not a directory"
        return "" if os.access(home, os.W_OK | os.X_OK) else f"{home} is not writable"
    for parent in home.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{parent} is not a directory"
            if not os.access(parent, os.W_OK | os.X_OK):
                return f"{home} cannot be created: {parent} is not writable"
            return ""
    return ""


def require_home(home: Path, describe: str = "") -> None:
    """Refuse a state home heal cannot use (see :func:`home_problem`), before any work: bad
    configuration (exit 2) naming it and what to change.

    Raises:
        ConfigError: it, or the folder above it, is not a directory or not writable.
    """
    from pipeline.errors import ConfigError

    problem = home_problem(home)
    if problem:
        raise ConfigError(f"state home {shown_path(describe or home)}: {problem}; set "
                          "HEAL_HOME to a directory heal may create and write")


def make_home(home: Path) -> Path:
    """Create ``home`` (0700) if missing and return it."""
    home.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    secure_home(home)
    return home


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_APPEND | os.O_CREAT) -> int:
    """``os.open`` that creates the file 0600 (whatever the umask)."""
    fd = os.open(path, flags, FILE_MODE)
    with contextlib.suppress(OSError):
        os.fchmod(fd, FILE_MODE)
    return fd


def create_private_file(path: Path, content: bytes) -> None:
    """Create ``path`` holding ``content`` (0600 from the start) unless it exists. Written
    whole under a private name, then linked into place: a process racing this one either
    links first (theirs wins) or reads a complete file, never an empty one being written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        try:
            os.write(fd, content)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


#: errnos of a write under HEAL_HOME that no retry fixes: the file system is full, or heal may
#: not write there; anything else is left to the caller
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_UNWRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def home_write_error(exc: OSError, home: Path, what: str, path: Path | str | None = None,
                     ) -> Exception | None:
    """What a failed write under HEAL_HOME (``home``) means for the user, or None when
    ``exc`` is none of a full or unwritable file system. ``what`` says what heal was writing
    (e.g. "the embedded Redis's lease"); ``path`` is the file when ``exc`` does not name it.

    Returns StateHomeFull (no space, exit 1) or ConfigError (read-only or permission denied:
    HEAL_HOME must point at a writable folder, exit 2); never raises."""
    from pipeline.errors import ConfigError, StateHomeFull

    where = exc.filename or path or home
    if exc.errno in _FULL:
        return StateHomeFull(
            f"no space left in HEAL_HOME={home} ({what}: {where}: {exc.strerror}); free space "
            "on that file system, or set HEAL_HOME to a folder on another one")
    if exc.errno in _UNWRITABLE:
        problem = ("is on a read-only file system" if exc.errno == errno.EROFS
                   else "cannot be written by this user")
        return ConfigError(
            f"HEAL_HOME={home} {problem} ({what}: {where}: {exc.strerror}); set HEAL_HOME to "
            "a folder heal may create and write, or make this one writable")
    return None


@contextlib.contextmanager
def home_writes(home: Path, what: str, path: Path | str | None = None) -> Iterator[None]:
    """Translate a full or unwritable HEAL_HOME met inside the block (see
    :func:`home_write_error`).

    Raises:
        StateHomeFull: no space left (exit 1).
        ConfigError: read-only or not writable by this user (exit 2).
    """
    try:
        yield
    except OSError as exc:
        translated = home_write_error(exc, home, what, path)
        if translated is None:
            raise
        raise translated from exc
