"""A pass-through stage handler: the in-package fake for runtime tests and the benchmark.

``decode`` reads the JSON and checks the ``id``; ``handle`` hands the event on unchanged
(same bytes, so the output can be compared with the input). Not a real stage: it measures
and exercises the runtime alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from pipeline.errors import DecodeError, EventValidationError
from pipeline.stage import Encodable


@dataclass
class PassEvent:
    id: str
    raw: bytes

    def encode(self) -> bytes:
        return self.raw


def decode_pass(raw: bytes) -> PassEvent:
    """Raises DecodeError (not JSON) or EventValidationError (no string ``id``)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not valid JSON: {exc}", raw) from exc
    ev_id = obj.get("id") if isinstance(obj, dict) else None
    if not isinstance(ev_id, str) or not ev_id:
        raise EventValidationError("missing required field 'id'", raw)
    return PassEvent(ev_id, raw)


class PassThroughHandler:
    """Hands every event on unchanged; ``on_event`` (optional) runs first, e.g. to inject
    failures or delays in tests."""

    def __init__(
        self,
        decode: Callable[[bytes], object] = decode_pass,
        on_event: Callable[[object], None] | None = None,
    ) -> None:
        self.decode = decode
        self.on_event = on_event

    def handle(self, event: object) -> Sequence[Encodable]:
        if self.on_event is not None:
            self.on_event(event)
        return [event] if isinstance(event, PassEvent) else []
