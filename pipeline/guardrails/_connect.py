"""How the guardrail commands reach the engines: through ``storage.engines`` (the configured
URLs, else the embedded engines), imported when first needed so that importing a command
costs nothing."""

from __future__ import annotations

from typing import Any

import redis

from pipeline.config import Settings


def connect_redis(settings: Settings) -> redis.Redis:
    """Raises:
    StreamUnavailable: Redis cannot be reached.
    ConfigError: HEAL_REDIS_URL is not a Redis URL.
    """
    from storage.engines import connect_redis as connect

    return connect(settings)


def open_database(settings: Settings) -> Any:
    """A connected, migrated ``storage.db.Database``.

    Raises:
        DatabaseUnavailable: PostgreSQL cannot be reached.
        ConfigError: HEAL_DATABASE_URL is not a PostgreSQL URL, or a migration changed.
    """
    from storage.engines import open_database as open_db

    return open_db(settings)
