"""The project's own Python package manager, for ``python.module_not_found``'s install.

The seed fix (``package_manager: python``) is ``python -m pip install NAME``, bounded by
pipeline.trust.packages (NAME declared by the repository or allowed by the operator, else a
person approves it; the interpreter is the failing command's). When the validate stage has the
repository, the repository chooses how its environment is restored, read from the failing
command's directory up to the repository root (the nearest directory with a signal wins, as
for Node; only files git tracks count, so an ignored or untracked folder such as ``.venv``'s
site-packages never chooses, see pipeline.validate.reqfile):

1. a lockfile: ``poetry.lock`` -> ``poetry install``, ``uv.lock`` -> ``uv sync --locked``,
   ``pdm.lock`` -> ``pdm install --check``, ``Pipfile.lock`` -> ``pipenv install --deploy``:
   each installs what the lockfile pins, never rewrites it, and fails when it no longer matches
   the project (that is ``deps.lockfile_outdated``'s error, not this one). Lockfiles of two
   managers in one directory are a conflict heal does not settle: the fix escalates naming
   both;
2. else the manager the project declares without a lockfile: a ``[tool.poetry]``, ``[tool.pdm]``
   or ``[tool.uv]`` table of ``pyproject.toml`` (a table configuring only pdm-backend's build
   or ``uv pip`` does not name a manager) or a ``Pipfile``: that manager's plain install (which
   writes the lockfile the project has not committed, as ``npm install`` does). Two of them
   escalate; a ``pyproject.toml`` heal cannot read escalates naming it and why;
3. else a requirements file of that directory that declares the package
   (``requirements.txt`` first, then ``requirements*.txt`` and ``requirements/*.txt`` in name
   order): ``<the failing interpreter> -m pip install -r FILE``, so the project's pins hold;
   a file with a line that may fetch from elsewhere than pip's configured index (index or
   find-links options, ``-e``, VCS/URL/path requirements, includes not checked the same way)
   escalates naming the file and line (:func:`pipeline.validate.reqfile.review`);
4. else nothing changes: the bounded ``pip install NAME``.

The package name from the error only ever selects among the repository's own files (which
requirements file) and is checked against what the chosen lockfile's project declares: a
manager's install restores only what the project declares, so an undeclared package escalates
(add it with the manager's own command, a dependency change a person makes) instead of running
an install that cannot provide it. Nothing here widens what an event can make heal install.
A manager not installed where heal runs escalates naming it and how to install it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.trust.packages import (
    MANIFESTS,
    MAX_MANIFEST_BYTES,
    declared_packages,
    install_target,
    normalize,
    read_toml,
    requirements_files,
)
from pipeline.validate import reqfile
from pipeline.validate.choice import Choice, rel
from pipeline.validate.declared import dirs_up

#: manager -> (argv without a lockfile, argv restoring the lockfile as it is)
INSTALL: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "poetry": (("poetry", "install"), ("poetry", "install")),
    "uv": (("uv", "sync"), ("uv", "sync", "--locked")),
    "pdm": (("pdm", "install"), ("pdm", "install", "--check")),
    "pipenv": (("pipenv", "install"), ("pipenv", "install", "--deploy")),
}
_LOCKFILES = (("poetry.lock", "poetry"), ("uv.lock", "uv"), ("pdm.lock", "pdm"),
              ("Pipfile.lock", "pipenv"))
#: a [tool.X] table naming the manager, unless it holds only these keys (another tool's use)
_TOOL_TABLES: tuple[tuple[str, frozenset[str]], ...] = (
    ("poetry", frozenset()), ("pdm", frozenset({"build"})), ("uv", frozenset({"pip"})))
#: how a person installs a manager that is missing
HOW = {"poetry": "Poetry (`pipx install poetry`)",
       "uv": "uv (`pipx install uv`, or `pip install uv`)",
       "pdm": "PDM (`pipx install pdm`)",
       "pipenv": "Pipenv (`pipx install pipenv`)"}
_ADD = {"poetry": "poetry add", "uv": "uv add", "pdm": "pdm add", "pipenv": "pipenv install"}


def _pyproject(path: Path, root: Path) -> tuple[dict[str, Any] | None, str]:
    """(its tables, '') or (None, why heal could not read it); (None, '') when absent."""
    try:
        if not path.is_symlink() and not path.exists():
            return None, ""
        if path.is_symlink() or not path.is_file():
            return None, "it is a symlink or not a regular file, which heal does not read"
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            return None, (f"it is {size} bytes, over the {MAX_MANIFEST_BYTES}-byte limit "
                          "heal reads a manifest up to")
        text = path.read_bytes().decode("utf-8", "replace")
    except OSError as exc:
        return None, f"it cannot be read ({exc.strerror or exc})"
    return read_toml(text)


def _declared_managers(here: Path, data: dict[str, Any] | None,
                       ok: Callable[[Path], bool]) -> list[tuple[str, str]]:
    """(manager, the file naming it) for each manager the folder declares without a lock."""
    tool = (data or {}).get("tool")
    tool = tool if isinstance(tool, dict) else {}
    out = []
    for name, not_alone in _TOOL_TABLES:
        table = tool.get(name)
        if isinstance(table, dict) and (set(table) - not_alone):
            out.append((name, f"[tool.{name}]"))
    if (here / "Pipfile").is_file() and ok(here / "Pipfile"):
        out.append(("pipenv", "Pipfile"))
    return out


def _undeclared(manager: str, package: str, here: Path, source: str,
                ok: Callable[[Path], bool]) -> str:
    """'' when the project the install restores (``here``'s tracked files) declares it."""
    if normalize(package) in declared_packages(here, ok):
        return ""
    return (f"the package {package!r} is not declared by the project ({source} names "
            f"{manager}, whose install restores only what the project declares), so no "
            f"install of the project provides it; if the project needs it, add it with "
            f"`{_ADD[manager]} {package}` and commit the change")


def _tracked_only(root: Path, dirs: list[Path]) -> Callable[[Path], bool]:
    """Whether git tracks a file: the files of ``dirs`` heal may read are asked at once,
    any other (a ``-r`` include) when it comes up. An ignored or untracked folder (a
    virtualenv's site-packages) never chooses an install."""
    candidates = [p for here in dirs for p in (
        *requirements_files(here), *(here / n for n in (*MANIFESTS, "Pipfile.lock")))]
    asked = {rel(p, root) for p in candidates}
    known = reqfile.tracked(root, candidates)

    def ok(path: Path) -> bool:
        key = rel(path, root)
        return key in known or (key not in asked and bool(reqfile.tracked(root, [path])))
    return ok


def choose(rendered: dict[str, Any], root: Path, cwd: Path) -> tuple[Choice | None, str]:
    """(the manager, '') or (None, why heal will not choose one), or (None, '') when the
    repository names no manager and the bounded ``pip install NAME`` stays."""
    package = install_target({"kind": "command", "rendered": rendered})
    if package is None:  # not the seed's shape (a taught or edited command): left as it is
        return None, ""
    python = str((rendered.get("argv") or ["python"])[0])
    dirs = dirs_up(root, cwd)
    ok = _tracked_only(root, dirs)
    for here in dirs:
        locks = [(name, m) for name, m in _LOCKFILES
                 if (here / name).is_file() and ok(here / name)]
        managers = sorted({m for _, m in locks})
        if len(managers) > 1:
            files = " and ".join(rel(here / n, root) for n, _ in locks)
            return None, (f"the repository has lockfiles of {' and '.join(managers)} ({files}),"
                          " so heal cannot tell which one the project installs with; delete "
                          "the stale lockfile")
        if locks:
            lock, manager = locks[0]
            path = rel(here / lock, root)
            why = _undeclared(manager, package, here, path, ok)
            return (None, why) if why else (Choice(
                manager, path, path, INSTALL[manager][1],
                "the project's environment from pyproject.toml"), "")
        where = rel(here / "pyproject.toml", root)
        data, unread = _pyproject(here / "pyproject.toml", root) \
            if ok(here / "pyproject.toml") else (None, "")
        if unread:
            return None, (f"heal could not read {where}: {unread}, so it cannot tell which "
                          "package manager the project uses (heal does not fall back to pip "
                          "install); fix the file, or run the project's own install yourself")
        declared = _declared_managers(here, data, ok)
        if len({m for m, _ in declared}) > 1:
            said = " and ".join(f"{m} ({w if w == 'Pipfile' else where + ' ' + w})"
                                for m, w in declared)
            return None, (f"the project declares {said} and no lockfile, so heal cannot tell "
                          "which one it installs with; remove the stale configuration or "
                          "commit the lockfile of the one it uses")
        if declared:
            manager, what = declared[0]
            source = rel(here / "Pipfile", root) if what == "Pipfile" else f"{where} {what}"
            why = _undeclared(manager, package, here, source, ok)
            return (None, why) if why else (Choice(
                manager, source, "", INSTALL[manager][0],
                "the project's environment from its declared dependencies"), "")
        for req in requirements_files(here):
            if not ok(req):
                continue
            review = reqfile.review(req, root, ok)
            if normalize(package) not in review.names:
                continue
            path = rel(req, root)
            if review.problem:
                return None, (f"heal will not run `pip install -r {path}` unattended: "
                              f"{review.problem}; install it yourself if you trust the file, "
                              "or remove that line and commit the change")
            argv = (python, "-m", "pip", "install", "-r", os.path.relpath(req, cwd))
            return Choice("pip", path, "", argv,
                          f"{package} with the pins of {path} into the failing interpreter"), ""
    return None, ""
