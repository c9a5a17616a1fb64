"""Test doubles shared by the guardrails tests: a settable clock and an audit recorder."""

from __future__ import annotations

from typing import Any

from pipeline.guardrails.audit import AuditError


class Clock:
    """A clock the test moves by hand (``clock.now += 60``)."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Recorder:
    """An auditor that keeps what it is given, or fails like a full disk."""

    def __init__(self, fail: bool = False) -> None:
        self.entries: list[tuple[str, str, dict[str, Any]]] = []
        self.fail = fail

    def append(self, kind: str, subject: str, data: dict[str, Any], *, once: str = "") -> Any:
        if self.fail:
            raise AuditError("disk full")
        self.entries.append((kind, subject, data))
        return {}
