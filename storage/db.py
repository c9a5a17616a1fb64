"""A synchronous facade over an asyncpg connection pool.

heal's stages are synchronous code; asyncpg is the fast PostgreSQL driver (and pgvector ships a
codec for it). :class:`Database` runs one event loop in a daemon thread and submits every call
to it, so any thread can use one Database at the same time (up to ``max_size`` concurrent
statements; the rest wait for a connection).

Errors: a server that cannot be reached, refuses or drops the connection, or a call that times
out raises :class:`~pipeline.errors.DatabaseUnavailable`; a statement the server rejects
(syntax, constraint, missing table) or the driver refuses to send (wrong argument count or
type) raises :class:`~pipeline.errors.QueryError` carrying the SQLSTATE; a malformed URL
raises :class:`~pipeline.errors.ConfigError`, and so does a first connection the server
refuses (password, role, unknown database: it is up, the URL is wrong; see
storage/connect_errors.py), while a later one refused (a password changed under a running
worker) is DatabaseUnavailable, waited out as an outage. Messages name the masked URL, never
a password.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

import asyncpg

from pipeline.config import mask_url as mask_url  # re-exported: storage.db.mask_url
from pipeline.errors import ConfigError, DatabaseUnavailable, QueryError
from storage.connect_errors import postgres_refusal

T = TypeVar("T")
U = TypeVar("U")

#: Seconds a single call may take before it is abandoned (DatabaseUnavailable).
DEFAULT_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 10.0

# Server-side errors that mean "the server is not usable right now", not "your SQL is wrong":
# connection, resources, operator intervention, a refused login (28) or database (3D)
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57", "28", "3D")


def _translate(exc: BaseException, url: str) -> Exception:
    where = mask_url(url)
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = str(getattr(exc, "sqlstate", "") or "")
        if sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES:
            return DatabaseUnavailable(f"PostgreSQL at {where} is unavailable: {exc}")
        return QueryError(f"PostgreSQL rejected a statement: {exc} (SQLSTATE {sqlstate})", sqlstate)
    if isinstance(exc, asyncpg.exceptions.ClientConfigurationError | ValueError):
        return ConfigError(f"invalid database URL {where}: {exc}")
    if isinstance(exc, asyncpg.InterfaceError) and not _about_connection(exc):
        # misuse caught by the driver before the server saw it (e.g. argument count)
        return QueryError(f"PostgreSQL statement not sent: {exc}")
    if isinstance(exc, TimeoutError | concurrent.futures.TimeoutError):
        return DatabaseUnavailable(f"PostgreSQL at {where} did not answer in time")
    reason = str(exc) or type(exc).__name__
    return DatabaseUnavailable(f"cannot use PostgreSQL at {where}: {reason}")


def _about_connection(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "connection" in text or "closed" in text


_TRANSLATED = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
    concurrent.futures.TimeoutError,
    ConnectionError,
)


#: a JSON ``\u0000`` escape (not an escaped backslash followed by ``u0000``)
_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def _text_param(value: str) -> str:
    """A ``text`` parameter PostgreSQL accepts: it cannot store NUL (U+0000), which event
    text may hold (a command's output); it becomes U+FFFD, the replacement character.

    Raises:
        TypeError: not a str (asyncpg reports it as the statement's invalid argument).
    """
    if not isinstance(value, str):
        raise TypeError(f"expected str, got {type(value).__name__}")
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _json_param(value: str) -> str:
    """A ``json``/``jsonb`` parameter (JSON text) PostgreSQL accepts: it refuses the
    ``\u0000`` escape, which becomes ``\ufffd`` (linear: one pass, no backtracking past the
    run of backslashes before it)."""
    value = _text_param(value)
    return _JSON_NUL.sub(r"\1\\ufffd", value) if "\\u0000" in value else value


def _same(value: str) -> str:
    return value


class _PoolFloorOnce(logging.Filter):
    """asyncpg's pools log "Failed to restore the pool connection floor; retrying" with a
    30-line traceback each time one fails to reconnect (each pool backs off by itself, but a
    process has several: several a second during a PostgreSQL outage). One line instead,
    when the first pool finds PostgreSQL gone, and one when a connection is made again
    (:func:`_pool_reconnected`); none in between."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Failed to restore the pool connection floor"):
            return True
        with self._lock:
            if self.down:
                return False
            self.down = True
        exc = record.exc_info[1] if record.exc_info else None
        why = f"{type(exc).__name__}: {exc}" if exc is not None else "no reason given"
        record.msg = ("PostgreSQL unreachable: the connection pool cannot restore its "
                      "connections (%s); it keeps retrying, said again once it reconnects")
        record.args = (why,)
        record.exc_info = None
        record.exc_text = None
        return True

    def reconnected(self) -> bool:
        """Whether an outage was said (and now ends)."""
        with self._lock:
            was, self.down = self.down, False
        return was


_POOL_FLOOR = _PoolFloorOnce()
logging.getLogger("asyncpg.pool").addFilter(_POOL_FLOOR)
log = logging.getLogger("heal.db")


def _pool_reconnected() -> None:
    if _POOL_FLOOR.reconnected():
        log.info("PostgreSQL reachable again: the connection pool reconnected")


async def _init_connection(conn: asyncpg.Connection, untyped: Callable[[], None]) -> None:
    _pool_reconnected()  # (every new connection: the outage said, if any, is over)
    # NUL-free text and JSON on every connection, whichever repository writes (one place,
    # not one per statement): PostgreSQL rejects a NUL in text and a \u0000 in jsonb, and
    # the row would be lost (an issue parked, an outcome not recorded)
    for name in ("text", "varchar"):
        await conn.set_type_codec(name, schema="pg_catalog", encoder=_text_param,
                                  decoder=_same, format="text")
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, schema="pg_catalog", encoder=_json_param,
                                  decoder=_same, format="text")
    # The codec can only be registered once the extension exists; ``migrate`` re-initialises
    # the pool (Database.reload_types) when it created the extension, or when a connection
    # was set up before the extension existed (``untyped`` is called: another process may
    # have created it since, e.g. two ``heal run`` starting on one new HEAL_HOME).
    has_vector = await conn.fetchval("SELECT 1 FROM pg_type WHERE typname = 'vector' LIMIT 1")
    if has_vector:
        from pgvector.asyncpg import register_vector

        await register_vector(conn)
    else:
        untyped()


