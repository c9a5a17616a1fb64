"""HEAL_HOME is private: the directory 0700 (0711 as root, see ``dir_mode``), the files heal
keeps in it 0600 (issue 11, item 9).

It holds the audit log and its key, notifications, the lookup cache and the embedded
engines' data; error texts in them are redacted (``pipeline/redact.py``), but the files
still say what ran where. ``heal`` tightens an existing home at every start (a home made
by an older heal was 0755 with 0644 files) and every file it creates there is 0600.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

DIR_MODE = 0o700
#: as root: the embedded PostgreSQL drops to the unprivileged ``pgserver`` user and must
#: traverse HEAL_HOME to its data directory; others may traverse, never list or read
ROOT_DIR_MODE = 0o711
FILE_MODE = 0o600


def dir_mode() -> int:
    """The mode of HEAL_HOME and the directories heal keeps in it (0700; 0711 as root)."""
    return ROOT_DIR_MODE if os.geteuid() == 0 else DIR_MODE


def secure_home(home: Path) -> None:
    """Make ``home`` 0700 and the files and directories directly in it private.

    Engine data directories are not walked (PostgreSQL keeps its own 0700); a path heal
    cannot change (another owner) is left as is, since the 0700 home already hides it.
    """
    if not home.is_dir():
        return
    mode = dir_mode()
    with contextlib.suppress(OSError):
        os.chmod(home, mode)
    for entry in home.iterdir():
        with contextlib.suppress(OSError):
            info = entry.lstat()
            if stat.S_ISREG(info.st_mode) and info.st_mode & 0o077:
                os.chmod(entry, FILE_MODE)
            elif stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() \
                    and stat.S_IMODE(info.st_mode) != mode:
                os.chmod(entry, mode)


def make_home(home: Path) -> Path:
    """Create ``home`` (0700) if missing and return it."""
    home.mkdir(mode=dir_mode(), parents=True, exist_ok=True)
    secure_home(home)
    return home


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_APPEND | os.O_CREAT) -> int:
    """``os.open`` that creates the file 0600 (whatever the umask)."""
    fd = os.open(path, flags, FILE_MODE)
    with contextlib.suppress(OSError):
        os.fchmod(fd, FILE_MODE)
    return fd
