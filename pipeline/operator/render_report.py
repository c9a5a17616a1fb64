"""``heal report`` as text, Markdown or one self-contained HTML file (inline CSS, no script,
nothing fetched), from the data of :func:`pipeline.operator.report.build_report`."""

from __future__ import annotations

import html
from typing import Any

from pipeline.console import visible
from pipeline.markdown_text import prose_cell

Table = tuple[list[str], list[list[str]]]


def _pct(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate * 100:.1f}%"


def _secs(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1f}s" if value < 120 else f"{value / 60:.1f}min"


def _summary(r: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("errors", str(r["errors"])),
        ("auto-resolved", f"{r['auto_resolved']} ({_pct(r['auto_resolved_rate'])}; target "
                          f"{_pct(r['auto_resolved_target'])})"),
        ("applied on request", str(r["applied_on_request"])),
        ("escalated", str(len(r["escalations"]))),
        ("MTTR", f"{_secs(r['mttr_s'])} (target under {_secs(r['mttr_target_s'])})"),
        ("false positives", f"{_pct(r['false_positive_rate'])} (reverted / applied)"),
    ]


def _tables(r: dict[str, Any]) -> list[tuple[str, Table]]:
    """The report's tables, every cell made :func:`~pipeline.console.visible`: error text,
    reasons and pattern names are event-derived (anyone who can make a step fail, or name a
    taught pattern, writes them), and an escape sequence or a bidirectional control printed
    raw drives the reader's terminal or reorders what they read, in every format."""
    return [(title, (head, [[visible(c) for c in row] for row in rows]))
            for title, (head, rows) in _raw_tables(r)]


def _raw_tables(r: dict[str, Any]) -> list[tuple[str, Table]]:
    learning = r["learning"]
    return [
        ("Healings", (["error", "fix", "tier", "time to fix", "by", "verification"], [
            [h["error"], h["fix_id"], str(h["tier"] or "-"), _secs(h["time_to_fix_s"]),
             "heal" if h["auto"] else "a person", h["verification"][:120]]
            for h in r["healings"]])),
        ("Escalations", (["error", "fix", "reason"], [
            [e["error"], e["fix_id"] or "-", e["reason"][:160]] for e in r["escalations"]])),
        ("New patterns", (["pattern", "name", "source", "taught by", "from error"], [
            [p["id"], p["name"][:60], p["source"], str((p["provenance"] or {}).get("who", "")),
             str((p["provenance"] or {}).get("error_id", ""))]
            for p in learning["new_patterns"]])),
        ("Graduations", (["fix", "from", "to", "why"], [
            [m["fix_id"], m["src"], m["dst"], m["reason"]] for m in learning["graduations"]])),
        ("Quarantines", (["fix", "from", "why"], [
            [m["fix_id"], m["src"], m["reason"]] for m in learning["quarantines"]])),
        ("Top unmatched groups", (["count", "fps", "fingerprint", "headline"], [
            [str(g["count"]), str(g.get("fingerprints", 1)), g["fine"], g["headline"]]
            for g in learning["top_unmatched"]])),
    ]


def render_text(r: dict[str, Any]) -> str:
    lines = [f"heal report: last {r['window']} (since {r['since']})", ""]
    lines += [f"  {k:<20} {v}" for k, v in _summary(r)]
    for title, (_head, rows) in _tables(r):
        lines += ["", f"{title} ({len(rows)})"]
        lines += ["  " + "  |  ".join(row) for row in rows[:50]] or ["  none"]
    if r.get("problems"):
        lines += ["", f"Problems ({len(r['problems'])})"]
        lines += [f"  {visible(p)}" for p in r["problems"]]
    return "\n".join(lines) + "\n"


def render_markdown(r: dict[str, Any]) -> str:
    lines = [f"# heal report: last {r['window']}", "", f"Since {r['since']}.", "",
             "| measure | value |", "| --- | --- |"]
    lines += [f"| {k} | {prose_cell(v)} |" for k, v in _summary(r)]
    for title, (head, rows) in _tables(r):
        lines += ["", f"## {title} ({len(rows)})", ""]
        if not rows:
            lines.append("None.")
            continue
        lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        lines += ["| " + " | ".join(prose_cell(c) for c in row) + " |" for row in rows]
    if r.get("problems"):
        lines += ["", f"## Problems ({len(r['problems'])})", ""]
        lines += [f"- {prose_cell(visible(p))}" for p in r["problems"]]
    return "\n".join(lines) + "\n"


_CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:72em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em}table{border-collapse:collapse;
width:100%}th,td{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}.kpi td:first-child{font-weight:600;width:12em}.none{color:#777}"""


def render_html(r: dict[str, Any]) -> str:
    e = html.escape
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>heal report: last {e(r['window'])}</title><style>{_CSS}</style></head>",
           f"<body><h1>heal report: last {e(r['window'])}</h1>",
           f"<p>Since {e(r['since'])}.</p>", '<table class="kpi">']
    out += [f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in _summary(r)]
    out.append("</table>")
    for title, (head, rows) in _tables(r):
        out.append(f"<h2>{e(title)} ({len(rows)})</h2>")
        if not rows:
            out.append('<p class="none">None.</p>')
            continue
        out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>")
        out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows]
        out.append("</table>")
    if r.get("problems"):
        out.append(f"<h2>Problems ({len(r['problems'])})</h2><ul>")
        out += [f"<li>{e(visible(p))}</li>" for p in r["problems"]]
        out.append("</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
