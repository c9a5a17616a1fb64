"""Which Redis and which PostgreSQL heal talks to, and starting the embedded ones.

``HEAL_REDIS_URL`` / ``HEAL_DATABASE_URL`` set: that server is used as is; nothing is started.
Unset: a real server is started under ``$HEAL_HOME`` (see storage/embedded.py) and shared.

Sharing (why leases rather than a daemon or a server per process): every ``heal`` process
that uses an embedded engine takes a lease under an exclusive file lock; the first one starts
the server, the others attach to it, and the process that drops the last lease (at normal exit)
stops it, saving its data. So ``heal demo`` leaves nothing running, while ``heal up`` plus any
number of ``heal worker``/``heal run`` processes share one server. Leases of killed processes
are pruned the next time any process takes or drops one. ``heal engines start`` pins the
engines (they keep running with no process attached) and ``heal engines stop`` stops them.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import os
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Protocol, TypeVar

import asyncpg
import redis

from pipeline.config import PG_SCHEMES, REDIS_SCHEMES, Settings, check_url
from pipeline.errors import (
    ConfigError,
    DatabaseUnavailable,
    HealError,
    StateHomeUnusable,
    StreamUnavailable,
)
from pipeline.homedir import home_writes, make_home
from storage.connect_errors import postgres_refusal, redis_connect_error
from storage.db import Database, mask_url
from storage.embedded import EmbeddedPostgres, EmbeddedRedis, says_no_space
from storage.leases import LeaseRegistry

T = TypeVar("T")

_CLUSTER_EXC = redis.exceptions.RedisClusterException


class _Embedded(Protocol):
    directory: Path
    leases: LeaseRegistry

    def ensure_running(self) -> str: ...

    def stop(self) -> bool: ...

    def pid(self) -> int | None: ...


log = logging.getLogger("heal.engines")

_state_lock = threading.Lock()
#: (pid, engine folder) of the leases this process holds; pid so a forked child never drops
#: its parent's lease.
_held: dict[tuple[int, Path], _Embedded] = {}
_exit_hook_registered = False


def embedded_redis(settings: Settings) -> EmbeddedRedis:
    return EmbeddedRedis(settings.home)


def embedded_postgres(settings: Settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(settings.home)


def _acquire(engine: _Embedded) -> str:
    """Start or reuse ``engine`` and hold a lease on it until this process exits."""
    global _exit_hook_registered
    # the engines are the first to create HEAL_HOME: make it private first (0700, files
    # 0600; 0711 as root, so the embedded PostgreSQL's own user reaches its data)
    try:
        make_home(engine.directory.parent)
    except OSError as exc:  # an unusable HEAL_HOME is configuration, not an internal error
        raise _home_refused(engine, exc) from exc
    # The lease lock (a fresh flock per call) also excludes this process's other threads;
    # _state_lock only guards the table, so one thread can start PostgreSQL while another
    # starts Redis (see start_database_soon). A full or read-only HEAL_HOME is the user's to
    # fix (StateHomeFull, ConfigError), not an internal error.
    with _lease_writes(engine), engine.leases.locked():
        url = engine.ensure_running()
        try:
            engine.leases.add()
        except BaseException:
            # no lease (a full disk): a server no live lease holds is stopped here, not left
            # for whoever notices it
            with contextlib.suppress(Exception):
                if not engine.leases.live():
                    engine.stop()
            raise
        with _state_lock:
            _held[(os.getpid(), engine.directory)] = engine
            if not _exit_hook_registered:
                atexit.register(_release_all)
                _exit_hook_registered = True
    return url


def _home_refused(engine: _Embedded, exc: OSError) -> StateHomeUnusable:
    """The state home holding ``engine`` could not be created (``exc``): what to change."""
    return StateHomeUnusable(f"cannot create the state home {engine.directory.parent}: "
                       f"{exc.strerror or exc}; set HEAL_HOME to a directory heal may create "
                       "and write")


def _lease_writes(engine: _Embedded) -> contextlib.AbstractContextManager[None]:
    """Translate a full or unwritable HEAL_HOME met while taking, pinning or dropping a lease
    on ``engine`` (see pipeline.homedir.home_writes). Raises StateHomeFull, ConfigError."""
    return home_writes(engine.directory.parent, f"the lease on the embedded {_name(engine)}",
                       engine.leases.users)


def _name(engine: _Embedded) -> str:
    return "Redis" if isinstance(engine, EmbeddedRedis) else "PostgreSQL"


class DatabaseStart:
    """The embedded PostgreSQL being started (or reused) on a helper thread while the caller
    does other work (imports, seeds, the model): a one-shot command then waits for the longer
    of the two, not their sum. A no-op when HEAL_DATABASE_URL is set."""

    def __init__(self, settings: Settings) -> None:
        self.error: Exception | None = None
        self._thread: threading.Thread | None = None
        if settings.database_url:
            return
        # not a daemon: interpreter exit waits for it, so a started server always gets its
        # lease (and the exit hook that stops it)
        self._thread = threading.Thread(target=self._start, args=(settings,),
                                        name="heal-start-postgres")
        self._thread.start()

    def _start(self, settings: Settings) -> None:
        try:
            database_url(settings)
        except Exception as exc:  # noqa: BLE001 - never a traceback from this thread: the
            self.error = exc      # next open_database meets the same trouble and reports it

    def wait(self) -> None:
        """Until the start finished (successful or not: open_database then says why)."""
        if self._thread is not None:
            self._thread.join()


def start_database_soon(settings: Settings) -> DatabaseStart:
    """Start (or reuse) the embedded PostgreSQL on a helper thread; ``open_database`` called
    meanwhile waits for it under the engine's lease lock instead of starting a second one."""
    return DatabaseStart(settings)


