"""``heal explain FP``: every decision heal made about one fingerprint, gathered from the
stores of every stage (read through :class:`storage.reports.ReportStore`).

:func:`explain` returns a JSON-ready dict; :func:`render` turns it into one screen of text.
Raises :class:`NotFound` (exit 1) for a fingerprint nobody recorded and
:class:`~pipeline.errors.UsageError` (exit 2) for an ambiguous prefix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis

from pipeline.config import Settings
from pipeline.errors import HealError, UsageError
from pipeline.events import OutcomeEvent
from pipeline.fingerprint import fingerprint_text
from pipeline.lifecycle.flakiness import is_flaky
from pipeline.lifecycle.posterior import Posterior
from pipeline.lookup.service import CAUSAL_MIN_CONFIDENCE
from pipeline.operator.streams import newest_first_everywhere
from pipeline.replayid import replay_of
from storage.causal import CausalGraph
from storage.lifecycle import LifecycleStore
from storage.reports import ReportStore

#: outcome events read back (newest first) for the detail PostgreSQL does not keep
OUTCOME_SCAN_LIMIT = 20_000

#: the newest outcome event of any of these fine fingerprints, or None
OutcomeReader = Callable[[list[str]], dict[str, Any] | None]


def outcome_reader(client: redis.Redis, settings: Settings,
                   limit: int = OUTCOME_SCAN_LIMIT) -> OutcomeReader:
    """Reads the outcomes stream for the newest outcome of a fingerprint: its status, detail
    (why an escalation escalated) and the error text. Raises StreamUnavailable."""

    def read(fines: list[str]) -> dict[str, Any] | None:
        wanted = set(fines)
        for ev in newest_first_everywhere(client, settings, "outcomes", OutcomeEvent.decode,
                                         limit):
            if ev.fine in wanted:
                return {"error_id": ev.error_id, "status": ev.status, "detail": ev.detail,
                        "fix_id": ev.fix_id, "ts": ev.ts, "text": ev.error.text}
        return None

    return read


class NotFound(HealError):
    """Nothing is recorded about the fingerprint (exit 1: the lookup found nothing)."""


def resolve(store: ReportStore, text: str) -> tuple[str, str]:
    """The one (fingerprint, level) that ``text`` names (whole or a unique prefix)."""
    text = text.strip()
    if not text:
        raise UsageError("heal explain: give a fingerprint (fp-v3:...) or a unique prefix of one")
    found = store.resolve(text)
    if not found:
        raise NotFound(f"no record of fingerprint {text!r}: it was never seen by the pipeline "
                       "(see heal fingerprint / heal issues list for known ones)")
    if len(found) > 1:
        names = "\n  ".join(f"{fp} ({level})" for fp, level in found)
        raise UsageError(f"{text!r} matches {len(found)} fingerprints; give more characters:"
                         f"\n  {names}")
    return found[0]


def _posterior(stat: dict[str, Any]) -> dict[str, Any]:
    p = Posterior(int(stat["successes"]), int(stat["failures"]) + int(stat["reverts"]))
    return {"mean": round(p.mean, 3), "lower95": round(p.lower(), 3),
            "upper95": round(p.upper(), 3), "attempts": p.attempts}


def _sample(issues: list[dict[str, Any]], attempts: list[dict[str, Any]],
            last: dict[str, Any] | None) -> str:
    for a in attempts:
        if a.get("error_text"):
            return str(a["error_text"])
    if last and last.get("text"):
        return str(last["text"])
    for i in issues:
        if i.get("sample"):
            return str(i["sample"])
    return ""


def _normalization(sample: str) -> dict[str, Any] | None:
    if not sample:
        return None
    fp = fingerprint_text(sample)
    return {"fine": fp.fine, "coarse": fp.coarse, "template": fp.template,
            "normalized": fp.normalized, "params": fp.params, "hints": list(fp.hints)}


def _copy(record: dict[str, Any]) -> str:
    """`` (replay of <id>)`` for a record of a replay copy: its original's story is told
    apart from what a replay did (``heal backfill --replay``)."""
    original = record.get("replay_of")
    return f" (replay of {original}, error {record['error_id']})" if original else ""


def _mark_copies(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for r in records:
        r["replay_of"] = replay_of(str(r.get("error_id", "")))
    return records


def _why(story: dict[str, Any]) -> str:
    """One sentence: what happened last and why (or why not) a fix was applied."""
    if any(c["ignored"] for c in story["controls"]):
        return "ignored by a person (heal ignore): no fix is looked up or applied"
    last = story.get("last_event")
    if last:
        return (f"last outcome {last['status']}{_copy(last)}: "
                f"{last['detail']}").rstrip(": ")
    latest = story["attempts"][0] if story["attempts"] else None
    if latest and latest.get("apply"):
        applied = latest["apply"]
        return (f"last attempt {applied['status']}{_copy(latest)}: "
                f"{applied['detail']}").rstrip(": ")
    if latest:
        return (f"last attempt decided {latest['decision']}{_copy(latest)}: "
                f"{latest['reason']}").rstrip(": ")
    if story["outcomes"]:
        last = story["outcomes"][0]
        return f"last outcome {last['status']}{_copy(last)} (no validated attempt recorded)"
    if story["issues"]:
        return "no known pattern matched: waiting in the issue queue (heal issues review)"
    return "seen, but no decision recorded yet"


def explain(store: ReportStore, text: str,
            read_outcome: OutcomeReader | None = None) -> dict[str, Any]:
    """Everything recorded about the fingerprint ``text`` names (with the newest outcome event
    still in the outcomes stream when ``read_outcome`` is given)."""
    fp, level = resolve(store, text)
    fines = [fp] if level == "fine" else store.fines_of_coarse(fp) or [fp]
    lookup = store.lookup_path(fines)
    pattern_ids = sorted({p["pattern_id"] for p in lookup["paths"] + lookup["learned"]})
    stats = store.fix_stats(fines)
    for s in stats:
        s["posterior"] = _posterior(s)
    attempts = _mark_copies(store.attempts(fines))
    issues = store.issues_for(fines)
    last = read_outcome(fines) if read_outcome else None
    sample = _sample(issues, attempts, last)
    story: dict[str, Any] = {
        "fingerprint": fp, "level": level, "fines": fines,
        "sample": sample[-2000:], "normalization": _normalization(sample),
        "lookup": lookup, "patterns": store.patterns_and_fixes(pattern_ids),
        "fix_stats": stats, "rankings": store.rankings(fines), "attempts": attempts,
        "outcomes": _mark_copies(store.outcomes(fines)),
        "transitions": store.transitions(fines),
        "controls": store.controls([fp, *fines]), "issues": issues,
        "last_event": None if last is None else _mark_copies(
            [{k: v for k, v in last.items() if k != "text"}])[0],
    }
    story["determinism"] = _determinism(store, fines)
    story["causal"] = _causal(store, [*fines, *pattern_ids])
    story["why"] = _why(story)
    return story


def _causal(store: ReportStore, nodes: list[str]) -> list[dict[str, Any]]:
    """The tier-3 walk from these nodes: each known root cause with the chain to it."""
    causes = CausalGraph(store.db).causes(nodes, CAUSAL_MIN_CONFIDENCE)
    return [{"cause": c.node, "confidence": round(c.confidence, 3), "path": list(c.path)}
            for c in causes[:5]]


def _determinism(store: ReportStore, fines: list[str]) -> dict[str, Any]:
    """The lowest determinism score among the fine fingerprints (0 flaky .. 1 deterministic)."""
    lifecycle = LifecycleStore(store.db)
    scores = {fine: lifecycle.determinism(fine) for fine in fines[:50]}
    score = min(scores.values(), default=1.0)
    # what the lookup acts on (LifecycleStore.flaky_fingerprints): a low score alone (irregular
    # occurrences) gets no retry playbook until a failure has passed on a plain re-run
    low = [fine for fine, value in scores.items() if is_flaky(value)]
    flaky = bool(low) and lifecycle.has_flaky_outcome(low)
    return {"score": score, "flaky": flaky, "by_fingerprint": scores}
