"""Package installs are bounded: what may be installed, and into which interpreter.

A fix that runs ``python -m pip install NAME`` (``python.module_not_found``,
``types.missing_stubs``) names a package taken from error text, so:

- it runs unattended only when the repository already declares NAME (``requirements*.txt``,
  ``pyproject.toml`` dependencies and groups, ``poetry.lock``/``uv.lock``/``pdm.lock``,
  ``Pipfile``) or the operator allowed it (``[trust] packages``); otherwise a person approves
  it by name (``heal apply ERROR_ID`` shows the exact argv first);
- it installs into the interpreter that failed, resolved from the failing command (only a
  command heal trusts: an event's own path is never executed), never the first ``python``
  on PATH; when that cannot be told, a person decides.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.safefile import FileRefused, parse_toml

_PYTHON = re.compile(r"^python(?:\d+(?:\.\d+)*)?$")
_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_LOCK_NAME = re.compile(r'^name\s*=\s*"([^"]+)"', re.MULTILINE)
MAX_MANIFEST_BYTES = 2_000_000


def normalize(name: str) -> str:
    """PEP 503 normalized distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def install_target(fix: dict[str, Any]) -> str | None:
    """NAME when the fix is ``<python> -m pip install NAME`` (one package), else None."""
    if fix.get("kind") != "command":
        return None
    rendered = fix.get("rendered")
    argv = rendered.get("argv") if isinstance(rendered, dict) else None
    if not isinstance(argv, list) or len(argv) != 5:
        return None
    exe, dash_m, pip, install, name = (str(a) for a in argv)
    if _PYTHON.match(Path(exe).name) and (dash_m, pip, install) == ("-m", "pip", "install"):
        return name
    return None


def _read(path: Path) -> str:
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_MANIFEST_BYTES:
            return ""
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


#: the bounded reader of a repository file (for pipeline.validate.reqfile)
read_text = _read


