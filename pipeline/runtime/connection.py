"""Which Redis failures mean "wait and reconnect", and their translation at the edge.

redis-py reconnects by itself on the next command once a connection broke, so "reconnect"
here means: back off, then simply try again. Where the failure must reach a user (a CLI
command, ``drain_inline``) it becomes :class:`~pipeline.errors.StreamUnavailable`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from pipeline.errors import AccessRefused, StreamUnavailable

#: failures that go away when Redis comes back (BusyLoadingError is a ConnectionError)
TRANSIENT = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    OSError,
)
#: everything the worker loop survives by backing off (a refused command included)
SURVIVABLE = (*TRANSIENT, redis.exceptions.RedisError)


def is_missing_group(exc: BaseException) -> bool:
    """Redis restarted without its data: the stream and group must be created again."""
    return isinstance(exc, redis.exceptions.ResponseError) and "NOGROUP" in str(exc)


def redis_error_text(exc: BaseException) -> str:
    """What a Redis failure means for the user: a MOVED or ASK reply (a plain ``redis://``
    client talking to one node of a Redis Cluster) says which URL to use instead of
    redis-py's bare ``13907 127.0.0.1:27350``."""
    if isinstance(exc, redis.exceptions.AskError):  # MovedError is an AskError
        return (f"HEAL_REDIS_URL names one node of a Redis Cluster, which sent the key to "
                f"another ({'MOVED' if isinstance(exc, redis.exceptions.MovedError) else 'ASK'} "
                f"{exc}): use HEAL_REDIS_URL=redis+cluster://host:port (rediss+cluster:// "
                "with TLS; any node)")
    return str(exc)


def acl_refusal(exc: BaseException, prefix: str) -> AccessRefused | None:
    """AccessRefused when Redis refused a command because of its user's ACL (NOPERM): the
    keys heal uses (under HEAL_STREAM_PREFIX ``prefix``, and rq's under ``rq:``), or a
    command; None for any other failure. The server is up and answered: telling the user
    to start it, or retrying, would not help; the ACL or the prefix has to change.

    The reason is Redis's own (the end of a pipeline's message, after the command redis-py
    quotes, which holds event text)."""
    if not isinstance(exc, redis.exceptions.NoPermissionError):
        return None
    why = (str(exc).rsplit("caused error: ", 1)[-1] or "NOPERM").rstrip(".")
    if "key" in why.lower():  # 6.2: "...access one of the keys..."; 7: "...access a key"
        return AccessRefused(
            f"the Redis user of HEAL_REDIS_URL may not use keys under `{prefix}:*` ({why}): "
            f"grant `~{prefix}:*` (and `~rq:*`) to that user (ACL SETUSER <user> "
            f"~{prefix}:* ~rq:*), or set HEAL_STREAM_PREFIX to a prefix its key patterns "
            "cover")
    return AccessRefused(
        f"the Redis user of HEAL_REDIS_URL may not do what heal needs ({why}): grant "
        f"{_grant(why)}, or use another user in HEAL_REDIS_URL")


def redis_failure(exc: BaseException, what: str,
                  prefix: str) -> AccessRefused | StreamUnavailable:
    """What a Redis failure while ``what`` (``"circuit breaker"``, ``"budget"``, ...) works
    on heal's shared state becomes at its edge: :class:`AccessRefused` when the ACL of
    Redis's user refused it (:func:`acl_refusal`: exit 2, a stage stops, and the user is
    told what to grant, not that Redis is down), else StreamUnavailable
    ``"<what>: Redis unreachable: ..."``. One translation, so no guardrail words a refusal
    as an outage."""
    return acl_refusal(exc, prefix) or StreamUnavailable(
        f"{what}: Redis unreachable: {redis_error_text(exc)}")


#: the command a NOPERM reply names (Redis 6.2 and 7: "...to run the 'eval' command")
_REFUSED_COMMAND = re.compile(r"run the '([a-z|-]{1,64})' command")
#: the commands heal runs its atomic steps with (redis-py's scripts: EVALSHA, and SCRIPT LOAD
#: when Redis does not know the script yet; EVAL for one-off scripts)
SCRIPT_COMMANDS = ("eval", "evalsha", "script")


