"""What a dead letter carries: the reason, the stage, the attempts and the raw bytes.

Fields of an entry in ``<prefix>:dead`` (all strings except ``event``):
``event`` (the raw bytes, capped), ``reason``, ``stage``, ``group``, ``stream`` (where it
came from), ``entry_id``, ``attempts``, ``error_id`` (when it could be read), ``ts``,
and ``raw_truncated_bytes`` when the raw bytes were cut to the cap.
"""

from __future__ import annotations

import re

import orjson

from pipeline.events import utc_now
from pipeline.runtime.hooks import Delivery

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
