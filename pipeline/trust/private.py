"""Files only the operator may provide: the operator configuration, the signing keys and the
``heal serve`` tokens.

``HEAL_HOME`` defaults to ``<repo>/.heal``, so a repository could ship any of them
(``git add -f .heal``): its own operator configuration, a signing key whose value its author
knows (forged attestations and seals), or an approver token it chose. :func:`check_private`
refuses such a file: tracked by git, owned by another user, or writable by other users.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.gitops import run_git


def tracked_by_git(path: Path) -> bool:
    """Whether git tracks ``path`` in the repository holding its folder (False outside one,
    or without git). The folder is entered by git, so a committed symbolic link on the way
    (``.heal -> cfg``) is followed to the tracked file.

    Raises:
        ConfigError: git refuses to look (a repository another user owns: "dubious
            ownership"); not knowing is never read as "not tracked".
    """
    try:
        done = run_git(["ls-files", "--error-unmatch", "--", path.name], path.parent,
                       capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    if b"dubious ownership" in done.stderr:
        # (safe.directory is not bypassed: a repository's own config could then run code)
        raise ConfigError(f"{path} is in a git repository another user owns, so git will not "
                          "say whether it tracks the file (a repository must not ship it); run "
                          "heal as the checkout's owner, add the repository to git's "
                          "safe.directory, or set HEAL_HOME to a folder outside it")
    return done.returncode == 0


def check_private(path: Path, what: str, *, if_tracked: str, check_mode: bool = True) -> None:
    """Refuse ``path`` (``what`` names it: "operator configuration", "signing key") unless
    it is the operator's own: not tracked by git, owned by this user or root, and (with
    ``check_mode``) not writable by other users.

    ``if_tracked`` is the end of the message for a tracked file: why and what to do.

    Raises:
        ConfigError: naming the file, what is wrong and what to change.
    """
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror or exc}") from exc
    if check_mode and st.st_mode & 0o022:
        raise ConfigError(f"{what} {path} is writable by other users "
                          f"(mode {oct(st.st_mode & 0o777)}), so it may have been replaced; "
                          "check its content, then chmod 600 it")
    if st.st_uid not in (os.geteuid(), 0):
        raise ConfigError(f"{what} {path} belongs to uid {st.st_uid}, not to the user heal "
                          "runs as; chown it")
    if tracked_by_git(path):
        raise ConfigError(f"{what} {path} is tracked by git: {if_tracked}")
