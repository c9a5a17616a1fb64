"""``heal metrics``: rates over 24h / 7d / 30d windows from the stored records.

Definitions (window W ending now; "errors" are the errors the pipeline finished in W, i.e.
distinct error ids in ``lifecycle_outcomes`` recorded in W, judged by their latest outcome;
an error counts once by its original id, a replay copy only when its original has no outcome
of its own: ``pipeline/replayid.py``):

- detection_rate = errors matched to a known pattern (an ``occurrences`` row, any tier) / errors
- auto_fix_rate  = errors whose outcome is ``applied`` / errors
- success_rate   = applied / (applied + rolled_back + failed): of the fixes that were tried on
  code, the share that was verified and kept
- mttr_s         = mean seconds from detection (``occurrences.seen_at``) to the ``applied``
  outcome; ``mttr_p50_s`` its median
- cost per UTC day: judges' ``cost_usd`` (``attempt_votes``) and the guardrails' budget spend
  (verification minutes, LLM tokens, fix applications; Redis ``budget:spend:<day>``)
- pattern growth: patterns in total, patterns created in W by source, fingerprints learned in W
- top errors: patterns with the most occurrences in W; top unmatched groups (issue queue),
  grouped by mined template (cluster): three ``user X not found`` fingerprints are one group;
  each group keeps its fine fingerprints, the identity for ``heal explain`` and exact recall
- unmatched groups: templates of the issue-queue rows seen in W; unmatched fingerprints: rows

Every rate is ``None`` when its denominator is 0.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Callable
from typing import Any

from pipeline.console import amount, clip, visible
from pipeline.errors import UsageError
from pipeline.operator.groups import MAX_MINED, summary
from storage.reports import ReportStore

WINDOWS = {"24h": dt.timedelta(hours=24), "7d": dt.timedelta(days=7),
           "30d": dt.timedelta(days=30)}

#: what a top unmatched group shows (its sample stays in ``heal issues list`` / explain)
_GROUP_KEYS = ("cluster", "template", "count", "fingerprints", "fines", "fine", "last_seen")

#: spend of one UTC day (``YYYY-MM-DD``) per budget kind; raises HealError when unreachable
SpendReader = Callable[[str], dict[str, float]]


def windows_for(name: str | None) -> list[str]:
    if name is None:
        return list(WINDOWS)
    if name not in WINDOWS:
        raise UsageError(f"--window {name!r}: choose one of {', '.join(WINDOWS)}")
    return [name]


def _rate(num: int, den: int) -> float | None:
    return None if den == 0 else round(num / den, 4)


def _rates(counts: dict[str, Any]) -> dict[str, Any]:
    by = counts["by_status"]
    applied = int(by.get("applied", 0))
    tried = applied + int(by.get("rolled_back", 0)) + int(by.get("failed", 0))
    repair = counts["repair_seconds"]
    return {
        "errors": counts["errors"], "detected": counts["detected"], "outcomes": by,
        "detection_rate": _rate(counts["detected"], counts["errors"]),
        "auto_fix_rate": _rate(applied, counts["errors"]),
        "success_rate": _rate(applied, tried),
        "mttr_s": round(statistics.fmean(repair), 3) if repair else None,
        "mttr_p50_s": round(statistics.median(repair), 3) if repair else None,
    }


def _days(now: dt.datetime, span: dt.timedelta) -> list[str]:
    first = (now - span).date()
    return [(first + dt.timedelta(days=i)).isoformat()
            for i in range((now.date() - first).days + 1)]


def _cost(store: ReportStore, since: dt.datetime, days: list[str],
          spend: SpendReader | None) -> dict[str, dict[str, float]]:
    judges = store.judge_cost_by_day(since)
    out: dict[str, dict[str, float]] = {}
    for day in days:
        row = {"judge_usd": round(judges.get(day, 0.0), 6)}
        if spend is not None:
            row.update(spend(day))
        out[day] = row
    return out


def window_metrics(store: ReportStore, now: dt.datetime, name: str,
                   spend: SpendReader | None) -> dict[str, Any]:
    span = WINDOWS[name]
    since = now - span
    out = _rates(store.outcome_counts(since))
    groups, top = summary(store.unmatched_in_window(since, MAX_MINED), 5)
    out["unmatched_groups"] = groups
    out["unmatched_fingerprints"] = store.unmatched_fingerprints(since)
    out["top_unmatched"] = [{k: g[k] for k in _GROUP_KEYS} for g in top]
    out["cost_per_day"] = _cost(store, since, _days(now, span), spend)
    out["pattern_growth"] = store.pattern_growth(since)
    out["top_errors"] = store.top_errors(since)
    out["since"] = since.isoformat()
    return out


def collect(store: ReportStore, window: str | None = None, *,
            spend: SpendReader | None = None,
            now: dt.datetime | None = None) -> dict[str, Any]:
    """Every metric for the chosen window (all three when None)."""
    now = now or dt.datetime.now(dt.UTC)
    return {"generated_at": now.isoformat(),
            "windows": {w: window_metrics(store, now, w, spend) for w in windows_for(window)}}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1%}" if value <= 1 else f"{value:.1f}"
    return str(value)


_ROWS = (("errors finished", "errors"), ("detection rate", "detection_rate"),
         ("auto-fix rate", "auto_fix_rate"), ("success rate", "success_rate"),
         ("unmatched groups", "unmatched_groups"),
         ("unmatched fingerprints", "unmatched_fingerprints"))


def render(report: dict[str, Any]) -> str:
    wins = report["windows"]
    names = list(wins)
    lines = [f"{'metric':<22}" + "".join(f"{n:>12}" for n in names)]
    for label, key in _ROWS:
        lines.append(f"{label:<22}" + "".join(f"{_fmt(wins[n][key]):>12}" for n in names))
    mttr = [wins[n]["mttr_s"] for n in names]
    lines.append(f"{'MTTR (s)':<22}" + "".join(
        f"{'-' if m is None else f'{m:.2f}':>12}" for m in mttr))
    growth = [wins[n]["pattern_growth"] for n in names]
    lines.append(f"{'new patterns':<22}" + "".join(
        f"{sum(g['patterns_new'].values()):>12}" for g in growth))
    lines.append(f"{'fingerprints learned':<22}" + "".join(
        f"{g['fingerprints_learned']:>12}" for g in growth))
    widest = wins[names[-1]]
    lines += ["", f"top errors ({names[-1]}):"]
    # templates are mined from event text: shown visible (no raw escape or bidi control)
    top = [f"  {t['count']:>6}  {visible(str(t['pattern_id']))}" for t in widest["top_errors"]]
    top += [f"  {t['count']:>6}  unmatched {clip(visible(t['template']), 60)} "
            f"({t['fingerprints']} fp, e.g. {visible(t['fine'][:24])})"
            for t in widest["top_unmatched"]]
    lines += top or ["  none"]
    lines += ["", f"cost per day ({names[-1]}, days with spend):"]
    spent = [f"  {day}  " + "  ".join(f"{k}={amount(v)}" for k, v in sorted(row.items()))
             for day, row in widest["cost_per_day"].items() if any(row.values())]
    lines += spent or ["  nothing spent"]
    return "\n".join(lines)
