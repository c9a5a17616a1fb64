"""A digest of a git working tree's state: what ``git status`` sees, with the content of each
file it lists.

``heal run`` records it with a failure (``tags.tree_state``); the apply stage computes it again
before calling a pass of the failing step flaky. A different digest means the developer changed
the working tree since the error (a fix by hand, not committed yet): the pass is explained, not
flaky. The digest covers ``git status --porcelain=v1 -z`` (tracked changes, staged or not, and
untracked files not ignored) and, for each path it lists, the file's bytes (a symbolic link's
target; an untracked directory by its name only). Bounded: at most ``MAX_PATHS`` paths and
``MAX_BYTES`` bytes read in all (a larger file counts by its size and change time), and git
gets ``TIMEOUT_S``; None when the directory is not a git work tree or git cannot say in time
(then nothing is compared: an event without the tag keeps the older rule).
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path

from pipeline.gitops import run_git

#: the event tag holding the digest (free-form tags: other producers simply do not set it)
TAG = "tree_state"
#: the digest's scheme, so a later one can be told apart
PREFIX = "ts1:"
TIMEOUT_S = 5.0
MAX_PATHS = 2000
MAX_BYTES = 64 * 1024 * 1024
_CHUNK = 1 << 20


def tree_digest(root: str | Path) -> str | None:
    """``ts1:<sha256>`` of the working tree at ``root`` (see the module), or None."""
    base = Path(root)
    listing = status_listing(base)
    if listing is None:
        return None
    digest = hashlib.sha256(listing)
    budget = MAX_BYTES
    for entry in status_entries(listing)[:MAX_PATHS]:
        path = entry[3:]
        digest.update(b"\0" + path + b"\0")
        budget = _content(base / os.fsdecode(path), digest, budget)
    return PREFIX + digest.hexdigest()


def status_listing(root: Path) -> bytes | None:
    """``git status --porcelain=v1 -z`` of the working tree at ``root`` (untracked files
    that are not ignored included), or None when it is no git work tree or git cannot say
    within ``TIMEOUT_S``."""
    try:
        done = run_git(["status", "--porcelain=v1", "-z", "--untracked-files=normal",
                        "--ignore-submodules=none"], root, capture_output=True,
                       timeout=TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return bytes(done.stdout) if done.returncode == 0 else None


def status_entries(listing: bytes) -> list[bytes]:
    """The entries of a :func:`status_listing`: each ``XY PATH`` (a rename's or copy's new
    path; its old one, a field of its own in the listing, is left out)."""
    fields = listing.split(b"\0")
    entries: list[bytes] = []
    i = 0
    while i < len(fields):
        entry = fields[i]
        i += 1
        if len(entry) < 4:
            continue
        entries.append(entry)
        if entry[:1] in (b"R", b"C") or entry[1:2] in (b"R", b"C"):
            i += 1  # the origin path follows as its own field
    return entries


def _content(path: Path, digest: hashlib._Hash, budget: int) -> int:
    """Add what ``path`` holds to ``digest``; the bytes budget left."""
    try:
        st = path.lstat()
    except OSError:
        digest.update(b"missing")
        return budget
    if stat.S_ISLNK(st.st_mode):
        try:
            digest.update(b"link:" + os.fsencode(os.readlink(path)))
        except OSError:
            digest.update(b"link")
        return budget
    if not stat.S_ISREG(st.st_mode):  # an untracked directory (by name), a FIFO, ...
        digest.update(b"other")
        return budget
    if st.st_size > budget:  # over the bound: its size and change time stand for it
        digest.update(f"big:{st.st_size}:{st.st_mtime_ns}".encode())
        return budget
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
                budget -= len(chunk)
                if budget <= 0:
                    break
    except OSError:
        digest.update(b"unreadable")
    return max(budget, 0)