def _release(engine: _Embedded) -> bool:
    """Drop this process's lease; stop the engine if no live lease is left. Returns whether
    it was stopped."""
    with engine.leases.locked():
        engine.leases.remove()
        if engine.leases.live():
            return False
        return engine.stop()


def _release_all() -> None:
    pid = os.getpid()
    with _state_lock:  # never held with a lease lock taken inside it (see _acquire)
        mine = [_held.pop(key) for key in [k for k in _held if k[0] == pid]]
    for engine in mine:
        # At interpreter exit: a failure to stop must not print a traceback; the next
        # heal process prunes the lease and `heal engines stop` stops the server.
        with contextlib.suppress(Exception):
            _release(engine)


def revive_held_engines() -> list[str]:
    """Restart the embedded engines this process holds a lease on and that are no longer
    running (killed, OOM, `heal engines stop --force`): a worker that holds a lease is
    responsible for its engine (issue 11, item 11). The lease is re-taken under the engine's
    lock if it was deleted, so the engine is shared and stopped as any other. Returns the
    folders of the engines restarted; never raises."""
    pid = os.getpid()
    revived: list[str] = []
    with _state_lock:
        mine = [engine for key, engine in _held.items() if key[0] == pid]
    for engine in mine:
        if engine.pid() is not None and engine.leases.holds():
            continue
        try:
            with engine.leases.locked():
                if engine.pid() is None:
                    engine.ensure_running()
                    revived.append(str(engine.directory))
                # Re-take this process's lease in the same critical section: `heal engines
                # stop --force` deleted it, and without it the next short heal command would
                # drop the only lease at its exit and stop the engine under this worker
                # again, a restart loop after every command. Released at exit by
                # _release_all, as the lease _acquire took (the engine stays in _held).
                engine.leases.add()
        except Exception as exc:  # noqa: BLE001 - tried again at the next failure
            log.warning("embedded engine under %s is down and did not restart: %s",
                        engine.directory, exc)
    for folder in revived:
        log.warning("embedded engine under %s was down: restarted by this worker", folder)
    return revived


def _reason(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).rstrip(".")


