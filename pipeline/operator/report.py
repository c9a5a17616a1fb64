"""``heal report``: what was healed and learned in a window (``--since 7d``).

Definitions ("errors" = distinct error ids with an outcome recorded in the window, judged by
their latest outcome, as in ``heal metrics``):

- healings: outcome ``applied``, with the error's headline, the fix, the lookup tier, the time
  to fix (detection -> applied) and the verification that preceded it; ``auto`` when the
  pipeline applied it on its own (the validator decided ``apply``), else a person applied a
  verified suggestion (``heal apply``)
- escalations: outcome ``escalated``, with the reason (the validator's, else the one the
  outcomes stream still holds, else "no known fix")
- auto_resolved_rate = healings applied by the pipeline on its own / errors (target 80%)
- mttr_s = mean time to fix of the healings (target under 300 s)
- false_positive_rate = rolled back / (applied + rolled back): fixes that reached a branch and
  had to be reverted
- learning: patterns taught in the window (with who and how), graduations (-> ACTIVE or
  AUTOMATED), quarantines, and the top unmatched groups still waiting for a lesson
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Callable
from typing import Any

from pipeline.operator.groups import MAX_MINED, summary

TARGET_AUTO_RESOLVED = 0.8
TARGET_MTTR_S = 300.0
NO_FIX = "no known fix: queued for a human (teach one with heal learn)"


def headline(text: str | None) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1][:160] if lines else ""


def _rate(num: int, den: int) -> float | None:
    return None if den == 0 else round(num / den, 4)


def _error(row: dict[str, Any], own: dict[str, str]) -> str:
    """The row's error: its own headline (read back from the streams), else its own text's
    (the attempt's verdict), else, only when neither is known any more, its group's sample."""
    return (own.get(row["error_id"]) or "")[:160] or headline(
        row.get("text") or row.get("sample"))


def _healing(row: dict[str, Any], own: dict[str, str]) -> dict[str, Any]:
    seconds = row.get("seconds")
    return {"error_id": row["error_id"], "error": _error(row, own),
            "fingerprint": row["fingerprint"], "fix_id": row["fix_id"],
            "pattern_id": row.get("pattern_id"), "tier": row.get("tier"),
            "time_to_fix_s": None if seconds is None else round(float(seconds), 3),
            "auto": row.get("decision") == "apply",
            "verification": row.get("reason") or "", "category": row.get("category") or "",
            "branch": row.get("branch") or "", "ts": row["ts"]}


def _escalation(row: dict[str, Any], details: dict[str, str], own: dict[str, str]
                ) -> dict[str, Any]:
    reason = row.get("reason") or details.get(row["error_id"]) or NO_FIX
    return {"error_id": row["error_id"], "error": _error(row, own),
            "fingerprint": row["fingerprint"], "fix_id": row["fix_id"] or None,
            "reason": reason, "ts": row["ts"]}


def build_report(healing: Any, reports: Any, learned: Any, since: dt.datetime,
                 label: str, details: Callable[[], dict[str, str]] | None = None,
                 headlines: Callable[[list[str]], dict[str, str]] | None = None,
                 ) -> dict[str, Any]:
    """The report as JSON-ready data (``heal report --format json``).

    ``healing`` is a :class:`storage.healing.HealingReports`, ``reports`` a
    :class:`storage.reports.ReportStore`, ``learned`` a
    :class:`storage.learned.LearnedRepository`; ``details`` returns error id -> outcome
    detail from the outcomes stream (may be None: reasons then come from PostgreSQL only);
    ``headlines`` error ids -> each error's own headline from the streams (may be None: a
    row's error is then its attempt's text, else its group's sample).
    A record that could not be read (changed by hand) is named in ``problems``.
    """
    problems: list[str] = []
    counts = reports.outcome_counts(since)
    applied_rows = healing.outcomes(since, ("applied",), problems=problems)
    rows = healing.outcomes(since, ("escalated",), problems=problems)
    stream = details() if details is not None and rows else {}
    ids = [r["error_id"] for r in (*applied_rows, *rows)]
    own = headlines(ids) if headlines is not None and ids else {}
    healed = [_healing(r, own) for r in applied_rows]
    escalations = [_escalation(r, stream, own) for r in rows]
    by = counts["by_status"]
    applied, reverted = int(by.get("applied", 0)), int(by.get("rolled_back", 0))
    auto = sum(1 for h in healed if h["auto"])
    times = [h["time_to_fix_s"] for h in healed if h["time_to_fix_s"] is not None]
    mttr = round(statistics.fmean(times), 3) if times else None
    moves = healing.transitions(since)
    return {
        "window": label, "since": since.isoformat(timespec="seconds"),
        "errors": counts["errors"], "outcomes": by,
        "healings": healed, "escalations": escalations,
        "auto_resolved": auto, "applied_on_request": len(healed) - auto,
        "auto_resolved_rate": _rate(auto, counts["errors"]),
        "auto_resolved_target": TARGET_AUTO_RESOLVED,
        "mttr_s": mttr, "mttr_target_s": TARGET_MTTR_S,
        "false_positive_rate": _rate(reverted, applied + reverted),
        "learning": {
            "new_patterns": learned.new_since(since),
            "graduations": [m for m in moves if m["dst"] in ("ACTIVE", "AUTOMATED")],
            "quarantines": [m for m in moves if m["dst"] == "QUARANTINED"],
            # grouped by mined template; each group's fine fingerprints stay its identity
            "top_unmatched": [{"cluster": g["cluster"], "template": g["template"],
                               "fine": g["fine"], "fines": g["fines"],
                               "fingerprints": g["fingerprints"], "count": g["count"],
                               "last_seen": g["last_seen"], "headline": headline(g["sample"])}
                              for g in summary(healing.top_unmatched(since, MAX_MINED), 10)[1]],
        },
        "problems": problems,
    }