def _requirements(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        if not line.strip() or line.lstrip().startswith("-"):
            continue
        match = _REQ_NAME.match(line)
        if match:
            names.add(normalize(match[1]))
    return names


def read_toml(text: str) -> tuple[dict[str, Any] | None, str]:
    """(its tables, '') or (None, why heal cannot read it): not TOML, nested deeper than the
    parser goes (a 200 KB ``a = [[[...]]]`` is under the size limit and would raise
    RecursionError), or a value Python refuses (an integer of thousands of digits). Every
    repository TOML file heal reads for package installs is parsed here."""
    try:
        return parse_toml(text.removeprefix("\ufeff")), ""
    except FileRefused as exc:
        return None, f"it is {str(exc)[:200]}"
    except ValueError as exc:  # int() over Python's digit limit, and the like
        return None, f"it holds a value heal cannot read ({str(exc)[:160]})"


def _pyproject(text: str) -> set[str]:
    data, _ = read_toml(text)
    if data is None:  # unreadable: it declares nothing (the install is then held)
        return set()
    specs: list[str] = []
    raw_project = data.get("project")
    project: dict[str, Any] = raw_project if isinstance(raw_project, dict) else {}
    specs += [s for s in project.get("dependencies", []) if isinstance(s, str)]
    for group in (project.get("optional-dependencies") or {}).values():
        specs += [s for s in group if isinstance(s, str)] if isinstance(group, list) else []
    for group in (data.get("dependency-groups") or {}).values():
        specs += [s for s in group if isinstance(s, str)] if isinstance(group, list) else []
    names = _requirements("\n".join(specs))
    poetry = (data.get("tool") or {}).get("poetry") or {}
    for table in [poetry.get("dependencies") or {}, poetry.get("dev-dependencies") or {},
                  *[(g or {}).get("dependencies") or {}
                    for g in (poetry.get("group") or {}).values() if isinstance(g, dict)]]:
        if isinstance(table, dict):
            names |= {normalize(k) for k in table if k != "python"}
    return names


def requirements_files(folder: Path) -> list[Path]:
    """``folder``'s requirements files (``requirements*.txt``, ``requirements/*.txt``), in
    name order, ``requirements.txt`` first."""
    return sorted(folder.glob("requirements*.txt"),
                  key=lambda p: (p.name != "requirements.txt", p.name))[:20] + \
        sorted(folder.glob("requirements/*.txt"))[:20]


def required_by(path: Path) -> set[str]:
    """The distributions one requirements file names (normalized; a file heal does
    not read: missing, a symlink, over the size limit, gives none)."""
    return _requirements(_read(path))


#: the files :func:`declared_packages` reads in a folder, besides its requirements files
MANIFESTS = ("pyproject.toml", "poetry.lock", "uv.lock", "pdm.lock", "Pipfile")


def declared_packages(root: Path, keep: Callable[[Path], bool] | None = None) -> set[str]:
    """Every distribution the repository at ``root`` declares (normalized names); with
    ``keep``, only the files it keeps are read (the files git tracks, for the validate
    stage's choice of an install)."""
    def read(path: Path) -> str:
        return _read(path) if keep is None or keep(path) else ""

    names: set[str] = set()
    for path in requirements_files(root):
        names |= _requirements(read(path))
    names |= _pyproject(read(root / "pyproject.toml"))
    for lock in ("poetry.lock", "uv.lock", "pdm.lock"):
        names |= {normalize(n) for n in _LOCK_NAME.findall(read(root / lock))}
    pipfile = read(root / "Pipfile")
    if pipfile:
        data = read_toml(pipfile)[0] or {}
        for table in ("packages", "dev-packages"):
            names |= {normalize(k) for k in (data.get(table) or {})}
    return names


def manifest_diff(root: Path, package: str) -> str:
    """The durable fix, as a unified diff: ``package`` appended to ``requirements.txt`` (or
    ``requirements.in``). '' when the repository has neither (a pyproject.toml is not edited
    by heal: a person adds the dependency there)."""
    for name in ("requirements.txt", "requirements.in"):
        path = root / name
        if not path.is_file() or path.is_symlink():
            continue
        text = _read(path)
        lines = text.splitlines()
        if not lines:
            return f"--- a/{name}\n+++ b/{name}\n@@ -0,0 +1 @@\n+{package}\n"
        context = lines[-3:]
        start = len(lines) - len(context) + 1
        old = "".join(f" {line}\n" for line in context)
        new = old
        if not text.endswith("\n"):  # the last line gains its newline
            old = "".join(f" {line}\n" for line in context[:-1]) + \
                f"-{context[-1]}\n\\ No newline at end of file\n"
            new = "".join(f" {line}\n" for line in context[:-1]) + f"+{context[-1]}\n"
        lines_old, lines_new = len(context), len(context) + 1
        body = old if text.endswith("\n") else old + new[len("".join(
            f" {line}\n" for line in context[:-1])):]
        return (f"--- a/{name}\n+++ b/{name}\n@@ -{start},{lines_old} +{start},{lines_new} @@\n"
                f"{body}+{package}\n")
    return ""


def _shebang_python(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            first = fh.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    parts = first[2:].decode("utf-8", "replace").split()
    if not parts:
        return None
    if Path(parts[0]).name == "env" and len(parts) > 1:
        return shutil.which(parts[1]) if _PYTHON.match(parts[1]) else None
    return parts[0] if _PYTHON.match(Path(parts[0]).name) else None


def interpreter_for(command: tuple[str, ...], cwd: Path) -> str | None:
    """The Python interpreter the (trusted) failing command ran, as an absolute path.

    ``python3 -m pytest`` -> that python as PATH resolves it here; ``.venv/bin/pytest`` -> the
    interpreter of its shebang. None when the command is not a Python program.
    """
    if not command:
        return None
    exe = command[0]
    if "/" in exe:
        path = exe if os.path.isabs(exe) else str(cwd / exe)
    else:
        found = shutil.which(exe)
        if found is None:
            return None
        path = found
    if _PYTHON.match(Path(path).name):
        return os.path.abspath(path)
    return _shebang_python(path)


@dataclass(frozen=True)
class InstallReview:
    """What the package rules make of one install fix."""

    fix: dict[str, Any]
    package: str
    #: may run without a person (declared or allowed by the operator, interpreter known)
    unattended: bool
    reason: str


def review_install(fix: dict[str, Any], root: Path, command: tuple[str, ...], cwd: Path,
                   allowed: tuple[str, ...]) -> InstallReview | None:
    """None when ``fix`` is not a package install; else the fix with its interpreter resolved
    (when it can be) and whether it may run unattended."""
    package = install_target(fix)
    if package is None:
        return None
    rendered = dict(fix.get("rendered") or {})
    argv = [str(a) for a in rendered.get("argv") or []]
    problems: list[str] = []
    python = interpreter_for(command, cwd)
    if python is not None:
        argv[0] = python
    else:
        problems.append("heal cannot tell which Python interpreter failed (the failing command"
                        " is not a trusted Python program), so it will not guess one")
    declared = normalize(package) in declared_packages(root)
    if not declared and normalize(package) not in {normalize(p) for p in allowed}:
        problems.append(f"the package {package!r} is not declared by the repository "
                        "(requirements*.txt, pyproject.toml, lock files) nor allowed in "
                        "[trust] packages of the operator configuration")
    rendered["argv"] = argv
    if not declared:
        manifest = manifest_diff(root, package)
        if manifest:
            rendered["manifest_diff"] = manifest
    fixed = {**fix, "rendered": rendered}
    if problems:
        return InstallReview(fixed, package, False, "; ".join(problems))
    return InstallReview(fixed, package, True, f"{package} is declared by the repository"
                         if declared else f"{package} is allowed by the operator")
