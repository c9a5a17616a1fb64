"""Path normalization for frames: collapse environment prefixes, keep the path in the project.

The same file must read the same in every checkout, temp dir and virtualenv:
``/home/ann/src/app/pkg/mod.py`` (repo ``/home/ann/src/app``) -> ``pkg/mod.py``;
``/usr/lib/python3.11/site-packages/requests/api.py`` -> ``<site-packages>/requests/api.py``;
``/opt/venvs/tool/bin/mytool`` -> ``<bin>/mytool``; without a repo, the path inside the
project whatever the root: a CI checkout of a known layout (``/var/lib/jenkins/workspace/JOB/
src/conn.c``, ``/home/runner/work/netd/netd/src/conn.c``, ``C:\\agent\\_work\\1\\s\\src\\conn.c``),
a folder that is a project (``/app/src/conn.c``) and a project's folder under one that holds
projects, past the folders people keep checkouts in (``/home/ann/src/netd/src/conn.c``,
``/Users/ann/code/netd/src/conn.c``) are all ``src/conn.c``.
"""

from __future__ import annotations

import posixpath
import re

_LIBRARY = re.compile(
    r"""(?:.*[/\\])?(?:
        (?:site|dist)-packages                # Python installed packages
        |node_modules                         # npm
        |pkg[/\\]mod                          # Go module cache
        |\.cargo[/\\]registry                 # Rust crates
        |lib[/\\](?:python|pypy)\d[\d.]*      # the Python standard library
        |jdk[^/\\]*|jre[^/\\]*                # the JDK
        # GOROOT, the Go distribution's own packages (runtime, net/http, its internal/...):
        # /usr/local/go, /usr/lib/go-1.22, setup-go's tool cache, go install's sdk, Homebrew
        |(?P<goroot>(?:usr[/\\](?:local|lib)[/\\]go(?:-\d[\d.]*)?
                    |hostedtoolcache[/\\]go[/\\][^/\\]+[/\\][^/\\]+
                    |sdk[/\\]go\d[\d.]*|Cellar[/\\]go[/\\][^/\\]+[/\\]libexec
                    |Program\ Files[/\\]Go)[/\\]src)
    )(?=[/\\])""",
    re.VERBOSE,
)
#: CI checkouts whose layout is fixed down to the project's root: what follows is the path in
#: the repository (its last ``KEY_COMPONENTS`` components, as below). The folder the runner
#: names after the repository or the job (GitHub's ``work/REPO/REPO``, Jenkins' ``workspace/JOB``,
#: Azure's numbered ``_work/1/s``) is no part of the project's path: a Jenkins job called
#: ``netd-pipeline`` and a GitHub runner's ``netd/netd`` build one ``src/conn.c``.
_CHECKOUT = re.compile(
    r"""^(?:
        # GitHub Actions (Linux and macOS hosts, a container job's /__w), GitLab, Buildkite
        (?:/home|/Users)/runner/work/[^/]+/[^/]+|/__w/[^/]+/[^/]+|/builds/[^/]+/[^/]+
        |/var/lib/buildkite-agent/builds/[^/]+/[^/]+/[^/]+
        # Jenkins: a job's workspace (the package's home, the Docker image's, Windows')
        |(?:/var/lib/jenkins|/var/jenkins_home|/home/jenkins)/workspace/[^/]+
        |[A-Za-z]:\\(?:Program\ Files\\)?Jenkins\\workspace\\[^\\]+
        # Azure Pipelines: an agent's ``_work/N/s`` wherever the agent lives (the hosted
        # Linux agent's ``/home/vsts/work/N/s``)
        |(?:[A-Za-z]:)?[/\\](?:[^/\\]{1,100}[/\\]){0,4}_?work[/\\]\d{1,6}[/\\]s
        # GitHub Actions on Windows (D:\a\REPO\REPO), GitLab's Windows runner, TeamCity
        |[A-Za-z]:\\a\\[^\\]+\\[^\\]+
        |[A-Za-z]:\\(?:GitLab-Runner\\)?builds\\[^\\]+\\[^\\]+
        |[A-Za-z]:\\BuildAgent\\work\\[^\\]+|/opt/buildagent/work/[^/]+
    )(?=[/\\])""",
    re.VERBOSE,
)
#: folders that are a project's root themselves (what follows is the path in the project):
#: a temp dir's folder, single-workspace runners' (``/github/workspace``, ``/drone/src``,
#: ``/workspace``) and the usual Docker WORKDIRs ``/app``, ``/code``, ``/src`` (the .NET
#: template's) and ``/build`` (Go images')
_ROOT = re.compile(
    r"""^(?:
        (?:/private)?/(?:tmp|var/tmp|var/folders/[^/]+/[^/]+/T)/[^/]+   # temp dirs
        |/github/workspace|/drone/src|/workspace
        |/(?:app|code|src|build)
    )(?=[/\\])""",
    re.VERBOSE,
)
#: folders that hold projects (what follows is a project's folder, then the path in it): home
#: folders, a macOS volume, the FHS's ``/usr/src``, ``/srv`` and ``/opt`` (``/srv/app``)
_HOLDER = re.compile(
    r"""^(?:
        /(?:home|Users)/[^/]+                                          # home dirs
        |/Volumes/[^/]+                                                 # a macOS volume
        |/usr/src|/srv|/opt|/root|~
        |[A-Za-z]:\\Users\\[^\\]+
    )(?=[/\\])""",
    re.VERBOSE,
)
#: folders people keep their checkouts in (``~/src/P``, ``~/code/P``, ``~/go/src/HOST/OWNER/P``,
#: Visual Studio's ``source\repos\P``): under a holder, skipped before the project's folder
_WORKSPACES = frozenset({
    "src", "code", "dev", "develop", "development", "developer", "git", "github", "gitlab",
    "work", "workspace", "workspaces", "projects", "repos", "repositories", "source",
    "sources", "documents", "desktop", "go", "golang", "ws",
})
#: components a frame's file keeps in the fine key where its root was guessed (no repository
#: named: see :func:`key_path`)
KEY_COMPONENTS = 3