class Pending(Generic[T]):
    """A statement already sent (see :meth:`Database.start_fetchrow`); ``result()`` waits for
    its answer (at most the Database's timeout from then on)."""

    def __init__(self, wait: Callable[[], T]) -> None:
        self._wait = wait

    def result(self) -> T:
        """Raises: DatabaseUnavailable, QueryError (as the synchronous calls)."""
        return self._wait()

    def then(self, convert: Callable[[T], U]) -> Pending[U]:
        """The same statement, its answer passed through ``convert`` on ``result()``."""
        return Pending(lambda: convert(self._wait()))


#: every Database not closed yet (see close_all)
_OPEN: set[Database] = set()


def close_all() -> None:
    """Close every open Database of this process: call before stopping a server they use."""
    for db in list(_OPEN):
        db.close()


class Database:
    """Connected pool; use ``execute``/``fetch``/``fetchrow``/``fetchval`` for single statements
    and ``run(fn)`` for anything that needs one connection (transactions, COPY).

    Raises DatabaseUnavailable when the first connection cannot be made.
    """

    def __init__(
        self,
        url: str,
        min_size: int = 1,
        max_size: int = 4,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="heal-db-loop", daemon=True
        )
        self._thread.start()
        self._closed = False
        #: a pooled connection was set up before the vector type existed (see
        #: ``_init_connection``): its codec is missing until ``reload_types``
        self.untyped = False
        #: connections of :meth:`listen` (closed with the pool)
        self._listeners: set[asyncpg.Connection] = set()

        async def _create() -> asyncpg.Pool:
            return await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                init=lambda conn: _init_connection(conn, self._mark_untyped),
                timeout=CONNECT_TIMEOUT_S,
            )

        try:
            self._pool: asyncpg.Pool = self._submit(_create())
        except ValueError as exc:  # a malformed URL (port, sslmode, ...), found by the driver
            self._stop_loop()
            raise _translate(exc, url) from exc
        except (DatabaseUnavailable, QueryError) as exc:  # the server is up and refused the
            self._stop_loop()  # login or a parameter the URL sets: the URL is wrong (ConfigError)
            refused = postgres_refusal(exc.__cause__, url, variable=None)
            if refused is None:
                raise
            raise refused from exc.__cause__
        except BaseException:
            self._stop_loop()
            raise
        # Close before interpreter teardown (and before an embedded server is stopped by its
        # own exit hook, registered earlier and therefore run later). The hook holds a strong
        # reference on purpose: a Database dropped without close() still has a live pool on
        # its loop thread, which would otherwise reconnect noisily while the server stops.
        self._atexit = self.close
        atexit.register(self._atexit)
        _OPEN.add(self)

    # -- plumbing ---------------------------------------------------------------------------

    def _submit(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return self._wait(self._start(coro), timeout)

    def _start(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError(
                "Database called from inside Database.run(); use the connection you were given"
            )
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _wait(self, future: concurrent.futures.Future[T], timeout: float | None = None) -> T:
        try:
            return future.result(self.timeout if timeout is None else timeout)
        except _TRANSLATED as exc:
            future.cancel()
            raise _translate(exc, self.url) from exc

    def _stop_loop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._loop.is_running():
            self._loop.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran (by its owner, ``close_all`` or the exit hook)."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise DatabaseUnavailable(f"the connection pool to {mask_url(self.url)} is closed")

    # -- queries ----------------------------------------------------------------------------

    def execute(self, sql: str, *args: Any) -> str:
        """Run one statement; returns the status tag (e.g. ``"INSERT 0 1"``)."""
        self._check_open()
        return str(self._submit(self._pool.execute(sql, *args)))

    def executemany(self, sql: str, args: list[tuple[Any, ...]]) -> None:
        self._check_open()
        self._submit(self._pool.executemany(sql, args))

    def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        self._check_open()
        return list(self._submit(self._pool.fetch(sql, *args)))

    def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        self._check_open()
        return self._submit(self._pool.fetchrow(sql, *args))

    def fetchval(self, sql: str, *args: Any) -> Any:
        self._check_open()
        return self._submit(self._pool.fetchval(sql, *args))

    def start_fetchrow(self, sql: str, *args: Any) -> Pending[asyncpg.Record | None]:
        """Send one statement now and return at once: the caller does other work (embeds a
        text) while PostgreSQL answers, then takes the row with ``result()``, which raises
        what :meth:`fetchrow` raises."""
        self._check_open()
        future = self._start(self._pool.fetchrow(sql, *args))
        return Pending(lambda: self._wait(future))

    def start_fetch(self, sql: str, *args: Any) -> Pending[list[asyncpg.Record]]:
        """:meth:`fetch`, sent now; the rows are taken with ``result()`` (see
        :meth:`start_fetchrow`)."""
        self._check_open()
        future = self._start(self._pool.fetch(sql, *args))
        return Pending(lambda: list(self._wait(future)))

    def run(
        self, fn: Callable[[asyncpg.Connection], Awaitable[T]], *, timeout: float | None = None
    ) -> T:
        """``await fn(conn)`` on one pooled connection and return its result, e.g.::

        async def move(conn):
            async with conn.transaction():
                ...
        db.run(move)
        """
        self._check_open()

        async def _with_connection() -> T:
            async with self._pool.acquire() as conn:
                return await fn(conn)

        return self._submit(_with_connection(), timeout)

    def listen(self, channel: str, on_notice: Callable[[], None],
               on_lost: Callable[[], None]) -> Callable[[], None]:
        """LISTEN on ``channel`` on a connection of its own (outside the pool): ``on_notice``
        is called, on this Database's loop thread, for every NOTIFY delivered (at the commit
        of the transaction that sent it), ``on_lost`` once if the connection drops (notices
        are missed from then on: listen again). Returns what stops listening (idempotent).

        Raises: DatabaseUnavailable (the connection cannot be made), ConfigError."""
        self._check_open()

        async def _open() -> asyncpg.Connection:
            conn = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT_S)
            await conn.add_listener(channel, lambda *_: on_notice())
            conn.add_termination_listener(lambda *_: on_lost())
            return conn

        conn = self._submit(_open(), CONNECT_TIMEOUT_S + 5)
        self._listeners.add(conn)

        def stop() -> None:
            if conn not in self._listeners or self._closed:
                return
            self._listeners.discard(conn)
            with contextlib.suppress(Exception):
                self._submit(conn.close(timeout=5), timeout=10)

        return stop

    def _mark_untyped(self) -> None:
        self.untyped = True

    def reload_types(self) -> None:
        """Re-create pooled connections so each registers codecs for types created since
        (the pgvector codec after ``CREATE EXTENSION vector``)."""
        self._check_open()
        self.untyped = False  # (a connection set up again without the type says so again)
        self._submit(self._pool.expire_connections())

    def close(self) -> None:
        """Close the pool and its loop thread. Idempotent; never raises."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._atexit)
        _OPEN.discard(self)

        async def _close() -> None:
            for conn in list(self._listeners):
                conn.terminate()
            self._listeners.clear()
            try:
                await asyncio.wait_for(self._pool.close(), 10)
            except Exception:  # closing is best effort: cut what did not close in time
                self._pool.terminate()

        with contextlib.suppress(Exception):
            self._submit(_close(), timeout=15)
        self._stop_loop()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
