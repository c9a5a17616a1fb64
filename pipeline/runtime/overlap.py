"""Overlapping Redis with the handler: commands written now, their replies read later.

While a worker handles one batch, Redis (another process, usually on another core) idles;
while Redis reads or commits a batch, the worker waits. :class:`Pipelined` holds one
connection of the client's pool for a burst of full batches and writes commands on it
without waiting: the XREADGROUP of the next batch and the hand-off script of the previous
one run in Redis while the worker computes, and their replies are read, in order, when the
worker needs them. What is sent is unchanged (the same XREADGROUP, the same hand-off script
by SHA), so the reliability model is the one of :mod:`handoff` and :mod:`reclaim`:

- a read-ahead batch is in this consumer's pending list from the moment Redis delivers it,
  like the batch in hand: a crash leaves it to the normal reclaim, a Redis failure to the
  worker's re-read of its own pending entries, a stop to the reclaim (as the undecided rest
  of a batch); the worker touches it with the batch in hand and the heartbeat lists it once
  its ids are read;
- a failure of any command surfaces as the Redis error it is, from the worker's thread,
  and the connection (whose replies can no longer be matched) is dropped, not reused.

A plain ``redis.Redis`` client is pipelined on a connection of its pool (RESP2 or RESP3);
a cluster client through the client of the node holding the stream's slot (a stage's keys
share one slot: the hand-off script needs it, see README "Redis Cluster").
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import redis

#: kinds of outstanding replies
_READ, _SCRIPT, _LOAD = "read", "script", "load"


def supported(client: Any) -> bool:
    """True when ``client`` can be pipelined by hand: a plain redis.Redis (with its pool),
    or a cluster client (through the client of the node holding the stream)."""
    if isinstance(client, redis.Redis):
        return hasattr(getattr(client, "connection_pool", None), "get_connection")
    return hasattr(client, "get_node_from_key") and hasattr(client, "get_redis_connection")


def node_client(client: Any, key: str) -> Any:
    """The plain client that serves ``key``: ``client`` itself, or on a cluster the client
    of the node that holds ``key``'s slot now (asked per burst: a failover or a resharding
    moves it; a stale answer fails as MOVED, a Redis error like any other)."""
    if isinstance(client, redis.Redis):
        return client
    return client.get_redis_connection(client.get_node_from_key(key))


def raw_target(client: Any, key: str) -> Any | None:
    """The plain client :func:`call_raw` runs on for ``key`` (see :func:`node_client`), or
    None when there is none: a client that cannot be driven by hand (a test double), or a
    cluster whose node of ``key``'s slot cannot be told now (mid-resharding; the cluster
    client's own redirections do the rest, with its parsed replies for that moment)."""
    if not supported(client):
        return None
    try:
        return node_client(client, key)
    except Exception:  # noqa: BLE001 - e.g. SlotNotCoveredError: not a failure here
        return None


def call_raw(target: Any, *args: Any) -> Any:
    """Run one command on ``target`` (a plain client, see :func:`raw_target`) and return
    its reply unparsed.

    redis-py's parsers of XREADGROUP and XCLAIM fold an entry's fields into a dict, which
    keeps the last of a repeated name silently (``XADD s * event A event B`` became B
    alone); the worker reads entries through here, as flat field lists, as its read-ahead
    does.

    Raises:
        redis.exceptions.RedisError: the command failed (the connection is dropped).
    """
    pool = target.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_command(*args)
        return conn.read_response()
    except BaseException:
        conn.disconnect()  # a reply may still be on its way: never hand it to another user
        raise
    finally:
        pool.release(conn)


def read_group(target: Any, group: str, consumer: str, stream: str, entry_id: str,
               count: int, block_ms: int | None) -> list[Any]:
    """XREADGROUP of one stream → ``[(entry id, flat field list), ...]`` (see
    :func:`call_raw`)."""
    block = ("BLOCK", block_ms) if block_ms is not None else ()
    return _entries(call_raw(target, "XREADGROUP", "GROUP", group, consumer, "COUNT", count,
                             *block, "STREAMS", stream, entry_id))