#: folders a deploy tool keeps one folder per release in (Capistrano's ``releases/<stamp>``,
#: ``/opt/app/releases/v1.4.2``, ``deploys/<sha>``): what follows may be a release's id. Not
#: ``builds``, ``versions``, ``snapshots``: projects name their own folders so
#: (``api/versions/v2``, ``tests/snapshots/case1``, ``builds/win32`` are files of their own)
_RELEASES = frozenset({"releases", "deploys", "deployments"})
#: a release's id, only a shape no project folder has: a stamp of 8+ digits (``20261130``,
#: ``20261130-1412``, ``20261130T020001``, Capistrano's ``20261130020001``, ``2026-11-30_0200``),
#: a full version (``v1.4.2``, ``2.0.1-rc.1``) or a commit hash with a digit and a letter
#: (``3fa9c1d2``); a bare ``v2``, ``case1`` or ``linux2`` is no release
_RELEASE_ID = re.compile(
    r"^(?:\d{4}-?\d{2}-?\d{2}(?:[T_-]?\d{2}[:.-]?\d{2}(?:[:.-]?\d{2})?)?|\d{8,14}"
    r"|v?\d{1,6}\.\d{1,6}\.\d{1,6}(?:[-+][\w.+-]{1,40})?"
    r"|(?=[0-9a-f]{0,40}\d)(?=[0-9a-f]{0,40}[a-f])[0-9a-f]{7,40})$")
#: a generated folder name where a deploy keeps its app (the first two folders under /srv,
#: /opt, /var/www, a home folder: ``/var/www/app-3fa9c1d2``, ``/srv/app/3fa9c1d2``,
#: ``/srv/app_20261130T0200``), never deeper in a project (``lib/deadbee1``, ``jobs/20240101``
#: are a project's own): a name ending in a commit hash or a stamp, or such an id alone; the
#: hash has a digit and a letter (``deadbeef``, ``backend`` are words), the stamp 8+ digits
_GENERATED = re.compile(
    r"^(?:[A-Za-z][\w.]{0,60}[-_.])?"
    r"(?:(?=[0-9a-f]{0,40}\d)(?=[0-9a-f]{0,40}[a-f])[0-9a-f]{7,40}"
    r"|\d{8}(?:[T_-]?\d{4,6})?)$")
#: a deploy's symlink to its live release (Capistrano's ``current``), in the same place
_CURRENT = frozenset({"current"})


#: an installed entry-point script (a virtualenv's or a prefix's ``bin``, Windows'
#: ``Scripts``: ``mytool.exe``'s ``__main__.py``, ``mytool-script.py``): identified by its name,
#: not by where it was installed
_SCRIPT = re.compile(r"^.*[/\\](?:bin|Scripts)[/\\](?P<name>[^/\\]+?)"
                     r"(?:\.exe[/\\]__main__\.py|-script\.pyw?|\.exe)?$")
#: runtime internals: ``<frozen ...>``, ``[eval]``, Node's ``node:...`` and, before Node 16,
#: its bare ``internal/...js`` frames (a relative ``internal/`` folder of another language is
#: the project's own: Go's ``internal/`` packages, printed relative by ``go build``)
_BUILTIN = re.compile(r"^<[^>]*>$|^\[|^internal[/\\][^:]*\.js$|^node:")


