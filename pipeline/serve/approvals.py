"""Approve or reject a pending suggestion (``POST /api/approvals/<id>/approve|reject``).

Approve does what ``heal apply`` does (same guard, same :class:`Applier` call); reject marks
the suggestion ``rejected`` in ``apply_results`` so it is no longer offered, and appends the
decision to the audit log. Both hold the suggestion's decision lock (the one ``heal apply``
holds: :mod:`pipeline.apply.decision_lock`) and re-read its state inside it, so a second
decision while one runs is 409 "being applied by another request".
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from pipeline.config import Settings
from pipeline.events import VerdictEvent
from pipeline.serve.api import HttpError
from pipeline.serve.engines import Engines


def _pending(store: Any, attempt_id: str) -> dict[str, Any]:
    """The attempt row when it still waits for a decision.

    Raises:
        HttpError: 404 unknown id, 409 not a pending suggestion.
    """
    row = store.attempt(attempt_id)
    if row is None:
        raise HttpError(404, f"no attempt {attempt_id!r}; GET /api/approvals lists the "
                        "pending ones")
    result = store.apply_result(attempt_id)
    if row.get("decision") != "suggest" or not row.get("verdict"):
        raise HttpError(409, f"attempt {attempt_id!r} is not a suggestion (decision "
                        f"{row.get('decision')!r})")
    if result is not None and result.get("status") != "suggested":
        raise HttpError(409, f"attempt {attempt_id!r} was already decided: "
                        f"{result.get('status')}")
    return dict(row)


def approve(settings: Settings, engines: Engines, attempt_id: str, *,
            force: bool = False) -> dict[str, Any]:
    """Apply the verified suggestion. Raises HttpError (404/409), HealError from the guard
    (breaker open, change window closed: 409 unless ``force``), EngineError."""
    from pipeline.apply.applier import Applier, settle_outcomes
    from pipeline.cli.apply import _guard
    from pipeline.errors import AccessRefused, EngineError, HealError
    from storage.attempts import AttemptStore

    store = AttemptStore(engines.database())
    row = _pending(store, attempt_id)
    verdict = VerdictEvent.decode(row["verdict"])
    client = engines.client()
    if not force:
        try:
            _guard(settings, client, verdict)
        except (EngineError, AccessRefused):  # heal's engines, not this fix: never a 409
            raise
        except HealError as exc:
            raise HttpError(409, str(exc).replace("use --force", "POST with ?force=1")) from exc
    # two clicks, two operators, an approve and a reject or a `heal apply` at once must not
    # both decide: the first holds this lock while it applies, the second is told so;
    # afterwards _pending says 409 (already decided)
    with _deciding(settings, engines, attempt_id):
        _pending(store, attempt_id)  # re-read under the lock
        outcome = Applier(settings, client, store).apply_suggested(
            replace(verdict, decision="apply"))
    settle_outcomes(settings, client)  # recorded like the apply stage's outcomes
    if outcome.status == "suggested":  # not applied (uncommitted changes there...): it waits
        raise HttpError(409, f"attempt {attempt_id!r} was not applied: {outcome.detail}; the "
                        "suggestion still waits (approve again once that is resolved)")
    return {"id": attempt_id, "fix_id": outcome.fix_id, "status": outcome.status,
            "detail": outcome.detail, "commit": outcome.commit}


def reject(settings: Settings, engines: Engines, attempt_id: str) -> dict[str, Any]:
    """Mark the suggestion rejected. Raises HttpError (404/409), EngineError."""
    from pipeline.guardrails.audit import AuditLog
    from storage.attempts import AttemptStore

    db = engines.database()
    store = AttemptStore(db)
    _pending(store, attempt_id)
    detail = "rejected by an operator through heal serve"
    with _deciding(settings, engines, attempt_id):
        row = _pending(store, attempt_id)  # re-read under the lock
        if not store.record_apply(attempt_id, {"fix_id": row.get("fix_id", ""),
                                               "status": "rejected", "detail": detail},
                                  replace_suggested=True):
            raise HttpError(409, f"attempt {attempt_id!r} was decided meanwhile")
    AuditLog(settings, db).append("approval.reject", attempt_id,
                                  {"fix_id": row.get("fix_id", "")})
    return {"id": attempt_id, "fix_id": row.get("fix_id", ""), "status": "rejected",
            "detail": detail}


@contextlib.contextmanager
def _deciding(settings: Settings, engines: Engines, attempt_id: str) -> Iterator[None]:
    """Hold the suggestion's decision lock; another request holding it is a 409."""
    from pipeline.apply.decision_lock import BeingDecided, deciding

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(deciding(settings, attempt_id, engines.with_redis))
        except BeingDecided as exc:
            raise HttpError(409, str(exc)) from exc
        yield
