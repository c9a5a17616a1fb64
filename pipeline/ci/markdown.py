"""Markdown for CI: the job summary and the pull-request comment body of one ``heal run``."""

from __future__ import annotations

import shlex

from pipeline.ci.report import RunReport
from pipeline.console import visible
from pipeline.markdown_text import code_span as _code
from pipeline.markdown_text import prose_cell as _cell

#: diff characters shown in a summary or comment (GitHub caps a step summary at 1 MiB)
SHOWN_DIFF = 60_000

_VERDICT = {
    "applied": "applied and verified",
    # (a verified suggestion is "verified; waiting to be applied": see _verdict)
    "suggested": "suggested; waiting to be applied",
    "rolled_back": "applied, then rolled back: the failing step still failed",
    "failed": "did not survive verification",
    "escalated": "escalated to a human",
    "observed": "observed only (mode observe)",
    "skipped": "skipped",
    "flaky": "not reproducible: the step passed on a re-run without a fix (recorded as flaky)",
    "deferred": "deferred by the rate limit; retried automatically",
    "none": "no decision",
    "not reported": "not reported: heal could not publish the error",
}


def _verdict(report: RunReport) -> str:
    if report.decision == "suggested" and report.verified:
        return "verified; waiting to be applied"
    return _VERDICT.get(report.decision, report.decision)


def _prose_and_code(text: str) -> str:
    """A cell of prose whose backticked parts (``run `heal apply ID` to apply``, as the
    validator words it) are code spans of their own: escaping the backticks as prose left
    stray ticks around an id that is code-spanned as a word GitHub would link. Unpaired
    backticks: all prose."""
    if not text.count("`") or text.count("`") % 2:
        return _cell(text)
    return "".join(_code(part) if i % 2 else _cell(part)
                   for i, part in enumerate(text.split("`")))


def _shown_line(line: str) -> str:
    """A line of a diff with its control and bidirectional characters shown (a Trojan
    Source patch is seen for what it is), its tabs kept."""
    return "\t".join(visible(part) for part in line.split("\t"))


def _fence(text: str, lang: str = "") -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}\n"


def _rows(report: RunReport) -> list[tuple[str, str]]:
    match, fix, verdict = report.match, report.fix, report.verdict
    file, line = report.location()
    rows = [("command", f"{_code(shlex.join(report.event.command))} (exit "
                        f"{_cell(report.event.exit_code)})"),
            ("error", _code(report.headline))]
    if file:
        rows.append(("where", _code(f"{file}{':' + str(line) if line is not None else ''}")))
    if match.get("pattern_id"):
        score = match.get("score")
        rows.append(("match", f"{_code(match['pattern_id'])}, tier {_cell(match.get('tier'))}"
                              + (f", score {float(score):.2f}" if score is not None else "")))
    elif report.outcome is None and report.undecided in ("not reported", "interrupted"):
        rows.append(("match", "not looked up: nothing was published"))
    elif report.outcome is None:
        # published, no decision (the wait ended, or the pipeline failed: PostgreSQL down):
        # whether a lookup ran, and whether the error waits for review, is not known here
        rows.append(("match", "not known: the pipeline reached no decision"))
    else:
        rows.append(("match", "no known pattern (queued for review: `heal issues list`)"))
    if fix:
        rows.append(("fix", _code(fix.get("id"))
                            + (f" ({_cell(fix['category'])})" if fix.get("category") else "")))
    if verdict is not None:
        rows.append(("verification",
                     _prose_and_code(report.one_handle(verdict.reason or verdict.decision))))
    detail = report.detail
    rows.append(("decision", f"**{_verdict(report)}**"
                             + (f": {_prose_and_code(detail)}" if detail else "")))
    rows.append(("result", "the command passes now" if report.resolved
                 else f"the command still fails (exit {report.exit_status})"))
    return rows


def _diff_block(report: RunReport) -> str:
    if not report.diff:
        return ""
    shown = report.diff[:SHOWN_DIFF]
    cut = "" if len(shown) == len(report.diff) else "\n(diff cut; the whole patch is fix.patch)\n"
    # (split at newlines only: a form feed or U+2028 in the patch is shown, not a line end)
    shown = "\n".join(_shown_line(line.removesuffix("\r")) for line in shown.split("\n"))
    return (f"<details><summary>the fix's diff</summary>\n\n{_fence(shown, 'diff')}{cut}"
            "\n</details>\n")


def summary(report: RunReport) -> str:
    """The job summary section (appended to ``$GITHUB_STEP_SUMMARY``)."""
    icon = "white_check_mark" if report.resolved else "x"
    lines = [f"### :{icon}: heal: {_cell(report.event.workflow.step or 'run', table=False)}", "",
             "| | |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in _rows(report)]
    body = "\n".join(lines) + "\n\n" + _diff_block(report)
    if report.decision == "suggested":
        # git apply only when there is a patch: a command or playbook fix has none
        patch = " or `git apply fix.patch` (in the `heal` artifact)" if report.diff else ""
        body += (f"\nApply it with {_code(f'heal apply {report.event.id}', table=False)}"
                 f"{patch}.\n")
    return body + "\n"


def pr_comment(report: RunReport) -> str:
    """A pull-request comment body: the same facts, and how to take or leave the fix."""
    lines = ["<!-- heal:run -->", f"**heal** looked at a failure of "
             f"{_code(shlex.join(report.event.command), table=False)}.", "", "| | |",
             "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in _rows(report)]
    text = "\n".join(lines) + "\n\n" + _diff_block(report)
    if report.diff:
        text += ("\nTo take this fix: download the `heal` artifact and run `git apply fix.patch`"
                 "; to leave it, do nothing.\n")
    return text
