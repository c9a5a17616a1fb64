"""Append validate/apply decisions (votes, applies, rollbacks) to the hash-chained audit log.

An audit failure is logged and does not stop healing; ``heal audit verify`` reports a torn
or tampered log.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline.config import Settings
from pipeline.errors import HealError

log = logging.getLogger(__name__)


def audit(settings: Settings, store: Any, kind: str, subject: str, data: dict[str, Any]) -> None:
    try:
        from pipeline.guardrails.audit import AuditLog
    except ImportError:  # pragma: no cover - the audit log ships with heal
        return
    try:
        AuditLog(settings, getattr(store, "db", None)).append(kind, subject, data)
    except HealError as exc:
        log.warning("audit log append failed (%s %s): %s", kind, subject, exc)
