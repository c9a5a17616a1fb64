"""What a failed connection to a configured Redis or PostgreSQL means for the user.

Only a server that cannot be reached (refused, timed out, no route) is an outage: "cannot
reach ...; start it there" (StreamUnavailable / DatabaseUnavailable, exit 1). A server that
answered and refused the login, the database or an option of the URL is up: telling the
user to start it would be wrong, so these are configuration errors (ConfigError, exit 2)
naming the part of HEAL_REDIS_URL / HEAL_DATABASE_URL to fix. A password is never printed:
the URL is masked, and the server's reason is scrubbed of the URL's password as well.
"""

from __future__ import annotations

import socket
from urllib.parse import unquote, urlsplit

import asyncpg
import redis

from pipeline.config import mask_url
from pipeline.errors import ConfigError, HealError, StreamUnavailable

#: redis-py's cluster client raises this (no RedisError) when no node could be used
_CLUSTER_EXC = redis.exceptions.RedisClusterException


def reason(exc: BaseException, url: str = "") -> str:
    """The failure's own text, without a trailing dot and without ``url``'s password."""
    text = (str(exc) or type(exc).__name__).rstrip(".")
    try:
        password = urlsplit(url).password if url else None
    except ValueError:
        password = None
    for secret in {password, unquote(password)} if password else ():
        if len(secret) >= 3:  # a shorter one would mask unrelated letters of the reason
            text = text.replace(secret, "***")
    return text


# -- Redis -----------------------------------------------------------------------------------


def _redis_failure(exc: BaseException, url: str) -> tuple[str, BaseException, str]:
    """What a failure of the Redis at ``url`` is about: where (``HEAL_REDIS_URL=`` and the
    masked URL), the cause (the node's error behind a cluster client's wrapper) and its
    reason (without the URL's password)."""
    cause = exc.__cause__ if isinstance(exc, _CLUSTER_EXC) and exc.__cause__ else exc
    return f"HEAL_REDIS_URL={mask_url(url)}", cause, reason(cause, url)


def redis_refusal(exc: BaseException, url: str) -> ConfigError | None:
    """A ConfigError when the configured Redis (``url``, HEAL_REDIS_URL) answered but refused
    what the URL asks for: the user or password, the database number, the cluster scheme on a
    server that is not a cluster; None for a failure to reach it."""
    where, cause, why = _redis_failure(exc, url)
    if isinstance(cause, _CLUSTER_EXC) and "cluster mode is not enabled" in why.lower():
        single = mask_url(url.replace("+cluster://", "://", 1))
        return ConfigError(
            f"{where} asks for a Redis Cluster, but that server is not a cluster ({why}): use "
            f"HEAL_REDIS_URL={single} (redis:// or rediss://) for a single Redis server")
    if isinstance(cause, redis.exceptions.AuthenticationError):
        has_password = _has_password(url)
        fix = ("fix the user name or password in HEAL_REDIS_URL (the USER:PASSWORD@ before "
               "the host; :PASSWORD@ for the default user)" if has_password else
               "put the password in HEAL_REDIS_URL (:PASSWORD@ before the host, or "
               "USER:PASSWORD@ for an ACL user)")
        return ConfigError(f"Redis at {where} refused the login ({why}): {fix}")
    if isinstance(cause, redis.exceptions.NoPermissionError):
        return ConfigError(f"Redis at {where} does not let its user run commands heal needs "
                           f"({why}): grant them, or use another user in HEAL_REDIS_URL")
    if isinstance(cause, redis.exceptions.ResponseError) and "db index" in why.lower():
        return ConfigError(
            f"Redis at {where} has no such database ({why}): use a database number the "
            "server has (0 to its `databases` setting minus 1; 0 to 15 by default) as the "
            "URL's path (/0) or db= parameter")
    return None


def redis_unreachable(exc: BaseException, url: str) -> StreamUnavailable:
    """StreamUnavailable for a configured Redis that cannot be reached (or answered with an
    error that is no refusal of the URL, see :func:`redis_refusal`)."""
    where, cause, why = _redis_failure(exc, url)
    if isinstance(cause, redis.exceptions.ResponseError):  # it answered: do not say "start it"
        return StreamUnavailable(f"Redis at {where} answered with an error: {why}")
    if url.split("://", 1)[0].endswith("+cluster"):
        return StreamUnavailable(
            f"cannot reach the Redis Cluster at {where}: {why}; start it there, give the "
            "address of any of its nodes, or unset HEAL_REDIS_URL to use the embedded Redis")
    return StreamUnavailable(f"cannot reach {where}: {why}; start Redis there or unset "
                             "HEAL_REDIS_URL to use the embedded one")


