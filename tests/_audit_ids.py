"""The id a test's audit log is anchored under, for tests that read its anchors directly."""

from __future__ import annotations

from pathlib import Path

from pipeline.guardrails.audit import legacy_log_id, read_log_id


def file_log_id(path: Path) -> str:
    """The id the anchors of the log ``path`` are kept under, as stored beside it; the legacy
    one (host and absolute path) when none is stored yet (what ``AuditLog.log_id`` adopts for
    a log written before logs had ids). Raises ConfigError as ``read_log_id``."""
    return read_log_id(path) or legacy_log_id(path)