def check_urls(settings: Settings) -> None:
    """Raises ConfigError when HEAL_REDIS_URL or HEAL_DATABASE_URL is malformed (see
    pipeline.config.check_url; Settings built without from_env are checked here too)."""
    if settings.redis_url:
        check_url("HEAL_REDIS_URL", settings.redis_url, REDIS_SCHEMES)
    if settings.database_url:
        check_url("HEAL_DATABASE_URL", settings.database_url, PG_SCHEMES)


# -- Redis -----------------------------------------------------------------------------------


def redis_url(settings: Settings) -> str:
    """URL of the Redis to use; starts (or reuses) the embedded one when HEAL_REDIS_URL is
    unset. Raises ConfigError, StreamUnavailable."""
    if settings.redis_url:
        check_url("HEAL_REDIS_URL", settings.redis_url, REDIS_SCHEMES)
        return settings.redis_url
    return _acquire(embedded_redis(settings))


def _check_cluster_keys(settings: Settings) -> None:
    """The stage runtime's hand-off touches a stage's input, output and dedupe keys in one
    script, so on a Redis Cluster they must share a slot: decided on the keys themselves,
    with Redis's own hash-tag rule (:func:`~pipeline.runtime.connection.hash_tag`; an empty
    ``{}`` is no tag). Raises: ConfigError."""
    from pipeline.config import PIPELINE_STREAMS, STAGES, STREAM_DEAD
    from pipeline.runtime.connection import hash_tag

    def tags(view: Settings) -> set[str | None]:
        keys = [view.stream(s) for s in (*PIPELINE_STREAMS, STREAM_DEAD)]
        keys += [view.partition_key("done", stage, "0") for stage in STAGES]
        return {hash_tag(key) for key in keys}

    braces = ("; Redis ignores an empty {} and hashes what lies between the first { and "
              "the first } after it" if "{" in settings.prefix or "}" in settings.prefix
              else "")
    if settings.partitions <= 1:
        if len(tags(settings)) != 1 or None in tags(settings):
            # said of the URL, not of the server: this is checked before connecting, and a
            # redis+cluster:// URL may name a single server (connect_redis then says so)
            raise ConfigError(
                "HEAL_REDIS_URL asks for a Redis Cluster (redis+cluster://): give "
                f"HEAL_STREAM_PREFIX a hash tag "
                f"(HEAL_STREAM_PREFIX={{{settings.prefix.strip('{}') or 'heal'}}}) so the "
                "hand-off's keys share a slot, or set HEAL_PARTITIONS to spread the streams "
                f"over the nodes (HEAL_STREAM_PREFIX={settings.prefix}{braces}); for a single "
                "Redis server, use redis:// instead")
        return
    views = [tags(view) for view in settings.partition_views()]
    if all(found == {str(k)} for k, found in enumerate(views)):
        return
    if all(len(found) == 1 and None not in found for found in views):
        raise ConfigError(
            f"HEAL_STREAM_PREFIX={settings.prefix} has a hash tag: with HEAL_PARTITIONS="
            f"{settings.partitions} every partition would land in that one slot; drop the "
            "braces (each partition's keys carry their own {k} tag)")
    raise ConfigError(
        f"HEAL_STREAM_PREFIX={settings.prefix}: its braces hide the partitions' {{k}} tags, "
        f"so one partition's keys would be in different slots of the Redis Cluster{braces}; "
        "drop the braces from the prefix")


def check_cluster_layout(settings: Settings) -> None:
    """With a Redis Cluster URL, refuse a layout whose hand-off would be cross-slot (a
    configuration error: exit 2, whatever the command). Raises: ConfigError."""
    from pipeline.runtime.connection import is_cluster_url

    if settings.redis_url and is_cluster_url(settings.redis_url):
        _check_cluster_keys(settings)


