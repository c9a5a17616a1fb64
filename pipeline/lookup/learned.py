"""Fixes learned from precedent (``precedent_drafts``), offered by tier 1 when no pattern
knows a fine fingerprint: a step failed with it, later passed on another commit, and the diff
between the two commits is the DRAFT fix (see :mod:`pipeline.lifecycle.precedent`).

A learned fix is RISKY and starts as DRAFT: the validate stage verifies it like any other
fix and only ever suggests it (a human applies it with ``heal apply``).
"""

from __future__ import annotations

from typing import Any

from pipeline.lifecycle.precedent import StepFailure, draft_fix
from pipeline.lookup.result import LookupResult

#: the local cache (``meta`` table) key of the learned fix offered for a fine fingerprint
CACHE_PREFIX = "precedent:"


def fix_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """The ``CandidateEvent.fix`` of one ``precedent_drafts`` row (with its lifecycle state)."""
    failure = StepFailure(str(row["workflow"]), str(row["step"]), str(row["fingerprint"]),
                          str(row["repo_path"]), str(row["from_commit"]))
    fix = draft_fix(failure, str(row["to_commit"]), str(row["diff"]))
    fix["id"] = str(row["id"])
    fix["state"] = str(row.get("lifecycle_state") or row.get("state") or "DRAFT")
    return fix


def learned_result(fix: dict[str, Any], params: dict[str, Any]) -> LookupResult:
    """The tier-1 answer offering ``fix`` (no pattern: the fix itself is the knowledge)."""
    reason = (f"learned from precedent: {fix['workflow']}/{fix['step']} "
              f"{str(fix['from_commit'])[:10]}..{str(fix['to_commit'])[:10]}")
    return LookupResult(None, 1, 1.0, reason, (str(fix["id"]),), fix, dict(params),
                        details={"precedent": fix["id"]})
