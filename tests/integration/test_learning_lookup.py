"""The lookup offers fixes learned from precedent (real PostgreSQL): only when tier 1 knows
nothing, the newest one, never a quarantined one, and from the local cache when PostgreSQL
is down."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Settings
from pipeline.lifecycle.precedent import StepFailure, draft_fix
from pipeline.lookup.result import LookupResult
from pipeline.lookup.setup import build_lookup
from storage.db import Database
from storage.engines import open_database
from storage.lifecycle import PrecedentRepository

TEXT = "Traceback (most recent call last):\nWidgetDriftError: widget {token} drifted\n"


@pytest.fixture
def db(heal_env: dict[str, str]) -> Iterator[Database]:
    database = open_database(Settings.from_env())
    yield database
    database.close()


def learn(db: Database, fine: str, frm: str, to: str) -> dict[str, Any]:
    draft = draft_fix(StepFailure("wf", "step", fine, "/repo", frm), to, f"diff {frm}..{to}\n")
    assert PrecedentRepository(db).save_draft(draft)
    return draft


def lookup(db: Database | None, fine: str, text: str = "", coarse: str = "") -> LookupResult:
    lk = build_lookup(Settings.from_env(), db, semantic=False, warm=0)
    return lk.lookup(error_id=f"e-{uuid.uuid4().hex[:6]}", text=text or TEXT, fine=fine,
                     coarse=coarse, record=False)


def test_the_newest_learned_fix_is_offered_at_tier_1(db: Database, tmp_path: Path) -> None:
    fine = f"fp-v1:{uuid.uuid4().hex[:16]}"
    assert lookup(db, fine).fix is None
    learn(db, fine, "a" * 40, "b" * 40)
    newest = learn(db, fine, "c" * 40, "d" * 40)
    result = lookup(db, fine)
    assert result.fix is not None
    assert result.tier == 1 and result.pattern_id is None
    assert result.reason == f"learned from precedent: wf/step {'c' * 10}..{'d' * 10}"
    fix = result.fix
    assert fix["id"] == newest["id"] and fix["state"] == "DRAFT"
    assert fix["rendered"] == {"diff": f"diff {'c' * 40}..{'d' * 40}\n"}
    assert set(fix) >= {"id", "pattern_id", "kind", "category", "state", "title",
                        "explanation", "rendered"}

    # PostgreSQL down: the local cache still offers it
    offline = lookup(None, fine)
    assert offline.fix is not None and offline.fix["id"] == newest["id"]

    # quarantined (reverted after being applied): no longer offered, and the cache follows
    db.execute("INSERT INTO fix_stats (fingerprint, fix_id, state) VALUES ($1, $2, $3)",
               fine, newest["id"], "QUARANTINED")
    older = lookup(db, fine)
    assert older.fix is not None and older.fix["id"] != newest["id"]
    assert older.fix["from_commit"] == "a" * 40


def test_a_known_pattern_wins_over_a_learned_fix(db: Database) -> None:
    fine = f"fp-v1:{uuid.uuid4().hex[:16]}"
    learn(db, fine, "a" * 40, "b" * 40)
    text = "ModuleNotFoundError: No module named 'yaml'\n"
    result = lookup(db, fine, text=text)
    assert result.pattern_id is not None and result.fix is not None
    assert not str(result.fix["id"]).startswith("precedent-")