class Pipelined:
    """One pool connection with commands in flight; replies are read in the order sent.

    Use as a context manager: on exit the connection goes back to the pool if every reply
    was read, else (an error, replies left over) it is disconnected first.
    """

    def __init__(self, client: Any) -> None:
        self._pool = client.connection_pool
        self._conn: Any = self._pool.get_connection()
        self._pending: deque[tuple[str, Callable[[Any], None] | None]] = deque()
        self._ahead: list[Any] | None = None  # a read-ahead reply read early (see poll)
        self._broken = False

    def __enter__(self) -> Pipelined:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing ------------------------------------------------------------------------

    def _send(self, kind: str, on_reply: Callable[[Any], None] | None, *args: Any) -> None:
        try:
            # a health check (PING, if the URL asks for one) would read a reply of ours as
            # its PONG: only while nothing is outstanding
            packed = resp(args)
            self._conn.send_packed_command(
                [packed] if packed is not None else self._conn.pack_command(*args),
                check_health=not self._pending)
        except BaseException:
            self._broken = True
            raise
        self._pending.append((kind, on_reply))

    def load_script(self, script: str) -> None:
        """SCRIPT LOAD (idempotent): the scripts sent by SHA afterwards are known."""
        self._send(_LOAD, None, "SCRIPT", "LOAD", script)

    def send_read(self, group: str, consumer: str, stream: str, count: int) -> None:
        """XREADGROUP of new entries, not blocking (an empty stream answers at once)."""
        self._send(_READ, None, "XREADGROUP", "GROUP", group, consumer, "COUNT", count,
                   "STREAMS", stream, ">")

    def send_script(self, sha: str, keys: Sequence[Any], args: Sequence[Any],
                    on_reply: Callable[[Any], None]) -> None:
        """EVALSHA; ``on_reply`` gets the script's reply when it is read (worker thread)."""
        self._send(_SCRIPT, on_reply, "EVALSHA", sha, len(keys), *keys, *args)

    # --- reading ------------------------------------------------------------------------

    @property
    def reading(self) -> bool:
        """A read-ahead is outstanding (sent, its entries not yet taken)."""
        return self._ahead is not None or any(kind == _READ for kind, _ in self._pending)

    def _read_one(self) -> tuple[str, Any]:
        kind, on_reply = self._pending[0]
        try:
            reply = self._conn.read_response()
        except BaseException:
            self._broken = True
            raise
        self._pending.popleft()
        if on_reply is not None:
            on_reply(reply)
        return kind, reply

    def ready(self) -> bool:
        """A reply has arrived (at least its first bytes): Redis has got to the replies
        outstanding, so reading them now does not wait for a command written later."""
        if self._ahead is not None:
            return True
        try:
            return bool(self._conn.can_read(timeout=0))
        except BaseException:
            self._broken = True
            raise

    def poll(self) -> list[Any]:
        """Read replies up to the outstanding read-ahead's, keep its entries for
        :meth:`take_read`, and return them (so they can be touched now)."""
        while self._ahead is None and any(kind == _READ for kind, _ in self._pending):
            kind, reply = self._read_one()
            if kind == _READ:
                self._ahead = _entries(reply)
        return self._ahead or []

    def take_read(self) -> list[Any] | None:
        """The read-ahead's entries ``[(id, flat fields), ...]`` (None: none outstanding)."""
        if not self.reading:
            return None
        entries = self.poll()
        self._ahead = None
        return entries

    def flush(self) -> list[Any]:
        """Read every outstanding reply; returns the entries of a read-ahead not taken."""
        left = self.poll() if self.reading else []
        self._ahead = None
        while self._pending:
            kind, reply = self._read_one()
            if kind == _READ:
                left += _entries(reply)
        return left

    def close(self) -> None:
        if self._conn is None:
            return
        conn, self._conn = self._conn, None
        if self._broken or self._pending:
            conn.disconnect()  # replies we will never read must not reach another user
        self._pool.release(conn)


def resp(args: Sequence[Any]) -> bytes | None:
    """The RESP request of ``args`` (the command's name one argument; bytes as they are,
    str as UTF-8, int in decimal: the same bytes as redis-py's packers); None when one is
    of another type (the connection's own packer then). A hand-off of 500 events is
    ~2,000 arguments: redis-py with hiredis packed them in 2.2 us per event (its str and
    int conversions), this in 1.0."""
    out = [b"*%d\r\n" % len(args)]
    append = out.append
    for arg in args:
        kind = type(arg)
        if kind is not bytes:
            if kind is str:
                arg = arg.encode()
            elif kind is int:
                arg = b"%d" % arg
            else:
                return None
        append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def _entries(reply: Any) -> list[Any]:
    """XREADGROUP's reply of one stream → ``[(entry id, flat field list), ...]``
    (RESP3: a map of stream → entries; RESP2: a list of [stream, entries])."""
    if not reply:
        return []
    entries = next(iter(reply.values())) if isinstance(reply, dict) else reply[0][1]
    return [(eid, fields) for eid, fields in entries]
