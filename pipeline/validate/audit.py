"""Append validate/apply decisions (votes, applies, rollbacks) to the hash-chained audit log.

:func:`audit` records what already happened: a failure is logged. :func:`audit_before_acting`
records an intent and fails closed: the apply stage calls it before it changes anything, and
applies nothing when the audit log cannot take the record (issue 11, item 8).
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline.config import Settings
from pipeline.errors import HealError

log = logging.getLogger(__name__)


def audit(settings: Settings, store: Any, kind: str, subject: str, data: dict[str, Any],
          client: Any = None, *, once: str = "") -> None:
    """Record what already happened (the head anchored in ``store``'s database and in
    ``client``'s Redis, else the configured or embedded one); a failure is logged.

    With ``once`` (a stable name of the record, :meth:`AuditLog.append`), a refusal that
    stops a stage (an audit chain heal cannot extend: ``HealError.stops_stage``) and a
    PostgreSQL outage are raised instead: the stage stops, or parks the event, and its
    redelivery writes the record (``once`` keeps it one record when the file took it and the
    table did not: the retry writes only the table's, naming the file's), as the validate
    stage's :func:`audit_witnessed_later` does. Logged only, the table record would be lost.

    Raises:
        AuditChainUnusable, DatabaseUnavailable: only with ``once``.
        redis.RedisError: only with ``once`` (Redis could not remember the record).
    """
    from pipeline.errors import DatabaseUnavailable

    try:
        from pipeline.guardrails.audit import AuditLog
    except ImportError:  # pragma: no cover - the audit log ships with heal
        return
    try:
        AuditLog(settings, getattr(store, "db", None), redis_client=client).append(
            kind, subject, data, once=once)
    except HealError as exc:
        if once and (exc.stops_stage or isinstance(exc, DatabaseUnavailable)):
            raise
        log.warning("audit log append failed (%s %s): %s", kind, subject, exc)


def check_audit_chain(settings: Settings, store: Any, client: Any = None) -> None:
    """Refuse before acting when the audit chain cannot be extended until the operator acts
    (:meth:`AuditLog.check_extendable`).

    Raises:
        AuditChainUnusable: the key that sealed the log is not here, or the table's last
            row was edited.
    """
    from pipeline.guardrails.audit import AuditLog

    AuditLog(settings, getattr(store, "db", None), redis_client=client).check_extendable()


def audit_before_acting(settings: Settings, store: Any, kind: str, subject: str,
                        data: dict[str, Any], client: Any = None) -> str:
    """Append an intent; returns "" when recorded, else why nothing may be done."""
    from pipeline.guardrails.audit import AuditLog

    try:
        AuditLog(settings, getattr(store, "db", None), redis_client=client).append(
            kind, subject, data)
    except HealError as exc:
        log.error("refusing to act unaudited (%s %s): %s", kind, subject, exc)
        return f"nothing applied: the audit log cannot record it ({exc})"
    return ""


def audit_witnessed_later(settings: Settings, store: Any, kind: str, subject: str,
                          data: dict[str, Any], client: Any = None) -> dict[str, Any] | None:
    """Record what already happened in the file now, and in the table when PostgreSQL can
    take it. Returns the table record still to write (for :func:`write_witness` on a retry,
    which must not append a second file record), or None when nothing is left."""
    from pipeline.errors import DatabaseUnavailable
    from pipeline.guardrails.audit import AuditLog

    db = getattr(store, "db", None)
    try:
        record = AuditLog(settings, redis_client=client).append(kind, subject, data)
    except HealError as exc:
        log.warning("audit log append failed (%s %s): %s", kind, subject, exc)
        return None
    witness = {"kind": kind, "subject": subject, "data": data,
               "file": {"seq": record["seq"], "hash": record["hash"]}}
    if db is None:
        return None
    try:
        write_witness(settings, store, witness, client)
    except DatabaseUnavailable as exc:
        log.warning("audit table record of %s %s waits for PostgreSQL: %s", kind, subject, exc)
        return witness
    return None


def write_witness(settings: Settings, store: Any, witness: dict[str, Any],
                  client: Any = None) -> None:
    """Write a table record :func:`audit_witnessed_later` left. A table that refuses it (its
    last row edited by hand: AuditError) is logged, as a file that cannot take the verdict's
    record is: the verdict is what already happened, and its event goes on.

    Raises:
        DatabaseUnavailable: PostgreSQL is down (the record is written by the retry).
    """
    from pipeline.guardrails.audit import AuditError, AuditLog

    try:
        AuditLog(settings, getattr(store, "db", None), redis_client=client).witness(
            str(witness["kind"]), str(witness["subject"]), dict(witness["data"]),
            dict(witness["file"]))
    except AuditError as exc:
        log.error("audit table record of %s %s not written: %s", witness["kind"],
                  witness["subject"], exc)
