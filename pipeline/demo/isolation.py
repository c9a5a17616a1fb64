"""The demo runs in its own PostgreSQL database (and its own stream prefix), so what it
teaches the pipeline (a fix quarantined after a rollback, statistics) never leaks into real
work and every run starts from the same seeds. Falls back to the configured database, with
a note, when the server refuses CREATE DATABASE.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

from pipeline.config import Settings
from pipeline.errors import HealError


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def isolate(settings: Settings) -> tuple[Settings, Callable[[], None], str]:
    """(demo settings, cleanup, note). Raises EngineError when no database is reachable."""
    from storage.db import Database
    from storage.engines import database_url

    base_url = database_url(settings)
    name = f"heal_demo_{uuid.uuid4().hex[:10]}"
    admin = Database(base_url, min_size=1, max_size=1)
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
    except HealError as exc:
        admin.close()
        return settings, lambda: None, f"demo shares the configured database ({exc})"
    demo = dataclasses.replace(settings, database_url=with_database(base_url, name))

    def cleanup() -> None:
        try:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except HealError:
            pass  # a leftover demo database is harmless; the next run uses a new name
        finally:
            admin.close()

    return demo, cleanup, f"demo database {name} (dropped at the end)"
