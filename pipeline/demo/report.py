"""The demo's readable report."""

from __future__ import annotations

from typing import Any

from pipeline.demo.guardrails import Scene
from pipeline.demo.runner import Row


def _label(row: Row) -> str:
    s = row.status
    if s.endswith("applied"):
        return "fixed + verified"
    if "rolled_back" in s or s == "failed":
        return "rolled back"
    return {"escalated": "escalated", "suggested": "suggested", "skipped": "skipped",
            "observed": "observed"}.get(s, s or "no outcome")


def render(rows: list[Row], seconds: float) -> str:
    lines = ["", "heal demo report", "================", ""]
    header = f"{'breakage':<20} {'fix':<32} {'result':<17} {'passes now':<10} {'time':>6}"
    lines += [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r.breakage.name:<20} {(r.fix_id or '-'):<32} {_label(r):<17} "
                     f"{('yes' if r.passes_now else 'no'):<10} {r.seconds:>5.1f}s")
    lines.append("")
    for r in rows:
        lines.append(f"* {r.breakage.name}: {r.breakage.what}")
        lines.append(f"    command: {' '.join(r.breakage.command)} (exit {r.exit_code})")
        if r.detection:
            lines.append(f"    detected: {r.detection}")
        if r.decision:
            lines.append(f"    verdict: {r.decision}")
        for line in r.evidence:
            lines.append(f"    {line}")
        if r.detail:
            lines.append(f"    outcome: {r.status}: {r.detail[:300]}")
        for note in r.notes:
            lines.append(f"    note: {note}")
    detected = sum(r.failed for r in rows)
    fixed = sum(_label(r) == "fixed + verified" for r in rows)
    rolled = sum(_label(r) == "rolled back" for r in rows)
    escalated = sum(_label(r) == "escalated" for r in rows)
    as_expected = sum(_expected(r) for r in rows)
    lines += ["", f"detected {detected}, fixed and verified {fixed}, rolled back {rolled}, "
              f"escalated {escalated}; {as_expected}/{len(rows)} as expected; "
              f"{seconds:.1f}s in all", ""]
    return "\n".join(lines)


def as_dict(rows: list[Row], seconds: float) -> dict[str, object]:
    """The report as one JSON object (``heal demo --json``)."""
    labels = [_label(r) for r in rows]
    return {
        "rows": [{"breakage": r.breakage.name, "what": r.breakage.what,
                  "command": list(r.breakage.command), "exit_code": r.exit_code,
                  "error_id": r.error_id, "pattern": r.pattern, "fix_id": r.fix_id,
                  "result": label, "status": r.status, "detail": r.detail,
                  "passes_now": r.passes_now, "expected": _expected(r),
                  "seconds": round(r.seconds, 3)} for r, label in zip(rows, labels, strict=True)],
        "detected": sum(r.failed for r in rows),
        "fixed": labels.count("fixed + verified"),
        "rolled_back": labels.count("rolled back"),
        "escalated": labels.count("escalated"),
        "as_expected": sum(_expected(r) for r in rows),
        "seconds": round(seconds, 3),
    }


def _expected(row: Row) -> bool:
    label = _label(row)
    want = row.breakage.expect
    if want == "suggested":
        return label == "fixed + verified" and row.status.startswith("suggested")
    if want == "fixed":
        return label == "fixed + verified"
    return label == want


def all_as_expected(rows: list[Row]) -> bool:
    return all(_expected(r) for r in rows)


def render_scene(scene: Scene) -> str:
    """The guardrail scene: each round's result, then every notified state change."""
    lines = ["guardrails: fixes that do not hold, in one workflow step", "-" * 56]
    for r in scene.rows:
        lines.append(f"{r.breakage.name:<16} {(r.fix_id or '-'):<22} {_label(r):<12} "
                     f"{r.detail[:110]}")
    lines += ["", "state changes (each notified, with its reason):"]
    lines += [f"  [{c.get('severity', '?')}] {c.get('summary', '')}" for c in scene.changes]
    if not scene.changes:
        lines.append("  none")
    elif scene.webhook_withheld:
        lines.append("  (HEAL_WEBHOOK_URL would have received these; the demo sent it none, "
                     "real work's changes still go there)")
    ok = "as expected" if scene_as_expected(scene) else "NOT as expected"
    lines += ["", f"breaker tripped: {'yes' if scene.tripped() else 'no'}; quarantine or "
              f"degradation: {'yes' if scene.quarantined_or_degraded() else 'no'}; {ok}", ""]
    return "\n".join(lines)


def scene_as_expected(scene: Scene) -> bool:
    return (all(_expected(r) for r in scene.rows) and scene.tripped()
            and scene.quarantined_or_degraded())


def scene_dict(scene: Scene) -> dict[str, Any]:
    """The guardrail scene for ``heal demo --json``."""
    return {"rounds": [{"name": r.breakage.name, "fix_id": r.fix_id, "status": r.status,
                        "detail": r.detail} for r in scene.rows],
            "state_changes": scene.changes, "breaker_tripped": scene.tripped(),
            "quarantined_or_degraded": scene.quarantined_or_degraded(),
            "webhook_withheld": scene.webhook_withheld, "as_expected": scene_as_expected(scene)}