def is_library(path: str) -> bool:
    """True for installed packages, the standard library and runtime internals."""
    return bool(_LIBRARY.match(path) or _BUILTIN.match(path))


def normalize_path(path: str, repo: str = "") -> str:
    """The stable form of ``path`` (see the module docstring); never raises."""
    path = path.strip().strip("\"'")
    if "://" in path:
        path = _without_origin(path)
    bundle = bundle_name(path)
    if bundle:  # a deploy's content-hashed asset: its name without the hash
        return bundle
    if "/." in path and path.startswith("/"):
        # ``/repo/sub/../app.py`` (a script run as ``python ../app.py`` from ``sub``) is
        # ``/repo/app.py``: one file, one frame, wherever it was run from
        path = posixpath.normpath(path)
    if path.startswith("./"):
        # ``./internal/x.go`` (go vet, a script run as ``./x.py``) is ``internal/x.go``
        path = path[2:]
    if repo:
        root = repo.rstrip("/\\") + "/"
        if path.startswith(root):
            return path[len(root):]
    library = _LIBRARY.match(path)
    if library:
        kind = library.group(0).replace("\\", "/").rsplit("/", 2)
        label = ("goroot" if library.group("goroot") else
                 "stdlib" if "python" in kind[-1] or "pypy" in kind[-1] else kind[-1])
        return f"<{label}>{path[library.end():]}"
    script = _SCRIPT.match(path)
    if script:
        return f"<bin>/{script.group('name')}"
    release = _release_end(path)
    if release:  # the path in one release of a deployed project
        return "/".join(_parts(path[release:])[-KEY_COMPONENTS:])
    project = _CHECKOUT.match(path) or _ROOT.match(path)
    if project:  # the path in the project
        return "/".join(_parts(path[project.end():])[-KEY_COMPONENTS:])
    holder = _HOLDER.match(path)
    if holder:  # a project's folder, then the path in it
        return "/".join(_in_project(_parts(path[holder.end():]))[-KEY_COMPONENTS:])
    return path


#: a URL's origin (scheme, user, host, port), then its path; its query and fragment
#: (``?v=3``, ``#L2``) are left out
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]{0,30}://[^/?#\s]{0,300}(?P<path>[^?#]*)")
#: a built web asset's file name whose name holds a content hash: webpack's and CRA's
#: ``main.3f9a1c2b.js`` / ``main.3f9a1c2b.chunk.js``, Next.js' ``framework-2c79e2a64abdb08b.js``,
#: Angular's ``main.8f3b1c2d4e5f6a7b.js``, Vite/Rollup's ``index-BxT3k9aZ.js`` (base64url,
#: 8 characters) and esbuild's ``chunk-5QGT3BNO.js`` (base32). ``hash``: the part between
#: the name (``main``, ``vendors~chunk``) and the extension, judged by :func:`_is_hash`
_BUNDLE = re.compile(
    r"^(?P<dir>.*[/\\])?(?P<stem>[^/\\]{1,200}?)[.-](?P<hash>[\w-]{7,64})"
    r"(?P<ext>(?:\.(?:chunk|bundle|min|module|esm|entry))?\.(?:m?js|cjs|css|wasm))$")
_HEX = re.compile(r"(?=[0-9a-f]{0,63}\d)[0-9a-f]{7,64}")
#: a word as a file name writes one: lowercase, capitalized or CamelCase parts (an acronym
#: too: ``XMLParser``), maybe a number at its end (``es2017``, ``ecmascript2020``)
_WORDY = re.compile(r"(?:[A-Z]{2,}(?![a-z])|[A-Z]?[a-z]{2,})+\d{0,4}")


def _without_origin(path: str) -> str:
    """A URL's path: a ``file://`` URL's local path, else the path on the server whatever
    host served it (a browser's frame), relative to the site (a dev server's ``/src/App.tsx``
    is the project's file; webpack's ``webpack:///./src/App.tsx`` too)."""
    if path.startswith("file://"):
        return path[7:]  # (a local file, as Node prints an ES module's)
    url = _URL.match(path)
    if url is None:
        return path
    path = url.group("path").lstrip("/")
    return path[2:] if path.startswith("./") else path


