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

Files git ignores are a second part of the digest (``ts3:<tracked>.<ignored>``): a fix that
only installed a package (``node_modules/``, a virtualenv) or rebuilt output changes no file
``git status`` lists. The ignored entries ``git status --ignored=matching`` names (a whole
ignored directory as one entry; the same git call) are walked breadth first, each level in
name order: every path's name and kind, a file's size and modification time (never its
bytes: ignored files are where secrets such as ``.env`` live, and the digest goes into events),
a link's target, each directory's number of entries. Bounded: at most
``MAX_IGNORED_ENTRIES`` paths (the shallow levels, where an install or a rebuild adds or
replaces entries, come first), no file read, and ``IGNORED_TIME_S`` seconds, the clock looked
at in every loop (a directory's listing included);
heal's own state (``HEAL_HOME`` and the embedded PostgreSQL's data beside it) is left out.
When the walk runs out of time the part is ``unknown``: :func:`compare` then says it cannot
tell, and the apply stage does not call a pass flaky on a guess.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import stat
import subprocess
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path

from pipeline.gitops import run_git

#: the event tag holding the digest (free-form tags: other producers simply do not set it)
TAG = "tree_state"
#: the digest's scheme: ``ts3:<tracked>.<ignored>`` (ignored files by size and time); a
#: ``ts1:<tracked>`` or ``ts2:`` digest (events of an older heal: ``ts2:`` hashed small ignored
#: files' bytes) is still compared by its tracked part, its ignored part cannot be compared
PREFIX = "ts3:"
PREFIXES = ("ts1:", "ts2:", "ts3:")
#: the ignored part when the walk of the ignored files ran out of time
UNKNOWN = "unknown"
TIMEOUT_S = 5.0
MAX_PATHS = 2000
MAX_BYTES = 64 * 1024 * 1024
MAX_IGNORED_ENTRIES = 5_000
IGNORED_TIME_S = 2.0
#: every loop of the ignored walk looks at the clock once per this many entries
_CLOCK_EVERY = 256
_CHUNK = 1 << 20

#: what :func:`compare` says
SAME, TRACKED, IGNORED = "", "tracked", "ignored"


def tree_digest(root: str | Path, home: str | Path | None = None) -> str | None:
    """``ts3:<tracked>.<ignored>`` of the working tree at ``root`` (see the module), or None
    when git cannot say. ``home`` (HEAL_HOME) and the PostgreSQL data beside it are left out
    of the ignored part."""
    base = Path(root)
    listing = status_listing(base, ignored=True)
    if listing is None:
        return None
    tracked, ignored = _split_ignored(listing)
    digest = hashlib.sha256(tracked)
    budget = MAX_BYTES
    for entry in status_entries(tracked)[:MAX_PATHS]:
        path = entry[3:]
        digest.update(b"\0" + path + b"\0")
        budget = _content(base / os.fsdecode(path), digest, budget)
    return f"{PREFIX}{digest.hexdigest()}.{_ignored_digest(base, ignored, home)}"


def compare(seen: str, now: str | None) -> str:
    """What differs between the digest ``seen`` (with the error) and ``now``: :data:`SAME`
    (''), :data:`TRACKED` (what ``git status`` lists), :data:`IGNORED` (files git ignores) or
    :data:`UNKNOWN` (a part could not be computed: git did not answer now, or the ignored
    files were too slow to walk, or ``seen`` is a ``ts2:`` digest, whose ignored part was
    computed another way). A ``ts1:`` digest has no ignored part: only the tracked part is
    compared."""
    if now is None:
        return UNKNOWN
    seen_tracked, _, seen_ignored = seen[len(PREFIX):].partition(".")
    now_tracked, _, now_ignored = now[len(PREFIX):].partition(".")
    if seen_tracked != now_tracked:
        return TRACKED
    if seen.startswith("ts1:"):
        return SAME
    if seen[:len(PREFIX)] != now[:len(PREFIX)]:
        return UNKNOWN  # an older scheme's ignored part: computed another way
    if UNKNOWN in (seen_ignored, now_ignored):
        return UNKNOWN
    return SAME if seen_ignored == now_ignored else IGNORED


