"""The project's own package manager, for a fix that installs its declared dependencies.

A seed fix declares ``package_manager: node`` (``node.modules_missing``), ``bun``
(``bun.modules_missing``: ``bun install``, with ``--frozen-lockfile`` when the nearest
``bun.lock`` / ``bun.lockb`` exists) or ``python`` (``python.module_not_found``: see
pipeline.validate.pymanager). For Node, its argv
(``npm install``) is what ``heal diagnose`` shows, with no repository to read; when the
validate stage has the repository (the operator's side), the command becomes the install of
the manager the repository uses, read from the failing command's directory up to the
repository root (the nearest directory with a signal wins: a package of a workspace has no
lockfile of its own, the workspace root's decides; a project nested in another repository
with its own lockfile decides for itself):

1. ``package.json``'s ``packageManager`` field (``pnpm@9.1.0``): the project's explicit
   choice, which corepack enforces; it wins over a lockfile in the same directory (a stale
   lockfile of another manager is left over, the field is what the project runs). A
   ``package.json`` heal cannot read (over 1 MB, not JSON, a symlink leaving the repository
   or dangling) hides that field: the fix escalates naming the file and why, never guessing
   npm (a UTF-8 byte-order mark is skipped; a symlink inside the repository is followed);
2. else the lockfile: ``pnpm-lock.yaml``, ``yarn.lock``, ``bun.lock`` / ``bun.lockb``,
   ``package-lock.json`` / ``npm-shrinkwrap.json``. Lockfiles of two managers in one directory
   (and no ``packageManager``) are a conflict heal does not settle: the fix escalates naming
   both files;
3. else npm (no lockfile: ``npm install``).

The repository only chooses among :data:`_INSTALL` (npm, pnpm, yarn classic and berry, Bun):
a manager heal does not know (``packageManager: "deno@2"``) escalates, it is never run. With a
lockfile, the install restores it and never rewrites it (``npm ci``, ``--frozen-lockfile``,
yarn berry's ``--immutable``): the error says packages are missing, not that the lockfile is
out of date (that is ``deps.lockfile_outdated``), and a fix that rewrote it would commit a
dependency change nothing asked for. A manager not installed on this machine escalates naming
it and how to install it (never a silent ``npm install``, which ignores the lockfile and
writes a ``package-lock.json`` the project does not want).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from pipeline.fixes.alternatives import with_alternatives
from pipeline.fixes.render import PACKAGE_MANAGER_ECOSYSTEMS as ECOSYSTEMS
from pipeline.validate import pymanager
from pipeline.validate.choice import Choice, rel
from pipeline.validate.declared import dirs_up, read_head, read_manifest_or_why

#: manager -> (argv without a lockfile, argv restoring the lockfile as it is)
_INSTALL: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "npm": (("npm", "install"), ("npm", "ci")),
    "pnpm": (("pnpm", "install"), ("pnpm", "install", "--frozen-lockfile")),
    "yarn": (("yarn", "install"), ("yarn", "install", "--frozen-lockfile")),
    "yarn-berry": (("yarn", "install"), ("yarn", "install", "--immutable")),
    "bun": (("bun", "install"), ("bun", "install", "--frozen-lockfile")),
}
#: lockfile -> manager (yarn.lock: classic or berry, see :func:`_yarn_flavour`)
_LOCKFILES = (("pnpm-lock.yaml", "pnpm"), ("yarn.lock", "yarn"), ("bun.lock", "bun"),
              ("bun.lockb", "bun"), ("package-lock.json", "npm"),
              ("npm-shrinkwrap.json", "npm"))
#: how the note on the verdict's pre-flight begins (its own row, "package manager")
MANAGER_NOTE = "package manager: "
#: what heal does not run instead of a manager that is missing
_FALLBACK = {m: "pip install" for m in pymanager.HOW}
#: how a person installs a manager that is missing
_HOW = {**pymanager.HOW, "npm": "Node.js with npm (https://nodejs.org)",
        "pnpm": "pnpm (`corepack enable pnpm`, or `npm install -g pnpm`)",
        "yarn": "Yarn (`corepack enable yarn`, or `npm install -g yarn`)",
        "bun": "Bun (https://bun.sh)"}


def _node(manager: str, source: str, lockfile: str) -> Choice:
    plain, frozen = _INSTALL[manager]
    return Choice(manager, source, lockfile, frozen if lockfile else plain,
                  "node_modules from package.json",
                  "no packageManager field nor lockfile names another")


def _yarn_flavour(here: Path, version: str = "") -> str:
    """yarn classic (1.x) or berry (2+): the ``packageManager`` version, else a
    ``.yarnrc.yml`` (berry's configuration) or berry's ``__metadata`` lockfile header."""
    if version:
        return "yarn" if version.split(".", 1)[0] in ("0", "1") else "yarn-berry"
    if (here / ".yarnrc.yml").is_file():
        return "yarn-berry"
    # the header is at the top: a lockfile of any size is read that far only
    return "yarn-berry" if "\n__metadata:" in read_head(here / "yarn.lock", 4000) else "yarn"


def choose(root: Path, cwd: Path) -> tuple[Choice | None, str]:
    """(the manager, '') or (None, why heal will not choose one)."""
    for here in dirs_up(root, cwd):
        manifest = read_manifest_or_why(here / "package.json", root)
        if manifest.why:  # its packageManager, which would decide, is unknown: never guess
            where = rel(here / "package.json", root)
            todo = f"{manifest.todo}, or " if manifest.todo else ""
            return None, (f"heal could not read {where}: {manifest.why}, so it cannot tell "
                          "which package manager its packageManager field names (heal does "
                          f"not fall back to npm install); {todo}run the project's own "
                          "install yourself")
        data = manifest.data
        locks = [(name, m) for name, m in _LOCKFILES if (here / name).is_file()]
        declared = data.get("packageManager") if data else None
        if isinstance(declared, str) and declared.strip():
            name, _, version = declared.strip().partition("@")
            where = rel(here / "package.json", root)
            if name not in ("npm", "pnpm", "yarn", "bun"):
                return None, (f"{where} names packageManager {declared[:100]!r}, which heal "
                              "does not know (it installs with npm, pnpm, yarn or bun only)")
            manager = _yarn_flavour(here, version) if name == "yarn" else name
            own = [lock for lock, m in locks if m == name]
            lockfile = rel(here / own[0], root) if own else ""
            return _node(manager, f"{where} packageManager {declared[:100]!r}", lockfile), ""
        managers = sorted({m for _, m in locks})
        if len(managers) > 1:
            files = " and ".join(rel(here / n, root) for n, _ in locks)
            return None, (f"the repository has lockfiles of {' and '.join(managers)} ({files}) "
                          "and no packageManager field, so heal cannot tell which one the "
                          "project installs with; delete the stale lockfile or set "
                          "packageManager in package.json")
        if locks:
            lock, manager = locks[0]
            manager = _yarn_flavour(here) if manager == "yarn" else manager
            path = rel(here / lock, root)
            return _node(manager, path, path), ""
    return _node("npm", "", ""), ""


def choose_bun(root: Path, cwd: Path) -> Choice:
    """``bun.modules_missing``: Bun ran the failing command, so Bun installs; the nearest
    ``bun.lock`` / ``bun.lockb`` is restored as it is (``--frozen-lockfile``)."""
    for here in dirs_up(root, cwd):
        for lock in ("bun.lock", "bun.lockb"):
            if (here / lock).is_file():
                path = rel(here / lock, root)
                return Choice("bun", path, path, _INSTALL["bun"][1],
                              "node_modules from package.json")
    return Choice("bun", "", "", _INSTALL["bun"][0], "node_modules from package.json",
                  "no bun.lock nor bun.lockb")


def _choose(rendered: dict[str, Any], root: Path, cwd: Path) -> tuple[Choice | None, str]:
    ecosystem = rendered.get("package_manager")
    if ecosystem == "python":
        return pymanager.choose(rendered, root, cwd)
    if ecosystem == "bun":
        return choose_bun(root, cwd), ""
    return choose(root, cwd)


def installed(program: str) -> bool:
    """``program`` is found as the verification runner finds it (its PATH, then heal's own
    bin folder; pipeline.validate.runner.run_argv)."""
    path = os.environ.get("PATH", "")
    return shutil.which(program, path=f"{path}{os.pathsep}{os.path.dirname(sys.executable)}"
                        ) is not None


def _resolved(rendered: dict[str, Any], root: Path, cwd: Path
              ) -> tuple[dict[str, Any], str, Choice | None]:
    """(the rendered fix, why it escalates or '', the manager chosen or None)."""
    if rendered.get("package_manager") not in ECOSYSTEMS:
        return rendered, "", None
    choice, why = _choose(rendered, root, cwd)
    if choice is None:
        return rendered, why, None
    if choice.program in _HOW and not installed(choice.program):
        return rendered, (
            f"this project installs with {choice.program} "
            f"({choice.source or choice.default_why}), which is not "
            f"installed on this machine: install {_HOW[choice.program]} where heal runs, "
            f"then run `{' '.join(choice.argv)}` (heal does not fall back to "
            f"{_FALLBACK.get(choice.program, 'npm install')}, which would not read the "
            "project's lockfile)"), None
    out = {**rendered, "argv": choice.argv}
    out.pop("manifest_diff", None)  # the project's own install: nothing to declare
    return out, "", choice


def managed_fix(fix: dict[str, Any], root: Path, cwd: Path
                ) -> tuple[dict[str, Any], str, str]:
    """(``fix`` with its install run by the repository's package manager, why it escalates
    instead or '', the note saying which manager and which file chose it or ''). An
    alternative that cannot be resolved is dropped."""
    rendered = fix.get("rendered")
    if not isinstance(rendered, dict):
        return fix, "", ""
    resolved, escalate, choice = _resolved(rendered, root, cwd)
    if escalate or choice is None:
        return fix, escalate, ""
    lockfile = f" and {choice.lockfile}" if choice.lockfile else ""
    out = {**fix, "rendered": resolved,
           "explanation": (f"{' '.join(choice.argv)} restores {choice.restores}{lockfile} "
                           f"with the project's own package manager ({choice.why()})")}

    def resolve(alt: dict[str, Any]) -> dict[str, Any] | None:
        alt_resolved, alt_escalate, _ = _resolved(alt, root, cwd)
        return None if alt_escalate else alt_resolved

    return with_alternatives(fix, out, resolve), "", f"{MANAGER_NOTE}{choice.said()}"
