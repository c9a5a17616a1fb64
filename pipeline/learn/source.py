"""Which error a lesson is about: ``ERROR_ID``, ``FINGERPRINT`` or ``--last`` (the most recent
unmatched or escalated error of the current repository).

The candidates stream holds every looked-up error with its match (a ``None`` fix is
unmatched, an ``escalate`` fix is escalated); the outcomes stream says which fixes ended
escalated; the issue queue in PostgreSQL keeps a sample of every unmatched group after the
streams were trimmed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from pipeline.config import Settings
from pipeline.errors import UsageError
from pipeline.events import CandidateEvent, OutcomeEvent
from pipeline.fingerprint.status import ended_parts
from pipeline.operator.streams import newest_first_everywhere

#: how far back the streams are searched
SCAN = 20_000


@dataclass(frozen=True)
class TaughtError:
    """The error a lesson is about (what the provenance records)."""

    error_id: str
    text: str
    fine: str
    coarse: str = ""
    repo: str = ""
    command: tuple[str, ...] = ()
    why: str = "unmatched"  # unmatched | escalated | fix failed | queued
    #: how the command ended (the event's exit code and ``tags.signal``): part of the
    #: fingerprint of a text with no line saying what failed
    exit_code: int | None = None
    signal: str = ""

    @classmethod
    def of_issue(cls, issue: dict[str, Any]) -> TaughtError:
        """A queued group's error, keyed as the stage keyed its sample (``ended``: how its
        command ended and which program ran)."""
        exit_code, signal, program = ended_parts(str(issue.get("ended") or ""))
        fine = str(issue["fine"])
        return cls(f"issue:{fine}", str(issue.get("sample", "")), fine,
                   str(issue.get("coarse", "")), command=tuple(program.split()), why="queued",
                   exit_code=exit_code, signal=signal)

    @classmethod
    def of_candidate(cls, ev: CandidateEvent, why: str) -> TaughtError:
        signal = ev.error.tags.get("signal")
        return cls(ev.error_id, ev.error.text, ev.fine, ev.coarse, ev.error.repo.path,
                   tuple(ev.error.command), why, ev.error.exit_code,
                   signal if isinstance(signal, str) else "")


def _why(ev: CandidateEvent) -> str | None:
    if ev.fix is None:
        return "unmatched"
    if ev.fix.get("kind") == "escalate":
        return "escalated"
    return None


def _in_repo(path: str, root: Path) -> bool:
    if not path:
        return False
    try:
        return Path(path).resolve().is_relative_to(root)
    except (OSError, ValueError):
        return False


def find_last(client: redis.Redis, settings: Settings, root: Path) -> TaughtError:
    """The newest error of repository ``root`` that nothing fixed: unmatched, escalated, or
    whose fix ended escalated/rolled back/failed.

    Raises:
        UsageError: none in the streams. StreamUnavailable: Redis unreachable.
    """
    failed: dict[str, str] = {}
    for out in newest_first_everywhere(client, settings, "outcomes", OutcomeEvent.decode, SCAN):
        if out.status in ("escalated", "rolled_back", "failed", "rejected"):
            failed.setdefault(out.error_id, out.status)
    for ev in newest_first_everywhere(client, settings, "candidates", CandidateEvent.decode,
                                     SCAN):
        if not _in_repo(ev.error.repo.path, root):
            continue
        why = _why(ev) or (f"fix {failed[ev.error_id]}" if ev.error_id in failed else None)
        if why is not None:
            return TaughtError.of_candidate(ev, why)
    raise UsageError(f"heal learn --last: no unmatched or escalated error of {root} in the "
                     "pipeline's streams; name the error by the id heal run printed "
                     "(published ID) or by a fingerprint: heal issues list --by-fingerprint "
                     "shows each group's")


def _hash_of(fingerprint: str) -> str:
    """``fp-v4:3f65479281be6028`` -> ``3f65479281be6028`` (the part ``heal run`` prints)."""
    return fingerprint.split(":", 1)[-1]


def names_fingerprint(ident: str, fingerprint: str) -> bool:
    """``ident`` is ``fingerprint`` or a prefix of it, with or without its version
    (``fp-v4:``): the short fingerprint ``heal run`` prints names its group, whatever the
    algorithm version, as it does for ``heal explain``."""
    if not ident or not fingerprint:
        return False
    if ident.startswith("fp-"):
        return fingerprint.startswith(ident)
    return _hash_of(fingerprint).startswith(ident)


def find(client: redis.Redis, settings: Settings, db: Any, ident: str) -> TaughtError:
    """An error by its id, or by a fingerprint (or a prefix of one) of its group.

    Raises:
        UsageError: unknown or ambiguous. StreamUnavailable / DatabaseUnavailable.
    """
    ident = ident.strip()
    if not ident:
        raise UsageError("heal learn: name the error (ERROR_ID or FINGERPRINT) or use --last")
    by_fp: list[CandidateEvent] = []
    for ev in newest_first_everywhere(client, settings, "candidates", CandidateEvent.decode,
                                     SCAN):
        if ev.error_id == ident:
            return TaughtError.of_candidate(ev, _why(ev) or "matched")
        if names_fingerprint(ident, ev.fine) or ident in (ev.coarse, _hash_of(ev.coarse)):
            by_fp.append(ev)
    fines = {ev.fine for ev in by_fp}
    exact = [ev for ev in by_fp if ident in (ev.fine, _hash_of(ev.fine))]
    if len(fines) > 1 and not exact:
        raise UsageError(f"heal learn: {ident!r} names {len(fines)} error groups "
                         f"({', '.join(sorted(fines)[:3])}...); give more of the fingerprint")
    if by_fp:
        ev = exact[0] if exact else by_fp[0]
        return TaughtError.of_candidate(ev, _why(ev) or "matched")
    if db is not None:
        from storage.reports import ReportStore

        store = ReportStore(db)
        fines_known = [f for f, level in store.resolve(ident) if level == "fine"]
        for fine in fines_known[:1]:
            issue = store.issues_for([fine])
            if issue:
                return TaughtError.of_issue(issue[0])
    raise UsageError(f"heal learn: no error {ident!r} is known (neither an error id in the "
                     "streams nor a fingerprint of an error there or of a queued group); "
                     "heal issues list --by-fingerprint shows the unmatched groups' "
                     "fingerprints")
