"""heal's record of the branches it made: for each ``heal/`` branch, the very commit heal put
on it, kept in the repository's git directory (``<git-common-dir>/heal/made/<commit>``, the
file holding the branch name).

It is the positive evidence retention needs before deleting a branch: a trailer proves
nothing (``git commit --amend`` keeps heal's trailers), and a reflog may be off
(``core.logAllRefUpdates=false``) or expired (``git gc``, 90 days). A branch whose tip is not
the recorded commit (a person amended it, reset it, rebased it) is kept (QA s19c, defect 4).

One file per commit: workers write records side by side with no lock, and a record lost (a
crash between creating the branch and recording it) only keeps a branch, never deletes one.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import GitError

if TYPE_CHECKING:
    from pipeline.gitops import GitRepo

_SHA = re.compile(r"^[0-9a-f]{40,64}$")


def _records(repo: GitRepo) -> Path:
    common = repo.run("rev-parse", "--path-format=absolute", "--git-common-dir").stdout.strip()
    return Path(common) / "heal" / "made"


def record(repo: GitRepo, name: str, commit: str) -> None:
    """Remember that heal made branch ``name`` at ``commit``.

    Raises:
        OSError: the git directory cannot be written (the branch is then kept, never pruned).
    """
    if not _SHA.match(commit):
        return
    folder = _records(repo)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{commit}.tmp"
    tmp.write_text(name + "\n", encoding="utf-8")
    tmp.replace(folder / commit)


def made(repo: GitRepo, commit: str) -> str:
    """The branch name heal recorded for ``commit``; "" when it recorded none."""
    if not _SHA.match(commit):
        return ""
    try:
        return (_records(repo) / commit).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError, GitError):
        return ""


def forget(repo: GitRepo, commit: str) -> None:
    """Drop the record of ``commit`` (its branch is gone); a problem is ignored."""
    if not _SHA.match(commit):
        return
    with contextlib.suppress(OSError, GitError):
        (_records(repo) / commit).unlink(missing_ok=True)