def _refuse_cluster_node(client: Any, url: str) -> None:
    """A plain ``redis://`` URL naming a node of a Redis Cluster would answer most keys with
    MOVED: say which URL to use instead. Raises: ConfigError."""
    try:
        clustered = str(client.info("cluster").get("cluster_enabled", "0")) == "1"
    except redis.RedisError:
        return  # INFO not allowed (ACL) or not answered: the commands will tell
    if clustered:
        client.close()
        cluster_url = url.replace("://", "+cluster://", 1)
        raise ConfigError(
            f"HEAL_REDIS_URL={mask_url(url)} is a node of a Redis Cluster: use "
            f"HEAL_REDIS_URL={mask_url(cluster_url)} (redis+cluster:// or rediss+cluster://, "
            "any node), so each key goes to the node holding its slot")


def connect_redis(settings: Settings, **client_kwargs: Any) -> redis.Redis:
    """A connected client (bytes in, bytes out) for the configured or embedded Redis.

    ``client_kwargs`` go to ``redis.Redis`` (e.g. ``socket_timeout``). Raises ConfigError (bad
    URL), StreamUnavailable (cannot reach or start it; the message says what to change).
    """
    from pipeline.runtime.connection import is_cluster_url, redis_client

    url = redis_url(settings)
    if is_cluster_url(url):
        _check_cluster_keys(settings)
    client_kwargs.setdefault("socket_connect_timeout", 5.0)
    try:
        # the cluster client is no redis.Redis, but it speaks every command heal uses; it
        # connects here, and raises RedisClusterException (no RedisError) with the node's
        # own failure as the cause
        client: redis.Redis = redis_client(url, **client_kwargs)
    except (redis.RedisError, _CLUSTER_EXC) as exc:
        raise redis_connect_error(exc, url) from exc
    except ValueError as exc:
        raise ConfigError(f"HEAL_REDIS_URL={mask_url(url)}: {exc}") from exc
    try:
        client.ping()
    except (redis.RedisError, _CLUSTER_EXC) as exc:
        client.close()
        if settings.redis_url:
            # the server answered and refused the URL's login or database: exit 2, not
            # "start Redis there"; only a failure to reach it is an outage
            raise redis_connect_error(exc, url) from exc
        raise StreamUnavailable(
            f"the embedded Redis at {url} does not answer: {_reason(exc)}; "
            "run `heal engines stop` and retry, or set HEAL_REDIS_URL"
        ) from exc
    if settings.redis_url and not is_cluster_url(url):
        _refuse_cluster_node(client, url)
    return client


# -- PostgreSQL ------------------------------------------------------------------------------


def database_url(settings: Settings) -> str:
    """URL of the PostgreSQL to use; starts (or reuses) the embedded one when
    HEAL_DATABASE_URL is unset. Raises ConfigError, DatabaseUnavailable."""
    if settings.database_url:
        check_url("HEAL_DATABASE_URL", settings.database_url, PG_SCHEMES)
        return settings.database_url
    return _acquire(embedded_postgres(settings))


def open_database(settings: Settings, min_size: int = 1, max_size: int = 4) -> Database:
    """A connected, migrated :class:`Database`.

    Raises ConfigError (bad URL, changed migration), DatabaseUnavailable (cannot reach or
    start it; the message says what to change), QueryError (a migration failed).
    """
    from storage.migrate import migrate

    url = database_url(settings)
    try:
        db = Database(url, min_size=min_size, max_size=max_size)
    except ConfigError as exc:  # the login, database or an option: name the variable
        refused = postgres_refusal(exc.__cause__, url) if settings.database_url else None
        if refused is not None:
            raise refused from exc.__cause__
        raise
    except DatabaseUnavailable as exc:
        if settings.database_url:
            raise DatabaseUnavailable(
                f"cannot reach HEAL_DATABASE_URL={mask_url(url)}: "
                f"{_reason(exc.__cause__ or exc)}; start PostgreSQL there or unset "
                "HEAL_DATABASE_URL to use the embedded one"
            ) from exc
        raise
    try:
        migrate(db)
    except BaseException:
        db.close()
        raise
    return db


# -- what is in use (heal status, heal engines info) -----------------------------------------


