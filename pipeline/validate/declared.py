"""Pre-flight: a fix that installs the project's declared Node dependencies (``npm install``,
``npm ci``, ``yarn``, ``pnpm install``, ``bun install``) cannot bring back a package the
project does not declare.

The package's name comes from the error text (untrusted): it is never run nor used as a
path, only compared with the keys of the manifests (``package.json`` from the failing
command's directory up to the repository root, read bounded) and searched for in the
lockfiles. When heal cannot be sure, the check passes: a workspace/monorepo (``workspaces``,
``pnpm-workspace.yaml``, ``lerna.json``), an unreadable or missing manifest, a package the
lockfile knows (a transitive dependency the install restores), no lockfile heal can read (no
lockfile, or only ``bun.lockb``: the dependency tree is unknown, so a package another
dependency brings is possible) unless the manifests declare no dependency at all, a name the
project itself maps (a ``paths`` alias or a ``baseUrl`` folder of ``tsconfig.json`` /
``jsconfig.json``, a bundler's ``alias``), a module required from inside ``node_modules``, a
Node built-in, the project's own name, a name that is not a package name.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

#: bounded reads: a manifest larger than this is not parsed (the check passes)
MAX_MANIFEST_BYTES = 1_000_000
MAX_LOCKFILE_BYTES = 64_000_000

#: ``<tool> install`` and its spellings that install what the manifest declares (flags
#: allowed after them, no package names)
_INSTALLERS = {"npm": ("install", "i", "ci", "clean-install"), "yarn": ("", "install"),
               "pnpm": ("install", "i"), "bun": ("install", "i")}
_LOCKFILES = ("package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml",
              "bun.lock")
#: lockfiles heal cannot read: their presence means "not sure"
_BINARY_LOCKFILES = ("bun.lockb",)
#: files where a project maps module names of its own (TypeScript paths, bundler aliases)
_TS_CONFIGS = ("tsconfig.json", "jsconfig.json")
_BUNDLER_CONFIG = re.compile(r"^(?:webpack|vite|vitest|rollup|next|nuxt|babel|craco|vue|svelte"
                             r"|astro|rspack|esbuild|metro)\.config\.[cm]?[jt]s$|^\.babelrc"
                             r"(?:\.json)?$")
_BASE_URL = re.compile(r"\"baseUrl\"\s*:\s*\"([^\"\n]{0,300})\"")
_MONOREPO_FILES = ("pnpm-workspace.yaml", "lerna.json", "rush.json", "nx.json")
_DEP_TABLES = ("dependencies", "devDependencies", "optionalDependencies",
               "peerDependencies", "bundleDependencies", "bundledDependencies")
#: an npm package name (``@scope/name`` or ``name``), its subpath cut off
_PACKAGE = re.compile(r"^(?P<name>(?:@[a-z0-9][\w.-]{0,100}/)?[a-z0-9][\w.-]{0,213})(?:/|$)",
                      re.IGNORECASE)
#: Node's built-in modules (``require('module').builtinModules``, Node 20 and 22)
_BUILTINS = frozenset((
    "assert", "async_hooks", "buffer", "child_process", "cluster", "console", "constants",
    "crypto", "dgram", "diagnostics_channel", "dns", "domain", "events", "fs", "http", "http2",
    "https", "inspector", "module", "net", "os", "path", "perf_hooks", "process", "punycode",
    "querystring", "readline", "repl", "sea", "sqlite", "stream", "string_decoder", "sys",
    "test", "timers", "tls", "trace_events", "tty", "url", "util", "v8", "vm", "wasi",
    "worker_threads", "zlib"))


def installs_declared(argv: list[str]) -> str | None:
    """The tool when ``argv`` installs the manifest's dependencies (no package named), else
    None (``npm install lodash`` installs what it names: not this check's business)."""
    if not argv:
        return None
    tool = Path(str(argv[0])).name
    subcommands = _INSTALLERS.get(tool)
    if subcommands is None:
        return None
    rest = [str(a) for a in argv[1:]]
    sub = rest[0] if rest and not rest[0].startswith("-") else ""
    if sub not in subcommands:
        return None
    names = [a for a in rest[1 if sub else 0:] if not a.startswith("-")]
    return None if names else tool


def package_name(module: str) -> str | None:
    """``lodash/fp`` -> ``lodash``, ``@a/b/c`` -> ``@a/b``; None when ``module`` is not a
    package name (a path, an alias such as ``@/x`` or ``~/x``, a ``node:`` built-in)."""
    match = _PACKAGE.match(module)
    if match is None or ":" in module:
        return None
    return match["name"]


def _read(path: Path, limit: int) -> str | None:
    """The file's text, None when it is missing, a symlink, too large or unreadable."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > limit:
            return None
        with path.open("rb") as fh:
            return fh.read(limit + 1)[:limit].decode("utf-8", "replace")
    except OSError:
        return None


def read_head(path: Path, size: int) -> str:
    """The first ``size`` bytes of a regular file as text ('' when missing, a symlink or
    unreadable): a header, whatever the file's length."""
    try:
        if path.is_symlink() or not path.is_file():
            return ""
        with path.open("rb") as fh:
            return fh.read(size).decode("utf-8", "replace")
    except OSError:
        return ""


def _parse(text: str) -> dict[str, Any] | str:
    """The JSON object, or why it is not one. A UTF-8 byte-order mark is skipped (npm,
    Node and editors on Windows accept or write one)."""
    try:
        data = orjson.loads(text.removeprefix("\ufeff"))
    except orjson.JSONDecodeError as exc:
        return f"it is not valid JSON ({str(exc)[:160]})"
    return data if isinstance(data, dict) else "it is not a JSON object"


def _manifest(path: Path) -> dict[str, Any] | None:
    text = _read(path, MAX_MANIFEST_BYTES)
    if text is None:
        return None
    data = _parse(text)
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class Manifest:
    """A ``package.json`` as a check that must not guess reads it: its object, or why heal
    could not read it and what a person does about it (both '' when there is none)."""

    data: dict[str, Any] | None
    why: str = ""
    todo: str = ""


def read_manifest_or_why(path: Path, root: Path) -> Manifest:
    """``path`` read bounded like :func:`_manifest`, but a file that exists and cannot be read
    says why: too large, not JSON, a symlink leaving ``root`` or dangling, not a regular file.
    A symlink to a file inside the repository is read (the repository's own file)."""
    try:
        if not path.is_symlink() and not path.exists():
            return Manifest(None)
        target = path
        if path.is_symlink():
            try:
                target = path.resolve(strict=True)
            except (OSError, RuntimeError):
                return Manifest(None, "it is a symlink to a file that does not exist",
                                "point it at the project's package.json or replace it with "
                                "the file")
            try:
                target.relative_to(root.resolve())
            except ValueError:
                return Manifest(None, "it is a symlink that leaves the repository, which "
                                "heal does not read", "replace the symlink with the file")
        if not target.is_file():
            return Manifest(None, "it is not a regular file", "make it the project's manifest")
        size = target.stat().st_size
    except OSError as exc:
        return Manifest(None, f"it cannot be read ({exc.strerror or exc})",
                        "make it readable by the user heal runs as")
    if size > MAX_MANIFEST_BYTES:
        return Manifest(None, f"it is {size} bytes, over the {MAX_MANIFEST_BYTES}-byte "
                        "limit heal reads a manifest up to", "")
    text = _read(target, MAX_MANIFEST_BYTES)
    if text is None:
        return Manifest(None, "it cannot be read", "make it readable by the user heal runs as")
    data = _parse(text)
    if isinstance(data, str):
        return Manifest(None, data, "fix its JSON")
    return Manifest(data)


def _declared(data: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for table in _DEP_TABLES:
        value = data.get(table)
        if isinstance(value, (dict, list)):  # a table, or bundleDependencies' list
            names |= {str(k) for k in value}
    if isinstance(data.get("name"), str):
        names.add(data["name"])  # the package's own name (a self-reference)
    return names


def _dirs(root: Path, cwd: Path) -> list[Path]:
    """``cwd`` and its parents up to ``root`` (``root`` alone when ``cwd`` is outside it)."""
    try:
        cwd.resolve().relative_to(root.resolve())
    except (OSError, ValueError):
        return [root]
    out, here = [], cwd
    while True:
        out.append(here)
        if here.resolve() == root.resolve() or here.parent == here:
            return out
        here = here.parent


def _in_lockfile(text: str, name: str) -> bool:
    """The lockfile names the package (as a dependency of anything), generously."""
    quoted = re.escape(name)
    return re.search(rf"(?:^|[\s\"'/,])(?:node_modules/)?{quoted}(?:@|\"|'|:|\s)", text,
                     re.MULTILINE) is not None


def _required_from_a_package(text: str, module: str) -> bool:
    """The module is required from inside ``node_modules`` (the requirer's path follows the
    quoted name on its line or the two after it: ``Require stack:``, ``imported from``,
    ``from '...'``): a package's dependency, which the install restores."""
    for quote in ("'", '"'):
        at = text.find(f"{quote}{module}{quote}")
        if at >= 0:
            after = "\n".join(text[at:at + 4000].split("\n")[:3])
            return "node_modules" in after
    return False


#: how the message says to add the package, by the tool that installs
_ADD = {"npm": "npm install", "yarn": "yarn add", "pnpm": "pnpm add", "bun": "bun add"}


def _aliased(here: Path, name: str) -> bool:
    """``name`` is a module name the project maps itself in ``here`` (bounded reads, text
    search: ``tsconfig.json`` is JSON with comments): a quoted ``paths`` key (``"utils/*"``),
    a file or folder of the ``baseUrl`` folder, a bundler config naming it (``alias``)."""
    first = name.split("/", 1)[0]
    quoted = re.compile(rf"[\"'`]{re.escape(name)}(?:/[^\"'`\n]{{0,200}})?[\"'`]|[{{,\s]"
                        rf"{re.escape(name)}\s*:")
    for config in _TS_CONFIGS:
        text = _read(here / config, MAX_MANIFEST_BYTES)
        if text is None:
            continue
        if quoted.search(text):
            return True
        base = _BASE_URL.search(text)
        if base is not None:
            folder = here / base[1]
            if (folder / first).exists() or any(folder.glob(f"{glob.escape(first)}.*")):
                return True
    try:
        names = [p.name for p in here.iterdir()][:1000]
    except OSError:
        return False
    for file in names:
        if _BUNDLER_CONFIG.match(file):
            text = _read(here / file, MAX_MANIFEST_BYTES)
            if text is not None and "alias" in text and quoted.search(text):
                return True
    return False


#: the bounded readers, for the other checks that read the repository's Node files
#: (pipeline.validate.manager): one parser, one set of limits
read_bounded = _read
read_manifest = _manifest
dirs_up = _dirs


def _what_the_project_knows(name: str, root: Path, cwd: Path
                            ) -> tuple[set[str], bool, bool] | None:
    """The names the manifests from ``cwd`` up to ``root`` declare, whether they declare a
    dependency at all, whether a lockfile was read (and does not name ``name``); None when
    heal cannot be sure: no manifest, an unreadable one, a workspace or monorepo, a lockfile
    it cannot read or that names the package, a name the project maps itself."""
    declared: set[str] = set()
    dependencies = found = locked = False
    for here in _dirs(root, cwd):
        if any((here / f).exists() for f in _MONOREPO_FILES + _BINARY_LOCKFILES):
            return None  # a monorepo, or a lockfile heal cannot read: not sure
        if _aliased(here, name):
            return None  # the project's own module name, not a package
        path = here / "package.json"
        if not path.exists():
            continue
        data = _manifest(path)
        if data is None or "workspaces" in data:
            return None  # unreadable, too large, or a workspace root: not sure
        found = True
        own = _declared(data)
        dependencies |= bool(own - {data.get("name")})
        declared |= own
        for lock in _LOCKFILES:
            if (here / lock).exists():
                locked = True
                text = _read(here / lock, MAX_LOCKFILE_BYTES)
                if text is None or _in_lockfile(text, name):
                    return None
    return (declared, dependencies, locked) if found else None


def undeclared_module(module: str, root: Path, cwd: Path, error_text: str,
                      tool: str = "npm") -> str:
    """Why installing the declared dependencies cannot bring back ``module``; '' when it may
    (or heal cannot be sure)."""
    name = package_name(module)
    if name is None or name.split("/", 1)[0] in _BUILTINS:
        return ""
    if _required_from_a_package(error_text, module):
        return ""
    known = _what_the_project_knows(name, root, cwd)
    if known is None:
        return ""
    declared, dependencies, locked = known
    if name.lower() in {d.lower() for d in declared}:
        return ""
    if not locked and dependencies:
        return ""  # no lockfile: a declared package may bring it (a transitive dependency)
    add = _ADD.get(tool, "npm install")
    where = "nor named in its lockfile" if locked else "and it declares no dependency"
    return (f"module {name} is not declared in package.json ({where}), so installing the "
            f"declared dependencies cannot bring it back: add it with `{add} {name}` if it is "
            "a dependency, or fix the import (or the project's alias, if it is one)")
