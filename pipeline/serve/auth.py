"""Who may do what through ``heal serve``: bearer tokens with two roles.

- **approver** (every POST: approve or reject a fix): ``HEAL_SERVE_TOKEN``, else
  ``$HEAL_HOME/serve/approver.token`` (generated at the first start, 0600);
- **viewer** (GET): ``HEAL_SERVE_VIEWER_TOKEN``, else ``$HEAL_HOME/serve/viewer.token``.
  The approver token is accepted wherever a viewer token is.

On a loopback address a GET needs no token (the operator's own browser); off loopback every
request needs one but the dashboard page's (``GET /``, no data in it) and the health check's
(``GET /healthz``, always ``{"ok": true}``: a kubelet probe sends no token). The Host header is
always checked (DNS rebinding): a loopback server answers only loopback names, any other
server only the names it was given (``--allow-host``, ``HEAL_SERVE_HOSTS``), its bound address,
this machine's host names, and (checked per connection in ``pipeline.serve.server``) the
address of this machine the client connected to.
"""

from __future__ import annotations

import hmac
import os
import secrets
import socket
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from pipeline.config import Settings, check_not_placeholder, check_text
from pipeline.errors import ConfigError, StateHomeFull
from pipeline.homedir import create_private_file, home_write_error
from pipeline.trust.private import check_private

ENV_APPROVER = "HEAL_SERVE_TOKEN"
ENV_VIEWER = "HEAL_SERVE_VIEWER_TOKEN"
ENV_HOSTS = "HEAL_SERVE_HOSTS"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
MIN_TOKEN_CHARS = 16


class Role(IntEnum):
    NONE = 0
    VIEWER = 1
    APPROVER = 2


def token_dir(settings: Settings) -> Path:
    return settings.home / "serve"


#: fewest different characters a token may have (``aaaa...`` is as guessable as ``a``)
MIN_TOKEN_DISTINCT = 8
_HOW_TO_MAKE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def _strong(token: str, where: str, remedy: str) -> str:
    """``token`` when it is long and varied enough to be a secret.

    Raises:
        ConfigError: naming ``where``, why, and ``remedy``; a token holding bytes that are
            not UTF-8 (:func:`pipeline.config.check_text`: from ``os.environ``) is refused
            here, at start-up, instead of making every authenticated request a 500.
    """
    check_text(token, where, remedy)
    check_not_placeholder(token, where, remedy)
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"{where} is {len(token)} characters; use at least "
                          f"{MIN_TOKEN_CHARS} ({remedy})")
    if len(set(token)) < MIN_TOKEN_DISTINCT:
        raise ConfigError(f"{where} uses {len(set(token))} different characters; a token "
                          f"needs at least {MIN_TOKEN_DISTINCT} ({remedy})")
    return token


def _file_token(path: Path, env: str) -> str:
    """The token stored at ``path``, created (0600, folder 0700) when missing; an existing
    file must be the operator's own (:func:`pipeline.trust.private.check_private`: a
    repository could ship ``.heal/serve/approver.token`` and approve its own fixes).

    Raises:
        ConfigError: the file is tracked by git, another user's or writable by others, or
            the token is too short, too uniform or not UTF-8 text.
        OSError: the file or its folder cannot be created.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    if not path.exists():
        create_private_file(path, secrets.token_urlsafe(32).encode() + b"\n")
    check_private(path, "heal serve token", if_tracked=(
        "a repository must not choose who may approve its fixes; remove it from git "
        "(git rm --cached), delete the file so heal serve makes a new one, and set HEAL_HOME "
        f"to a folder outside the repository or {env}"))
    os.chmod(path, 0o600)
    remedy = f"delete the file so heal serve makes a new one, or write one made with {_HOW_TO_MAKE}"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:  # damage, or another program's file: never a token
        raise ConfigError(f"the token in {path} is not text (byte {exc.start} is not UTF-8); "
                          f"{remedy}") from exc
    return _strong(text.strip(), f"the token in {path}", remedy)


def _env_token(name: str) -> str | None:
    """The token in the environment variable ``name``, without surrounding whitespace (as a
    token file's: a secret mounted from a file often ends in a newline, and a client's token
    is trimmed too, so an untrimmed one could never match); None when unset or empty."""
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    return _strong(value.strip(), name, f"e.g. {_HOW_TO_MAKE}; surrounding whitespace is "
                   "not part of the token")


@dataclass(frozen=True)
class Tokens:
    approver: str
    viewer: str
    approver_source: str
    viewer_source: str

    def role(self, authorization: str | None) -> Role:
        if not authorization:
            return Role.NONE
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token:
            return Role.NONE
        token = token.strip()
        if hmac.compare_digest(token.encode(), self.approver.encode()):
            return Role.APPROVER
        if hmac.compare_digest(token.encode(), self.viewer.encode()):
            return Role.VIEWER
        return Role.NONE


def load_tokens(settings: Settings) -> Tokens:
    """The serve tokens (files generated at first use).

    Raises:
        ConfigError: a token is too short or too uniform, a token file is not the
            operator's own (tracked by git, another user's, writable by others), or a file
            cannot be written.
        StateHomeFull: no space left to create a token file.
    """
    folder = token_dir(settings)
    try:
        approver = _env_token(ENV_APPROVER)
        a_src = ENV_APPROVER
        if approver is None:
            a_path = folder / "approver.token"
            approver, a_src = _file_token(a_path, ENV_APPROVER), str(a_path)
        viewer = _env_token(ENV_VIEWER)
        v_src = ENV_VIEWER
        if viewer is None:
            v_path = folder / "viewer.token"
            viewer, v_src = _file_token(v_path, ENV_VIEWER), str(v_path)
    except OSError as exc:
        full = home_write_error(exc, settings.home, "creating the heal serve tokens", folder)
        if isinstance(full, StateHomeFull):  # the remedy is space, not permissions
            raise full from exc
        raise ConfigError(f"cannot create the heal serve tokens in {folder}: {exc}; make "
                          f"HEAL_HOME writable or set {ENV_APPROVER}") from exc
    return Tokens(approver, viewer, a_src, v_src)


def host_name(host_header: str) -> str:
    """The host of a Host header without the port (``[::1]:80`` -> ``::1``)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def allowed_hosts(bound: str, extra: tuple[str, ...] = ()) -> frozenset[str]:
    """Host names a server bound to ``bound`` answers to."""
    bound = host_name(bound)
    if bound in LOOPBACK_NAMES:
        return LOOPBACK_NAMES
    names = set(LOOPBACK_NAMES) | {h.lower() for h in extra}
    names |= {h.strip().lower() for h in os.environ.get(ENV_HOSTS, "").split(",") if h.strip()}
    if bound not in ("0.0.0.0", "::", ""):
        names.add(bound)
    for name in (socket.gethostname(), socket.getfqdn()):
        names.add(name.lower())
    return frozenset(names)


def how_to_get_a_token(tokens: Tokens, needed: Role) -> str:
    if needed is Role.APPROVER:
        return (f"send 'Authorization: Bearer <approver token>'; the approver token is in "
                f"{tokens.approver_source} on the server (created at the first start of heal "
                f"serve) or is the value of {ENV_APPROVER}")
    return (f"send 'Authorization: Bearer <token>'; the viewer token is in "
            f"{tokens.viewer_source} on the server (or {ENV_VIEWER}); the approver token "
            "works too")