def _redis_info(settings: Settings, start: bool) -> dict[str, Any]:
    embedded = embedded_redis(settings)
    info: dict[str, Any] = {"mode": "external" if settings.redis_url else "embedded"}
    if not settings.redis_url:
        info.update(data=str(embedded.directory), url=embedded.url)
        if not start and embedded.pid() is None:
            return {**info, "running": False, "reachable": False, "version": None}
    try:
        client = connect_redis(settings)
    except HealError as exc:
        # the server answered and refused the URL's login, database or scheme: it runs
        refused = isinstance(exc, ConfigError) and isinstance(
            exc.__cause__, redis.RedisError | _CLUSTER_EXC)
        # or the embedded server answered MISCONF: it runs and refuses writes (it cannot
        # write its files: the error says what to change)
        refused = refused or isinstance(exc.__cause__, redis.ResponseError)
        return {
            **info,
            "url": mask_url(settings.redis_url or embedded.url),
            "running": refused,
            "reachable": False,
            "version": None,
            "error": str(exc),
            # a configuration to change (exit 2), not an outage
            **({"config_error": True} if isinstance(exc, ConfigError) else {}),
            **({"refused": True} if refused else {}),
        }
    try:
        server = client.info("server")
    except redis.RedisError as exc:
        return {**info, "reachable": False, "version": None, "error": str(exc)}
    finally:
        client.close()
    info.update(url=mask_url(settings.redis_url or embedded.url), running=True, reachable=True)
    info.update(version=str(server.get("redis_version")), pid=server.get("process_id"))
    return info


async def _pg_versions(url: str) -> tuple[str, str | None]:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        version = await conn.fetchval("SHOW server_version")
        vector = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        return str(version), (str(vector) if vector is not None else None)
    finally:
        await conn.close()


def _run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` that also works when the caller already runs an event loop (an async
    web handler asking for the status): then the coroutine runs on a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _postgres_info(settings: Settings, start: bool) -> dict[str, Any]:
    embedded = embedded_postgres(settings)
    info: dict[str, Any] = {"mode": "external" if settings.database_url else "embedded"}
    if not settings.database_url:
        info["data"] = str(embedded.pgdata)
        if not start and embedded.pid() is None:
            moved = embedded.moved_problem()
            return {**info, "url": None, "running": False, "reachable": False, "version": None,
                    **({"error": moved, "config_error": True} if moved else {})}
    try:
        url = database_url(settings)
        version, vector = _run_coroutine(_pg_versions(url))
    except HealError as exc:
        return {
            **info,
            "url": mask_url(settings.database_url or ""),
            "running": False,
            "reachable": False,
            "version": None,
            "error": str(exc),
            **({"config_error": True} if isinstance(exc, ConfigError) else {}),
        }
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        where = mask_url(settings.database_url or "")
        refused = postgres_refusal(exc, settings.database_url) if settings.database_url else None
        if refused is not None:  # up, but the URL's login, database or option is wrong
            return {**info, "url": where, "running": True, "reachable": False,
                    "version": None, "error": str(refused), "config_error": True,
                    "refused": True}
        if settings.database_url:
            hint = (f"cannot reach HEAL_DATABASE_URL={where}: {_reason(exc)}; start PostgreSQL "
                    "there or unset HEAL_DATABASE_URL to use the embedded one")
        elif says_no_space(_reason(exc)):  # (as the Redis line says: a restart cannot help)
            hint = (f"no space left in HEAL_HOME={settings.home}: the embedded PostgreSQL under "
                    f"{embedded.pgdata} cannot write its files ({_reason(exc)}); free space on "
                    "that file system, or move HEAL_HOME to another one")
        else:
            hint = (f"the embedded PostgreSQL does not answer: {_reason(exc)}; run `heal engines "
                    "stop`")
        return {**info, "url": where, "running": False, "reachable": False, "version": None,
                "error": hint}
    info.update(url=mask_url(url), running=True, reachable=True, version=version)
    info.update(vector=vector)
    if not settings.database_url:
        info["pid"] = embedded.pid()
    return info