def status_listing(root: Path, ignored: bool = False) -> bytes | None:
    """``git status --porcelain=v1 -z`` of the working tree at ``root`` (untracked files
    that are not ignored included; with ``ignored``, the ignored entries too, ``!! PATH``, a
    whole ignored directory as one), or None when it is no git work tree or git cannot say
    within ``TIMEOUT_S``."""
    flags = ["--ignored=matching"] if ignored else []
    try:
        done = run_git(["status", "--porcelain=v1", "-z", "--untracked-files=normal",
                        "--ignore-submodules=none", *flags], root, capture_output=True,
                       timeout=TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return bytes(done.stdout) if done.returncode == 0 else None


def _split_ignored(listing: bytes) -> tuple[bytes, list[bytes]]:
    """The listing without its ``!!`` entries (what :func:`status_listing` gives without
    ``ignored``), and the ignored paths."""
    fields = listing.split(b"\0")
    kept: list[bytes] = []
    ignored: list[bytes] = []
    i = 0
    while i < len(fields):
        entry = fields[i]
        i += 1
        if entry.startswith(b"!! "):
            ignored.append(entry[3:])
            continue
        kept.append(entry)
        if len(entry) >= 4 and (entry[:1] in (b"R", b"C") or entry[1:2] in (b"R", b"C")):
            if i < len(fields):  # the origin path, a field of its own
                kept.append(fields[i])
            i += 1
    return b"\0".join(kept), ignored


def _ignored_digest(root: Path, ignored: list[bytes], home: str | Path | None) -> str:
    """The ignored part (see the module): a hex digest, or :data:`UNKNOWN`. Paths stay
    bytes and a directory is read with one ``scandir`` (its entries' kinds without a stat
    each): a file costs one stat and no read (its size and modification time stand for it:
    an ignored file may hold a secret, such as ``.env``). Every loop looks at the clock
    every :data:`_CLOCK_EVERY` entries, so the walk ends in about ``IGNORED_TIME_S``."""
    digest = hashlib.sha256()
    skip = _identities(_heal_state(home))
    skip_inodes = {ino for _, ino in skip}
    deadline = time.monotonic() + IGNORED_TIME_S
    base = os.fsencode(root)
    queue = _seeds(base, ignored, skip, digest, deadline)
    if queue is None:
        return UNKNOWN
    entries = min(len(ignored), MAX_IGNORED_ENTRIES)
    while queue:
        if time.monotonic() > deadline:
            return UNKNOWN
        rel = queue.popleft()
        listed = _listing(base + b"/" + rel, MAX_IGNORED_ENTRIES - entries, deadline)
        if listed is None:
            return UNKNOWN
        if isinstance(listed, str):
            digest.update(b"\0" + rel + b"\0unlistable")
            continue
        count, first = listed
        # (how many: an entry added past the bound still counts)
        digest.update(f"\0{count}".encode())
        for entry in first:
            if entries % _CLOCK_EVERY == 0 and time.monotonic() > deadline:
                return UNKNOWN
            entries += 1
            child = rel + b"/" + entry.name
            digest.update(b"\0" + entry.name + b"\0")
            try:
                if entry.is_dir(follow_symlinks=False):
                    if entry.inode() in skip_inodes and (
                            entry.stat(follow_symlinks=False).st_dev, entry.inode()) in skip:
                        continue  # heal's own state inside an ignored folder
                    digest.update(b"dir")
                    queue.append(child)
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:
                digest.update(b"missing")
                continue
            _entry_content(entry.path, st, digest)
    return digest.hexdigest()


def _seeds(base: bytes, ignored: list[bytes], skip: set[tuple[int, int]],
           digest: hashlib._Hash, deadline: float) -> deque[bytes] | None:
    """Add the ignored entries git lists (at most ``MAX_IGNORED_ENTRIES``) to ``digest``; the
    directories among them, to walk, or None when the deadline passed."""
    queue: deque[bytes] = deque()
    for n, seed in enumerate(ignored[:MAX_IGNORED_ENTRIES]):
        if n % _CLOCK_EVERY == 0 and time.monotonic() > deadline:
            return None
        rel = seed.rstrip(b"/")
        try:
            st = os.lstat(base + b"/" + rel)
        except OSError:
            digest.update(b"\0" + rel + b"\0missing")
            continue
        if (st.st_dev, st.st_ino) in skip:
            continue
        digest.update(b"\0" + rel + b"\0")
        if stat.S_ISDIR(st.st_mode):
            queue.append(rel)
        else:
            _entry_content(base + b"/" + rel, st, digest)
    return queue


def _listing(path: bytes, keep: int, deadline: float
             ) -> tuple[int, list[os.DirEntry[bytes]]] | str | None:
    """How many entries the directory at ``path`` has and its first ``keep`` in name order;
    ``"unlistable"`` when it cannot be read, None when the deadline passed while listing
    (a folder of a million entries: the clock is looked at as it is read, and only ``keep``
    entries are held and sorted)."""
    count = 0
    kept: list[tuple[bytes, os.DirEntry[bytes]]] = []
    try:
        with os.scandir(path) as found:
            for entry in found:
                count += 1
                if count % _CLOCK_EVERY == 0 and time.monotonic() > deadline:
                    return None
                if keep > 0:
                    kept.append((entry.name, entry))
                    if len(kept) >= 2 * keep + _CLOCK_EVERY:  # hold at most ~2 * keep
                        kept = heapq.nsmallest(keep, kept, key=lambda e: e[0])
    except OSError:
        return "unlistable"
    return count, [e for _, e in heapq.nsmallest(max(keep, 0), kept, key=lambda e: e[0])]


def _entry_content(path: bytes, st: os.stat_result, digest: hashlib._Hash) -> None:
    """An ignored file by its size and modification time (never its bytes: ignored files are
    where secrets live, ``.env``, and an install or a rebuild rewrites what it changes), a
    link's target, another kind by name."""
    if stat.S_ISREG(st.st_mode):
        digest.update(f"file:{st.st_size}:{st.st_mtime_ns}".encode())
    else:
        _content(Path(os.fsdecode(path)), digest, 0)  # a link's target, a FIFO's kind


def _heal_state(home: str | Path | None) -> list[Path]:
    """HEAL_HOME and the embedded PostgreSQL's data beside it (pipeline.homedir)."""
    if home is None:
        return []
    home = Path(home)
    return [home, home.parent / f"{home.name}.pg"]


def _identities(paths: Iterable[Path]) -> set[tuple[int, int]]:
    found = set()
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            continue
        found.add((st.st_dev, st.st_ino))
    return found


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