def _grant(why: str) -> str:
    """What to grant for a refused command ``why`` (Redis's reason): the command named, or
    every scripting command when it is one of them (heal needs all three)."""
    found = _REFUSED_COMMAND.search(why[:512].lower())
    if found is None:
        return ("it (ACL SETUSER <user> +@all, or the commands and channels named)")
    command = found.group(1).split("|", 1)[0]
    wanted = SCRIPT_COMMANDS if command in SCRIPT_COMMANDS else (command,)
    plus = " ".join(f"+{name}" for name in wanted)
    return f"{plus} to that user (ACL SETUSER <user> {plus}; or +@all)"


#: a script that touches nothing: its key is only there for the ACL (and a cluster's routing)
_PROBE_SCRIPT = "return 1"


def probe_scripts(client: Any, key: str) -> None:
    """Run the scripting commands heal needs once, harmlessly, with ``key`` (one of heal's
    keys, which the user may use): a user refused EVAL, EVALSHA or SCRIPT is then refused
    here, at start, not at the first event a stage handles.

    Raises:
        redis.exceptions.NoPermissionError: the user may not run one of them.
        redis.exceptions.RedisError: any other failure of Redis.
    """
    sha = client.script_load(_PROBE_SCRIPT)
    client.evalsha(sha, 1, key)
    client.eval(_PROBE_SCRIPT, 1, key)


@contextmanager
def stream_errors(what: str, prefix: str) -> Iterator[None]:
    """Translate Redis failures into StreamUnavailable (with what we were doing), or a
    AccessRefused (a ConfigError) when the ACL of Redis's user refused (see
    :func:`acl_refusal`).

    Raises:
        StreamUnavailable: Redis unreachable or refusing the command.
        AccessRefused: the user of HEAL_REDIS_URL may not use heal's keys (or a command).
    """
    try:
        yield
    except TRANSIENT as exc:
        raise StreamUnavailable(
            f"Redis is unreachable while {what}: {exc}; check HEAL_REDIS_URL "
            "(unset it to use the embedded Redis under HEAL_HOME)"
        ) from exc
    except redis.exceptions.RedisError as exc:
        refusal = acl_refusal(exc, prefix)
        if refusal is not None:
            raise refusal from exc
        raise StreamUnavailable(
            f"Redis refused a command while {what}: {redis_error_text(exc)}") from exc


#: schemes of a Redis Cluster URL (any node's address; the client discovers the others)
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


def hash_tag(key: str) -> str | None:
    """The part of ``key`` a Redis Cluster hashes to pick its slot, when it is not the whole
    key: Redis's rule exactly: the text between the FIRST ``{`` and the first ``}`` after
    it, only when that text is not empty (``{}`` and ``he{}al`` are no hash tag: the whole
    key is hashed; in ``{}:errors:{0}`` the ``{0}`` is never looked at)."""
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    if end < 0 or end == start + 1:
        return None
    return key[start + 1:end]


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0] in CLUSTER_SCHEMES


def redis_client(url: str, **kwargs: Any) -> Any:
    """A client for ``url``: ``redis://``, ``rediss://``, ``unix://`` give ``redis.Redis``;
    ``redis+cluster://host:port`` (or ``rediss+cluster://``) gives redis-py's cluster client,
    which routes each key to its node (streams, scripts and pipelines alike).

    Raises:
        ValueError: a malformed URL.
    """
    if is_cluster_url(url):
        from redis.cluster import RedisCluster

        plain = url.replace("+cluster://", "://", 1)
        return RedisCluster.from_url(plain, **kwargs)
    return redis.Redis.from_url(url, **kwargs)


#: the characters of a Redis glob pattern (SCAN MATCH) that are not themselves
_GLOB = re.compile(r"([*?\[\]\\])")


def glob_escape(text: str) -> str:
    """``text`` as a Redis glob pattern matching exactly itself (a backslash before each of
    ``* ? [ ] \\``). Every SCAN MATCH built from HEAL_STREAM_PREFIX (or event text) goes
    through this: ``HEAL_STREAM_PREFIX=he*`` would otherwise read, or a cleanup delete,
    the keys of the ``heal`` prefix as its own."""
    return _GLOB.sub(r"\\\1", text)
