"""Test-only: close the databases ``storage.attempts.store_for`` opened in this process.

The product never needs this (each Database closes itself at exit, and ``store_for`` reopens
one that was closed); tests close them early, before a scratch database is dropped or the
session's PostgreSQL stops, so no pool reconnects noisily against a server that went away.
"""

from __future__ import annotations

from storage import attempts


def close_stores() -> None:
    """Close every database ``store_for`` opened (the next call opens a fresh one)."""
    for db in list(attempts._DATABASES.values()):
        db.close()
