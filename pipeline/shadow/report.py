"""The shadow report: what a mode would have done with each error, and the figures
(auto-fix rate, precision) computed from the shadow's candidates and verdicts."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pipeline.config import STREAM_CANDIDATES, STREAM_VERDICTS, Settings
from pipeline.errors import DecodeError
from pipeline.events import CandidateEvent, VerdictEvent
from pipeline.model import Mode

ROWS_SHOWN = 20


@dataclass
class Row:
    error_id: str
    original_id: str
    fingerprint: str = ""
    pattern: str = ""
    tier: str = ""
    fix_id: str = ""
    category: str = ""
    decision: str = "none"
    reason: str = ""
    verified: str = "not run"  # passed | failed | not reproducible | not run

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ShadowReport:
    mode: str
    errors: int = 0
    matched: int = 0
    by_tier: dict[str, int] = field(default_factory=dict)
    unmatched: int = 0
    would_apply: int = 0
    suggestions: int = 0
    escalations: int = 0
    rejected: int = 0
    observed: int = 0
    duplicates: int = 0
    no_verdict: int = 0
    eligible_verified: int = 0
    eligible_passed: int = 0
    not_reproducible: int = 0
    notes: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)

    @property
    def auto_fix_rate(self) -> float | None:
        """would-auto-apply / errors, an error that repeats an earlier request (same
        fingerprint, fix and commit: decided once, like the pipeline does) not counted."""
        counted = self.errors - self.duplicates
        return self.would_apply / counted if counted else None

    @property
    def precision(self) -> float | None:
        """Verified-and-passed / verified, among fixes the mode would apply by themselves."""
        return self.eligible_passed / self.eligible_verified if self.eligible_verified else None

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "rows"}
        out["auto_fix_rate"] = self.auto_fix_rate
        out["precision"] = self.precision
        out["rows"] = [r.to_dict() for r in self.rows]
        return out


def eligible(fix: dict[str, Any], mode: str) -> bool:
    """Is this fix in ``mode``'s precision: one the mode would apply by itself once verified
    (validate's rule, before votes), or under ``suggest`` any fix put to a human."""
    category = str(fix.get("category", "")).upper()
    state = str(fix.get("state", "ACTIVE")).upper()
    if fix.get("kind") == "escalate" or state in ("QUARANTINED", "DEPRECATED"):
        return False
    if mode == Mode.SUGGEST.value:
        return True
    safe = category == "SAFE"
    if state == "DRAFT":
        return False
    if mode == Mode.AUTO_SAFE.value:
        return safe
    return mode == Mode.AUTO.value and (safe or state == "AUTOMATED")


def _verified(verdict: VerdictEvent) -> str:
    runs = {(r.get("phase"), r.get("name")): r for r in verdict.verification}
    if not any(phase == "after" for phase, _ in runs):
        return "not run"
    before = runs.get(("before", "failing-command"))
    if before is not None and before.get("exit_code") == 0:
        return "not reproducible"
    return "passed" if verdict.decision in ("apply", "suggest") else "failed"


def _entries(client: Any, stream: str) -> Iterable[bytes]:
    cursor = "-"
    while True:
        rows = client.xrange(stream, min=cursor, count=500)
        for _entry_id, fields in rows:
            raw = fields.get(b"event") or fields.get("event")
            if raw is not None:
                yield raw
        if len(rows) < 500:
            return
        last = rows[-1][0]
        cursor = "(" + (last.decode() if isinstance(last, bytes) else last)


def build_report(mode: str, client: Any, settings: Settings, originals: dict[str, str],
                 notes: list[str]) -> ShadowReport:
    """Read the shadow candidates and verdicts back into the report."""
    report = ShadowReport(mode=mode, errors=len(originals), notes=notes)
    rows = {eid: Row(eid, orig) for eid, orig in originals.items()}
    for raw in _entries(client, settings.stream(STREAM_CANDIDATES)):
        try:
            cand = CandidateEvent.decode(raw)
        except DecodeError:
            continue
        row = rows.get(cand.error_id)
        if row is None:
            continue
        match = cand.match or {}
        row.fingerprint = cand.fine
        row.pattern = str(match.get("pattern_id") or "")
        row.tier = str(match.get("tier") or "") if row.pattern else ""
        row.fix_id = str((cand.fix or {}).get("id", ""))
        row.category = str((cand.fix or {}).get("category", ""))
    verdicts: dict[str, VerdictEvent] = {}
    for raw in _entries(client, settings.stream(STREAM_VERDICTS)):
        try:
            verdict = VerdictEvent.decode(raw)
        except DecodeError:
            continue
        if verdict.error_id in rows:
            verdicts[verdict.error_id] = verdict
    for eid, row in rows.items():
        _count(report, row, verdicts.get(eid), mode)
    report.rows = list(rows.values())
    return report


def _count(report: ShadowReport, row: Row, verdict: VerdictEvent | None, mode: str) -> None:
    if row.pattern:
        report.matched += 1
        report.by_tier[row.tier or "?"] = report.by_tier.get(row.tier or "?", 0) + 1
    else:
        report.unmatched += 1
    if verdict is None:
        report.no_verdict += 1
        return
    row.decision, row.reason = verdict.decision, verdict.reason[:300]
    row.verified = _verified(verdict)
    if verdict.decision == "reject" and "identical request" in verdict.reason:
        report.duplicates += 1  # pre-flight dedupe: the earlier error's decision stands
        row.decision = "repeat"
        return
    tally = {"apply": "would_apply", "suggest": "suggestions", "escalate": "escalations",
             "reject": "rejected", "observe": "observed"}.get(verdict.decision)
    if tally:
        setattr(report, tally, getattr(report, tally) + 1)
    if verdict.fix and eligible(verdict.fix, mode):
        if row.verified in ("passed", "failed"):
            report.eligible_verified += 1
            report.eligible_passed += row.verified == "passed"
        elif row.verified == "not reproducible":
            report.not_reproducible += 1


def render(report: ShadowReport) -> str:
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.0%}"

    tiers = ", ".join(f"tier {t}: {n}" for t, n in sorted(report.by_tier.items())) or "none"
    lines = [
        f"heal shadow (mode {report.mode}; nothing was applied)",
        f"  errors            {report.errors}",
        f"  matched           {report.matched} ({tiers})",
        f"  unmatched         {report.unmatched}",
        f"  would auto-apply  {report.would_apply}",
        f"  suggestions       {report.suggestions}",
        f"  escalations       {report.escalations}",
        f"  rejected          {report.rejected}",
    ]
    if report.observed:
        lines.append(f"  observed only     {report.observed}")
    if report.duplicates:
        lines.append(f"  repeats           {report.duplicates} (same fingerprint, fix and commit "
                     "as an earlier error: decided once)")
    if report.no_verdict:
        lines.append(f"  no verdict        {report.no_verdict} (dead-lettered or not reached)")
    lines += [
        f"  auto-fix rate     {pct(report.auto_fix_rate)} (would auto-apply / errors"
        f"{' - repeats' if report.duplicates else ''})",
        f"  precision         {pct(report.precision)} (verification passed / verified, among "
        f"{report.eligible_verified} fix(es) "
        f"{'suggested' if report.mode == 'suggest' else report.mode + ' would apply by itself'})",
    ]
    if report.not_reproducible:
        lines.append(f"  not reproducible  {report.not_reproducible} (left out of precision)")
    lines += [f"  note: {n}" for n in report.notes]
    return "\n".join(lines + _row_lines(report.rows))


def _row_lines(rows: list[Row], limit: int = ROWS_SHOWN) -> list[str]:
    """The decisions that involve a fix (apply, suggest, reject), grouped, most useful first."""
    order = {"apply": 0, "suggest": 1, "reject": 2}
    groups: dict[tuple[str, str, str, str, str], list[Row]] = {}
    for r in rows:
        if r.decision in order:
            groups.setdefault((r.decision, r.fix_id, r.category, r.tier, r.verified), []).append(r)
    if not groups:
        return []
    keys = sorted(groups, key=lambda k: (order[k[0]], -len(groups[k]), k))
    out = ["", "  decision  fix (category, tier, verification)  errors"]
    for decision, fix_id, category, tier, verified in keys[:limit]:
        members = groups[(decision, fix_id, category, tier, verified)]
        more = f" (+{len(members) - 1} more)" if len(members) > 1 else ""
        out.append(f"  {decision:<8}  {fix_id} ({category or '?'}, tier {tier or '-'}, "
                   f"{verified})  {members[0].original_id}{more}")
    if len(keys) > limit:
        out.append(f"  ... {len(keys) - limit} more group(s) (--json lists every error)")
    return out
