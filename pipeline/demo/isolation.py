"""The demo runs in its own PostgreSQL database (and its own stream prefix), so what it
teaches the pipeline (a fix quarantined after a rollback, statistics) never leaks into real
work and every run starts from the same seeds. Falls back to the configured database, with
a note, when the server refuses CREATE DATABASE.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable

from pipeline.config import Settings
from pipeline.errors import HealError


def isolate(settings: Settings) -> tuple[Settings, Callable[[], None], str]:
    """(demo settings, cleanup, note). Raises EngineError when no database is reachable."""
    from storage.engines import database_url
    from storage.scratch import create_scratch_database

    name = f"heal_demo_{uuid.uuid4().hex[:10]}"
    try:
        url, cleanup = create_scratch_database(database_url(settings), name)
    except HealError as exc:
        return settings, lambda: None, f"demo shares the configured database ({exc})"
    demo = dataclasses.replace(settings, database_url=url)
    return demo, cleanup, f"demo database {name} (dropped at the end)"