def bundle_name(path: str) -> str:
    """The file name of a content-hashed web asset without its hash (``main.js`` for
    ``/static/js/main.3f9a1c2b.js``), "" for any other path. Each deploy renames its bundles
    and serves them from its own public path (a CDN's ``/assets/``, ``/_next/static/chunks/``):
    the name the build gave the chunk is what stays, as Sentry groups a minified frame by its
    file's stem and function. The line and column of such a frame (``:1:48213``) are never
    in a key."""
    if not path.endswith(("js", "css", "wasm")):  # (cheap: most frames are other files)
        return ""
    bundle = _BUNDLE.match(path)
    if bundle is None or not _is_hash(bundle.group("hash")):
        return ""
    return bundle.group("stem") + bundle.group("ext")


def _is_hash(part: str) -> bool:
    """True when ``part`` of an asset's name is a content hash: 7+ hex characters with a
    digit; 8 to 32 letters and digits, both, that are no word with a number
    (``HXQ2T4LK``, not ``es2017``); 8 to 32 letters of both cases that are no CamelCase word
    (``BxTkqaZw``, not ``ProductList``); Rollup's 8 base64url characters, ``-`` and ``_``
    among them, not all words (``Ab-3xYz_``, not ``dom_index``); esbuild's 8 capitals."""
    if _HEX.fullmatch(part):
        return True
    if "-" in part or "_" in part:
        return len(part) == 8 and not all(_WORDY.fullmatch(p) or p.islower()
                                          for p in re.split(r"[-_]", part) if p)
    if not 8 <= len(part) <= 32:
        return False
    if len(part) == 8 and part.isupper():
        return True
    letters = any(c.isalpha() for c in part)
    digits = any(c.isdigit() for c in part)
    if letters and digits:
        return not _WORDY.fullmatch(part)
    return letters and not part.islower() and not part.isupper() and not _WORDY.fullmatch(part)


def key_path(file: str, repo: str = "") -> str:
    """A frame's file as the fine key holds it. Where the event names its repository
    (``repo``), :func:`normalize_path` gave the exact path inside it, which the key keeps
    whole: two apps of a monorepo (``apps/web/src/pages/index.js``, ``apps/admin/...``) are two
    files. Without one, the root was guessed (a home folder's project, a CI checkout, a
    container's WORKDIR, a relative path): the key takes the last ``KEY_COMPONENTS``
    components, so one file from a laptop and from CI is one key however deep it is (a path
    under a guessed root is already cut so with a repository named too)."""
    if repo or file.count("/") < KEY_COMPONENTS:
        return file
    return "/".join(file.split("/")[-KEY_COMPONENTS:])


def _release_end(path: str) -> int:
    """Where the path inside a deployed release starts in the absolute ``path``, past its
    last release folder (a release id after a releases folder; a generated name or
    ``current`` as one of the first two folders under a deploy's holder), 0 when there is
    none (the file's own name is never one): one file in every release of a deploy is one
    frame, so an error keeps its key across deploys."""
    if not path.startswith(("/", "~")) and path[1:3] not in (":\\", ":/"):
        return 0
    end = at = 0
    parts = re.split(r"([/\\])", path)
    names = [parts[i] for i in range(0, len(parts), 2)]
    slot = _deploy_slot(names)
    for index, name in enumerate(names[:-1]):
        at += len(name) + (1 if index else 0)
        if not name:
            continue
        after_releases = index > 0 and names[index - 1].lower() in _RELEASES
        in_slot = slot <= index <= slot + 1
        if ((after_releases and _RELEASE_ID.match(name))
                or (in_slot and (_GENERATED.match(name) or name.lower() in _CURRENT))):
            end = at + 1
    return end


def _deploy_slot(names: list[str]) -> int:
    """The index in ``names`` of the first folder under a deploy's holder (/srv, /opt,
    /root, /var/www, /home/USER, /Users/USER, ~, C:\\Users\\USER), -9 when none."""
    low = [n.lower() for n in names[:3]] + ["", "", ""]
    if low[0] == "~":
        return 1
    if low[0] == "" and low[1] in ("srv", "opt", "root"):
        return 2
    if (low[0] == "" and (low[1], low[2]) == ("var", "www")) or low[1] in ("home", "users"):
        return 3
    return -9


def _parts(path: str) -> list[str]:
    return [p for p in re.split(r"[/\\]", path) if p]


def _in_project(parts: list[str]) -> list[str]:
    """``parts`` under a holder without the project's folder: the workspace folders in front
    of it (``src``, ``code``; GOPATH's ``go/src/HOST/OWNER``) and the folder itself are left
    out, never the file's own folder or the file."""
    at = 0
    while len(parts) - at > 2 and parts[at].lower() in _WORKSPACES:
        at += 1
        if parts[at - 1] == "src" and "." in parts[at] and len(parts) - at > 3:
            at += 2  # GOPATH: src/github.com/OWNER/PROJECT
    return parts[at + 1:] if len(parts) - at > 1 else parts[at:]