def redis_tls_mismatch(exc: BaseException, url: str) -> ConfigError | None:
    """A ConfigError when a ``rediss://`` URL (TLS) names a Redis that speaks plain TCP;
    None otherwise. Such a server reads the TLS handshake as a command and never completes
    it (a timeout, or its plain error reply breaks the handshake), which looked like an
    outage. Told apart by asking the same address a plain PING (one short connection, only
    on this failure): a RESP reply (``+PONG``, ``-NOAUTH ...``) is a plain Redis."""
    scheme = url.split("://", 1)[0]
    if not scheme.startswith("rediss"):
        return None
    where, cause, why = _redis_failure(exc, url)
    if not isinstance(cause, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return None
    try:
        parts = urlsplit(url)
        address = (parts.hostname or "localhost", parts.port or 6379)
    except ValueError:
        return None
    if not _answers_plain_resp(address):
        return None
    plain = mask_url(url.replace("rediss", "redis", 1))
    return ConfigError(
        f"the server at {where} does not speak TLS (the TLS handshake failed: {why}; it "
        f"answers plain Redis): use HEAL_REDIS_URL={plain}, or enable TLS on the "
        "server")


def _answers_plain_resp(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=2.0) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(1) in (b"+", b"-")
    except OSError:
        return False


def redis_connect_error(exc: BaseException, url: str) -> HealError:
    """ConfigError (:func:`redis_refusal`, :func:`redis_tls_mismatch`) or StreamUnavailable
    (:func:`redis_unreachable`)."""
    return redis_refusal(exc, url) or redis_tls_mismatch(exc, url) \
        or redis_unreachable(exc, url)


def _has_password(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return bool(parts.password) or "password=" in parts.query


# -- PostgreSQL ------------------------------------------------------------------------------

#: SQLSTATEs of a login the server refused: what in the URL to change
_LOGIN_REFUSED = {
    "28P01": "fix the password in {variable} (postgresql://USER:PASSWORD@host:port/database)",
    "28000": "fix the user name in {variable} (postgresql://USER@host/database): the server "
             "has no such role, or its pg_hba.conf does not let that user in",
    "3D000": "fix the database name in {variable} (its path: postgresql://host/DATABASE), or "
             "create that database",
}


#: SQLSTATEs of a server parameter the URL set that the server refused while connecting
#: (``?bogusopt=1``: undefined_object; ``?statement_timeout=abc``: invalid_parameter_value)
_OPTION_REFUSED = ("42704", "22023")


def postgres_refusal(exc: BaseException | None, url: str,
                     variable: str | None = "HEAL_DATABASE_URL") -> ConfigError | None:
    """A ConfigError when PostgreSQL (``url``, the value of ``variable`` when given) answered
    but refused the login (password, role, pg_hba.conf, database name), or the driver refused
    an option of the URL (``sslmode`` ...); None for anything else (a failure to reach it, a
    statement)."""
    where = f"{variable}={mask_url(url)}" if variable else mask_url(url)
    variable = variable or "the database URL"
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = str(getattr(exc, "sqlstate", "") or "")
        if sqlstate in _OPTION_REFUSED:  # (only connecting asks: a server parameter the URL set)
            return ConfigError(f"PostgreSQL at {where} refused an option of the URL "
                               f"({reason(exc, url)}): fix or remove that option of {variable}")
        fix = _LOGIN_REFUSED.get(sqlstate) or (_LOGIN_REFUSED["28000"]
                                               if sqlstate.startswith("28") else None)
        if fix is None:
            return None
        return ConfigError(f"PostgreSQL at {where} refused the connection "
                           f"({reason(exc, url)}): {fix.format(variable=variable)}")
    if isinstance(exc, asyncpg.exceptions.ClientConfigurationError | ValueError):
        return ConfigError(f"{where}: {reason(exc, url)}; fix that option of {variable}")
    return None
