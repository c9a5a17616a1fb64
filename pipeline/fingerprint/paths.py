"""Path normalization for frames: collapse environment prefixes, keep the project path.

The same file must read the same in every checkout, temp dir and virtualenv:
``/home/ann/src/app/pkg/mod.py`` (repo ``/home/ann/src/app``) -> ``pkg/mod.py``;
``/usr/lib/python3.11/site-packages/requests/api.py`` -> ``<site-packages>/requests/api.py``;
``/opt/venvs/tool/bin/mytool`` -> ``<bin>/mytool``; ``/usr/src/app/server.js`` (no repo) ->
``app/server.js``, as from ``/home/ann/app/server.js``; a CI checkout of a known layout
down to the repository's root: ``/var/lib/jenkins/workspace/JOB/src/conn.c``,
``/home/runner/work/netd/netd/src/conn.c`` and ``C:\\agent\\_work\\1\\s\\src\\conn.c`` ->
``src/conn.c``.
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
#: the repository (its last three components, as below). The folder the runner names after
#: the repository or the job (GitHub's ``work/REPO/REPO``, Jenkins' ``workspace/JOB``,
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
_ENVIRONMENT = re.compile(
    r"""^(?:
        (?:/private)?/(?:tmp|var/tmp|var/folders/[^/]+/[^/]+/T)/[^/]+   # temp dirs
        # single-workspace runners (the folder is the project's own)
        |/github/workspace|/drone/src|/workspace
        |/(?:home|Users)/[^/]+                                          # home dirs
        |/Volumes/[^/]+                                                 # a macOS volume
        # container checkouts (the usual Docker WORKDIRs), down to the project's folder
        # as above: /usr/src/app, /srv/app, /opt/app; /app, /code, /src (the .NET
        # template's) and /build (Go images') are that folder
        |/usr/src|/srv|/opt|(?=/(?:app|code|src|build)/)
        |/root|~
        |[A-Za-z]:\\Users\\[^\\]+
    )(?=[/\\])""",
    re.VERBOSE,
)
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
    environment = _CHECKOUT.match(path) or _ENVIRONMENT.match(path)
    if environment:
        collapsed = path[environment.end():]
        # outside a known repo: keep the last components, which name the project file
        parts = [p for p in re.split(r"[/\\]", collapsed) if p]
        return "/".join(parts[-3:])
    return path
