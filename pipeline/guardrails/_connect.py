"""How the guardrail commands reach the engines: through ``storage.engines`` (embedded engines
when the URLs are unset), with a plain connection to a configured URL as the fallback."""

from __future__ import annotations

import importlib
from typing import Any

import redis

from pipeline.config import Settings
from pipeline.errors import ConfigError, StreamUnavailable


def _engines() -> Any:
    try:
        return importlib.import_module("storage.engines")
    except ImportError:
        return None


def connect_redis(settings: Settings) -> redis.Redis:
    """Raises:
    StreamUnavailable: Redis cannot be reached.
    ConfigError: no HEAL_REDIS_URL and no embedded engine available.
    """
    engines = _engines()
    if engines is not None and hasattr(engines, "connect_redis"):
        client: redis.Redis = engines.connect_redis(settings)
        return client
    if not settings.redis_url:
        raise ConfigError("set HEAL_REDIS_URL (the embedded Redis is not available here)")
    client = redis.Redis.from_url(settings.redis_url)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise StreamUnavailable(f"Redis at {settings.redis_url} unreachable: {exc}") from exc
    return client


def open_database(settings: Settings) -> Any:
    """A connected, migrated ``storage.db.Database``.

    Raises:
        DatabaseUnavailable: PostgreSQL cannot be reached.
        ConfigError: the storage layer is not installed.
    """
    engines = _engines()
    if engines is None or not hasattr(engines, "open_database"):
        raise ConfigError("the PostgreSQL storage layer (storage.engines) is not available")
    return engines.open_database(settings)