def engine_label(info: dict[str, Any]) -> str | None:
    """The word status tables show for an engine of :func:`engine_info` with a problem, None
    when it is fine: REFUSED (it answered and refused the URL's login, database, scheme or
    its user's keys, or, embedded, refuses writes: MISCONF), CONFIG ERROR (another setting
    to change: a malformed URL, HEAL_HOME) or UNREACHABLE (an outage)."""
    if info.get("refused"):
        return "REFUSED"
    if info.get("reachable"):
        return None
    return "CONFIG ERROR" if info.get("config_error") else "UNREACHABLE"


def settle_state(info: dict[str, Any]) -> dict[str, Any]:
    """Set ``info["state"]`` (the JSON twin of :func:`engine_label`): ``ok``, ``refused``
    (it runs and answered, ``running`` true, but refused the URL's login, database, scheme
    or its user's keys), ``config_error`` or ``unreachable``. Returns ``info``."""
    info["state"] = (engine_label(info) or "ok").lower().replace(" ", "_")
    if info.get("refused"):
        info["running"] = True  # it answered: up, whatever the check that met the refusal
    return info


def engine_info(settings: Settings, *, start: bool = True) -> dict[str, Any]:
    """``{"redis": {...}, "postgres": {...}}``: mode (embedded/external), url (password
    masked), reachable, version, and for embedded engines data folder, pid and users; an
    ``error`` (what to change) when unreachable. With ``start=False`` embedded engines that
    are not running are reported as such instead of being started. Never raises HealError."""
    info = {"redis": _redis_info(settings, start), "postgres": _postgres_info(settings, start)}
    for name, engine in _embedded_engines(settings):
        try:
            with _lease_writes(engine), engine.leases.locked():
                info[name]["users"] = engine.leases.live()
        except HealError as exc:  # a full or read-only HEAL_HOME: say so, do not fail
            info[name].update(users=None, reachable=False, error=str(exc))
            if isinstance(exc, ConfigError):
                info[name]["config_error"] = True
        except OSError as exc:  # its folder cannot be created (HEAL_HOME=/proc/x): the same
            info[name].update(users=None, reachable=False, config_error=True,
                              error=str(_home_refused(engine, exc)))
    for each in info.values():
        settle_state(each)
    return info


# -- explicit control (heal engines start|stop) ----------------------------------------------


def start_engines(settings: Settings) -> dict[str, str]:
    """Start the embedded engines (those not configured externally) and pin them so they keep
    running after this process exits. Returns {engine: url}. Raises EngineError."""
    urls: dict[str, str] = {}
    for name, engine in _embedded_engines(settings):
        urls[name] = _acquire(engine)
        with _lease_writes(engine), engine.leases.locked():
            engine.leases.pin()
    return urls


def stop_engines(settings: Settings, *, force: bool = False) -> dict[str, str]:
    """Unpin and stop the embedded engines. Without ``force`` an engine still used by another
    live process is left running (and reported). Returns {engine: what happened}."""
    result: dict[str, str] = {}
    me = str(os.getpid())
    for name, engine in _embedded_engines(settings):
        with _lease_writes(engine), engine.leases.locked():
            engine.leases.unpin()
            engine.leases.remove()
            with _state_lock:
                _held.pop((os.getpid(), engine.directory), None)
            others = [u for u in engine.leases.live() if u != me]
            if others and not force:
                result[name] = f"still used by pid {', '.join(others)}; left running (--force)"
                continue
            engine.leases.clear()
            result[name] = "stopped" if engine.stop() else "not running"
            stale = getattr(engine, "stale_pid", None)
            if stale is not None:
                result[name] += (f"; removed a stale postmaster.pid naming pid {stale}, not "
                                 "this server's (nothing was signalled)")
    return result


def _embedded_engines(settings: Settings) -> list[tuple[str, _Embedded]]:
    engines: list[tuple[str, _Embedded]] = []
    if not settings.redis_url:
        engines.append(("redis", embedded_redis(settings)))
    if not settings.database_url:
        engines.append(("postgres", embedded_postgres(settings)))
    return engines
