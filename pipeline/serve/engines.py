"""The engine handles of one ``heal serve`` process: one Redis client and one database pool,
opened on first use and dropped after a failure so the next request reconnects (an engine
that comes back is picked up without restarting the server)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from pipeline.config import Settings
from pipeline.errors import DatabaseUnavailable, StreamUnavailable
from pipeline.runtime.connection import redis_failure
from storage.db import Database

T = TypeVar("T")


class Engines:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._redis: redis.Redis | None = None
        self._db: Database | None = None

    def client(self) -> redis.Redis:
        """Raises StreamUnavailable when Redis cannot be reached."""
        from storage.engines import connect_redis

        with self._lock:
            if self._redis is None:
                self._redis = connect_redis(self.settings)
            return self._redis

    def database(self) -> Database:
        """Raises DatabaseUnavailable when PostgreSQL cannot be reached."""
        from storage.engines import open_database

        with self._lock:
            if self._db is None:
                self._db = open_database(self.settings)
            return self._db

    def with_redis(self, fn: Callable[[redis.Redis], T]) -> T:
        """``fn(client)``; a Redis error becomes StreamUnavailable (503) and drops the client,
        a refusal by the ACL of its user (NOPERM) AccessRefused (400, saying what to grant:
        the server is up, and no retry helps)."""
        try:
            return fn(self.client())
        except (redis.RedisError, StreamUnavailable) as exc:
            self._drop_redis()
            if isinstance(exc, StreamUnavailable):
                raise
            raise redis_failure(exc, "heal serve", self.settings.prefix) from exc

    def with_db(self, fn: Callable[[Database], T]) -> T:
        """``fn(db)``; DatabaseUnavailable drops the pool (the next call reconnects)."""
        try:
            return fn(self.database())
        except DatabaseUnavailable:
            self._drop_db()
            raise

    def _drop_redis(self) -> None:
        with self._lock:
            client, self._redis = self._redis, None
        if client is not None:
            _quietly(client.close)

    def _drop_db(self) -> None:
        with self._lock:
            db, self._db = self._db, None
        if db is not None:
            _quietly(db.close)

    def close(self) -> None:
        self._drop_redis()
        self._drop_db()


def _quietly(close: Callable[[], Any]) -> None:
    # closing a broken connection may fail; there is nothing left to do about it
    with contextlib.suppress(Exception):
        close()
