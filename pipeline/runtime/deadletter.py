"""What a dead letter carries: the reason, the stage, the attempts and the raw bytes.

Fields of an entry in ``<prefix>:dead`` (all strings except ``event``):
``event`` (the raw bytes, capped), ``reason``, ``stage``, ``group``, ``stream`` (where it
came from), ``entry_id``, ``attempts``, ``error_id`` (when it could be read), ``ts``,
and ``raw_truncated_bytes`` when the raw bytes were cut to the cap.

Giving up on an event is a decision: :class:`DeadLetterAudit` appends one
``runtime.dead_letter`` record per dead letter to the audit log, after the dead letter
landed. Like the breaker's own transitions, an append that fails is logged and the decision
stands: the dead letter is never held back for its record.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from pipeline.config import Settings
from pipeline.events import utc_now
from pipeline.guardrails.audit import AuditLog
from pipeline.runtime.hooks import Delivery

if TYPE_CHECKING:  # (the breaker imports pipeline.runtime: a cycle at run time)
    from pipeline.guardrails.breaker import Auditor

log = logging.getLogger("heal.runtime")

#: the audit record's kind of a dead letter
AUDIT_KIND = "runtime.dead_letter"
#: the longest reason an audit record keeps (the dead letter keeps the whole reason; a
#: handler's message about an untrusted event may be long)
AUDIT_REASON_LIMIT = 500

_ID_PATTERN = re.compile(rb'"(?:error_id|id)"\s*:\s*"([^"\\]{1,256})"')


def guess_error_id(raw: bytes | None) -> str:
    """Best effort: the error id of an event we could not decode (for tracing only)."""
    if not raw:
        return ""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        match = _ID_PATTERN.search(raw[:4096])
        return match.group(1).decode("utf-8", "replace") if match else ""
    if isinstance(obj, dict):
        for key in ("error_id", "id"):
            value = obj.get(key)
            if isinstance(value, str):
                return value[:256]
    return ""


def dead_letter_fields(
    delivery: Delivery, stage: str, group: str, reason: str, raw_limit: int
) -> dict[str, str | bytes]:
    raw = delivery.raw or b""
    fields: dict[str, str | bytes] = {
        "event": raw[:raw_limit],
        "reason": reason,
        "stage": stage,
        "group": group,
        "stream": delivery.stream,
        "entry_id": delivery.entry_id,
        "attempts": str(delivery.deliveries),
        "error_id": guess_error_id(raw[:raw_limit] if len(raw) > raw_limit else raw),
        "ts": utc_now(),
    }
    if len(raw) > raw_limit:
        fields["raw_truncated_bytes"] = str(len(raw) - raw_limit)
    return fields


def audit_data(fields: Mapping[str, str | bytes]) -> dict[str, Any]:
    """The audit record's data of one dead letter (its :func:`dead_letter_fields`): where
    it was, the error id when it could be read, the reason cut to
    :data:`AUDIT_REASON_LIMIT` and the deliveries it had."""
    def text(name: str) -> str:
        value = fields.get(name, "")
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else value

    reason = text("reason")
    data: dict[str, Any] = {
        "stage": text("stage"), "group": text("group"), "stream": text("stream"),
        "entry_id": text("entry_id"), "error_id": text("error_id"),
        "reason": reason[:AUDIT_REASON_LIMIT], "deliveries": int(text("attempts") or 0),
    }
    if len(reason) > AUDIT_REASON_LIMIT:
        data["reason_truncated_chars"] = len(reason) - AUDIT_REASON_LIMIT
    return data


class DeadLetterAudit:
    """Audits the dead letters a stage worker wrote (called only when there are some, so an
    event handed off pays nothing).

    ``audit``: the audit log (default: ``$HEAL_HOME/audit.jsonl``, its head anchored in the
    worker's Redis, as the breaker's transitions are)."""

    def __init__(self, settings: Settings, client: Any, audit: Auditor | None = None) -> None:
        self.audit: Auditor = audit if audit is not None else AuditLog(
            settings, redis_client=client)

    def record(self, letters: Sequence[Mapping[str, str | bytes]]) -> None:
        """One record per dead letter, each as ``<stage>/<entry id>``; never raises."""
        for fields in letters:
            data = audit_data(fields)
            try:
                self.audit.append(AUDIT_KIND, f"{data['stage']}/{data['entry_id']}", data)
            except Exception as exc:  # noqa: BLE001 - the dead letter landed; say it is unlogged
                log.error("stage %s: dead letter %s (error id %s) not audited: %s",
                          data["stage"], data["entry_id"], data["error_id"] or "unknown", exc)
