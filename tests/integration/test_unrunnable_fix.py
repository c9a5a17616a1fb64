"""A fix whose command cannot run (exit 127) is a failed attempt, counted by the lifecycle
stage, and quarantined (with a notification) after N of them: validate, apply and lifecycle
stages on the real engines."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from consumers.lifecycle import LifecycleHandler
from pipeline.apply.applier import Applier
from pipeline.config import Settings
from pipeline.demo.sample import break_formatting, create_repo
from pipeline.validate.validator import Validator
from storage.db import Database
from storage.lifecycle import LifecycleStore
from storage.reports import ReportStore
from tests.integration._heal_validate_support import candidate


def pair(db: Database, fingerprint: str, fix_id: str) -> dict[str, Any] | None:
    """The pair's lifecycle row as `heal explain` reads it (ReportStore.fix_stats)."""
    rows = [r for r in ReportStore(db).fix_stats([fingerprint]) if r["fix_id"] == fix_id]
    return rows[0] if rows else None

MISSING = {"id": "", "pattern_id": "format.missing_tool", "kind": "command",
           "category": "SAFE", "state": "ACTIVE", "title": "Run a formatter nobody installed",
           "rendered": {"argv": ["heal-test-no-such-formatter", "."], "timeout_s": 30}}


def test_a_fix_exiting_127_is_counted_then_quarantined(
        tmp_path: Path, validator: Validator, applier: Applier, stage_settings: Settings,
        db: Database, lifecycle_stage: Callable[[Settings], LifecycleHandler],
        operator_toml: Callable[[str], Path]) -> None:
    # (the operator's: [lifecycle] decides shared state, and dedupe off loosens a guardrail)
    operator_toml("[limits]\ndedupe_minutes = 0\n[lifecycle]\nunrunnable_quarantine_after = 2\n")
    root = create_repo(tmp_path / "shop")
    break_formatting(root)
    fix = {**MISSING, "id": f"format.missing-{uuid.uuid4().hex[:8]}"}
    fine = f"fp-v1:missing{uuid.uuid4().hex[:8]}"
    stage = lifecycle_stage(stage_settings)
    store = LifecycleStore(db)

    outcomes = []
    for attempt in range(2):
        verdict = validator.validate(candidate(root, ("ruff", "format", "--check", "."), fix,
                                               fine=fine))
        outcome = applier.handle(verdict)
        outcomes.append(outcome)
        stage.handle(outcome)
        row = pair(store.db, fine, fix["id"])
        assert row is not None and row["failures"] == attempt + 1  # a failed attempt

    # Then each attempt was a failure (never "escalated"), with the reason
    assert [o.status for o in outcomes] == ["failed", "failed"]
    assert outcomes[0].detail.startswith("the fix cannot run (exit 127")
    # and the second one quarantined the pair, audited and notified through the sinks
    assert pair(store.db, fine, fix["id"])["state"] == "QUARANTINED"  # type: ignore[index]
    (t,) = [t for t in store.transitions(fine) if t["dst"] == "QUARANTINED"]
    assert "could not run 2 times" in t["reason"]
    lines = (stage_settings.home / "notifications.jsonl").read_text().splitlines()
    notes = [json.loads(line) for line in lines]
    assert any(n["rule"] == "fix-cannot-run" and n["fingerprint"] == fine for n in notes)
