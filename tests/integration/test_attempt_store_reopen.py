"""``store_for`` (the validate and apply stages' attempt records, `heal run`) keeps one
database per process, and never hands out a pool that was closed since: it opens it again
(real embedded PostgreSQL)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from storage.attempts import store_for
from storage.db import Database


def test_store_for_reopens_a_database_closed_since(tmp_path: Path, database_url: str,
                                                    prefix: str) -> None:
    settings = Settings(redis_url=None, database_url=database_url, home=tmp_path,
                        prefix=prefix)
    first: dict[str, Any] = {}
    assert store_for(first, settings) is not None
    opened = first["db"]
    assert isinstance(opened, Database) and not opened.closed
    again: dict[str, Any] = {}
    assert store_for(again, settings) is not None
    assert again["db"] is opened  # once per process while it is open

    opened.close()  # e.g. storage.db.close_all() before an engine stops
    assert opened.closed
    later: dict[str, Any] = {}
    store = store_for(later, settings)
    assert store is not None
    assert later["db"] is not opened and not later["db"].closed
    error_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
    store.record_attempt({"error_id": error_id, "fingerprint": "fp", "fix_id": "f.x",
                          "decision": "approved", "votes": [{"judge": "j", "approve": True}]})
    row = store.attempt(error_id)
    assert row is not None and row["fix_id"] == "f.x"
    assert [v["judge"] for v in store.votes(error_id)] == ["j"]
