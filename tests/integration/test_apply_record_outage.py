"""A PostgreSQL outage between the apply stage's done marker and its ``apply_results`` row:
the redelivery (or the person's retry of ``heal apply``) records the row it promised instead
of skipping it, and never acts twice (real git, Redis and PostgreSQL)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pipeline.apply.applier import Applier
from pipeline.demo.sample import break_formatting, git
from pipeline.errors import EngineError
from pipeline.validate.validator import Validator
from storage.attempts import AttemptStore
from tests.integration._heal_validate_support import FORMAT_FIX, candidate, sample_repo


def _fail_once(monkeypatch: pytest.MonkeyPatch, store: AttemptStore) -> list[str]:
    """The store's next ``record_apply`` raises as an unreachable PostgreSQL does."""
    failed: list[str] = []
    real = store.record_apply

    def record_apply(error_id: str, result: dict[str, Any], **kw: Any) -> bool:
        if not failed:
            failed.append(error_id)
            raise EngineError("PostgreSQL unreachable: connection refused")
        return real(error_id, result, **kw)

    monkeypatch.setattr(store, "record_apply", record_apply)
    return failed


def test_a_redelivered_verdict_records_the_row_the_outage_missed(
        tmp_path: Path, validator: Validator, applier: Applier, attempt_store: AttemptStore,
        monkeypatch: pytest.MonkeyPatch) -> None:
    root = sample_repo(tmp_path)
    break_formatting(root)
    verdict = validator.validate(candidate(root, ("ruff", "format", "--check", "."), FORMAT_FIX))
    failed = _fail_once(monkeypatch, attempt_store)
    with pytest.raises(EngineError):
        applier.handle(verdict)
    assert failed == [verdict.error_id]
    assert attempt_store.apply_result(verdict.error_id) is None  # (the outage)
    commits = git(root, "rev-list", "--count", "HEAD")
    # When the stage retries the verdict, Then the row is recorded and nothing runs again
    outcome = applier.handle(verdict)
    assert outcome.status == "applied", outcome.detail
    row = attempt_store.apply_result(verdict.error_id)
    assert row is not None and row["status"] == "applied" and row["commit"] == outcome.commit
    assert git(root, "rev-list", "--count", "HEAD") == commits
    assert not applier.client.exists(applier._unrecorded_key(verdict.error_id))


def test_heal_apply_retried_after_an_outage_does_not_apply_twice(
        tmp_path: Path, validator: Validator, applier: Applier, attempt_store: AttemptStore,
        monkeypatch: pytest.MonkeyPatch) -> None:
    root = sample_repo(tmp_path)
    break_formatting(root)
    cand = candidate(root, ("ruff", "format", "--check", "."), FORMAT_FIX, mode="suggest")
    verdict = validator.validate(cand)
    assert applier.handle(verdict).status == "suggested"
    _fail_once(monkeypatch, attempt_store)
    with pytest.raises(EngineError):
        applier.apply_suggested(replace(verdict, decision="apply"))
    commits = git(root, "rev-list", "--count", "HEAD")
    [row] = attempt_store.pending_suggestions(cand.error_id)  # still waiting, as PG saw it
    # When the person runs heal apply again, Then the first application is recorded and
    # published, and the fix is not brought onto the branch a second time
    again = applier.apply_suggested(replace(verdict, decision="apply"))
    assert again.status == "applied", again.detail
    assert git(root, "rev-list", "--count", "HEAD") == commits
    assert attempt_store.pending_suggestions(cand.error_id) == []
    recorded = attempt_store.apply_result(cand.error_id)
    assert recorded is not None and recorded["status"] == "applied"
