"""Where a shadow run lives: its own stream prefix, temp ``$HEAL_HOME``, database copy and
repository copies; all removed by ``close``."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pipeline.config import Settings
from pipeline.errors import HealError, UsageError
from pipeline.events import ErrorEvent
from pipeline.gitops import run_git
from pipeline.runtime.connection import glob_escape


class Sandbox:
    """Temp home, repository copies, prefix and database of one shadow run."""

    def __init__(self, base: Settings) -> None:
        self.base = base
        self.tmp = Path(tempfile.mkdtemp(prefix="heal-shadow-"))
        self.copies: dict[Path, Path] = {}
        self.notes: list[str] = []
        self._drop: Callable[[], None] = lambda: None
        token = uuid.uuid4().hex[:8]
        self.settings = dataclasses.replace(base, prefix=f"{base.prefix}-shadow-{token}",
                                            home=self.tmp / "home")
        self.settings.home.mkdir(parents=True)
        self._copy_operator_config()

    def _copy_operator_config(self) -> None:
        """The shadow decides under the operator's real configuration (pipeline.trust)."""
        from pipeline.trust.operator import config_path

        source = config_path(self.base)
        target = config_path(self.settings)
        if source != target and source.is_file():
            target.write_bytes(source.read_bytes())
            target.chmod(0o600)

    def open_database(self) -> Any:
        """Raises EngineError when no database is reachable."""
        from storage.engines import database_url, open_database
        from storage.scratch import create_scratch_database, with_database

        url = database_url(self.base)  # before home changes: the embedded server stays the same
        name = f"heal_shadow_{uuid.uuid4().hex[:10]}"
        source = urlsplit(url).path.lstrip("/") or "postgres"
        # connected to the maintenance database: a template must have no other sessions
        admin_url = with_database(url, "postgres")
        try:
            scratch, self._drop = create_scratch_database(admin_url, name, template=source)
            self.notes.append(f"database: a copy of {source} (learned patterns included)")
        except HealError as exc:
            try:
                scratch, self._drop = create_scratch_database(admin_url, name)
            except HealError as exc2:
                raise UsageError(f"shadow mode needs its own database and the server refused "
                                 f"to create one ({exc2}); nothing was run") from exc2
            self.notes.append(f"database: fresh, seeded patterns only (copying {source} was "
                              f"refused: {str(exc)[:120]})")
        self.settings = dataclasses.replace(self.settings, database_url=scratch)
        return open_database(self.settings)

    def copy_repo(self, root: Path) -> Path:
        """A copy of ``root`` for verification: ``.git`` and the tracked files as they are
        now (uncommitted edits included). Untracked and ignored files (virtualenvs,
        ``node_modules``, ``$HEAL_HOME``) are left out: verification's snapshot
        (``git stash create``) and its worktrees never contain them either.

        Raises:
            UsageError: the repository cannot be read.
        """
        root = root.resolve()
        if root in self.copies:
            return self.copies[root]
        dest = self.tmp / "repos" / f"{len(self.copies)}-{root.name}"
        try:
            listed = run_git(["ls-files", "-z"], root, capture_output=True, check=True,
                             timeout=120).stdout
            git_dir, common = run_git(
                ["rev-parse", "--path-format=absolute", "--git-dir", "--git-common-dir"],
                root, capture_output=True, encoding="utf-8", errors="surrogateescape",
                check=True, timeout=60,
            ).stdout.split("\n")[:2]
            shutil.copytree(common, dest / ".git", symlinks=True)
            if git_dir != common:  # a linked worktree: its own HEAD and index
                for name in ("HEAD", "index"):
                    if (Path(git_dir) / name).exists():
                        shutil.copy2(Path(git_dir) / name, dest / ".git" / name)
            for rel in filter(None, listed.decode("utf-8", "surrogateescape").split("\0")):
                src = root / rel
                if src.is_symlink() or src.is_file():  # a deleted tracked file stays deleted
                    (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dest / rel, follow_symlinks=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise UsageError(f"shadow mode cannot copy the repository {root}: {exc}") from exc
        # the copied index's stat data (inodes, ctimes) no longer match the files: refresh it,
        # or `git stash create` (verification's snapshot) fails on the "changed" tree
        run_git(["update-index", "-q", "--refresh"], dest, capture_output=True, check=False,
                timeout=120)
        self.copies[root] = dest
        return dest

    def redirect(self, event: ErrorEvent, mode: str, repo: Path | None) -> ErrorEvent:
        """The event as the shadow pipeline sees it: mode set, repository = the copy.

        The trust boundary holds in the shadow too (pipeline.trust): only a repository the
        real pipeline would act on (attested by heal run, in ``[trust] repos``, or the REPO
        the operator named) is copied with the evaluated mode signed for the shadow; its
        command is kept only when the real pipeline would re-run it.
        """
        from pipeline.trust.attest import attest
        from pipeline.trust.boundary import assess

        tags = {**event.tags, "mode": mode, "shadow": True}
        trust = assess(event, self.base)
        root = trust.root
        chosen = False
        if root is None and repo is not None and not event.repo.path:
            root = repo.resolve()
            chosen = True
            tags.setdefault("cwd", str(root))
        if root is None:
            return dataclasses.replace(event, tags=tags)
        if not (trust.repo_trusted or chosen):
            return dataclasses.replace(event, tags=tags)  # diagnosed only, as in real life
        copy = self.copy_repo(root)
        cwd = Path(str(tags.get("cwd") or event.repo.path or root)).resolve()
        try:
            tags["cwd"] = str(copy / cwd.relative_to(root))
        except ValueError:
            tags["cwd"] = str(copy)
        if event.command and not trust.command:
            tags["untrusted_command"] = list(event.command)[:64]
        new_repo = dataclasses.replace(event.repo, path=str(copy))
        shadow = dataclasses.replace(event, tags=tags, repo=new_repo, command=trust.command)
        return attest(shadow, self.settings)

    def close(self, client: Any) -> None:
        """Delete the shadow's keys and streams, its database and its temp dir."""
        try:
            for key in client.scan_iter(match=f"{glob_escape(self.settings.prefix)}:*",
                                       count=500):
                client.delete(key)
        finally:
            self.close_files()

    def close_files(self) -> None:
        try:
            self._drop()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
