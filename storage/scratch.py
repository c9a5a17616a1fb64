"""Throwaway databases on the configured PostgreSQL server (``heal demo`` and shadow runs
keep what they teach the pipeline out of real work this way)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

from pipeline.errors import HealError
from storage.db import Database


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` on the same server."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def create_scratch_database(
    admin_url: str, name: str, template: str | None = None
) -> tuple[str, Callable[[], None]]:
    """Create database ``name`` (a copy of ``template`` when given) through ``admin_url``.

    Returns its URL and a ``drop`` function that never raises (a leftover scratch database
    is harmless: the next run uses a new name).

    Raises:
        HealError: the server refused (DatabaseUnavailable / QueryError); nothing is left open.
    """
    admin = Database(admin_url, min_size=1, max_size=1)
    copy = f' TEMPLATE "{template}"' if template else ""
    try:
        admin.execute(f'CREATE DATABASE "{name}"{copy}')
    except HealError:
        admin.close()
        raise

    def drop() -> None:
        try:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except HealError:
            pass  # harmless leftover (see above)
        finally:
            admin.close()

    return with_database(admin_url, name), drop
