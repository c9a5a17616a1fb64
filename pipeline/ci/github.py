"""GitHub Actions: what ``heal run`` leaves for the workflow when ``GITHUB_ACTIONS=true``.

* a Markdown job summary appended to ``$GITHUB_STEP_SUMMARY``: the error, the match and its
  tier, the fix, the verification result, and the diff in a collapsed ``<details>`` block;
* workflow-command annotations on stderr (the runner reads workflow commands from both
  streams; stdout stays the command's own, so ``heal run -- gen > data.json`` keeps the
  file clean): ``::error file=F,line=N,title=heal::...`` for the failure, ``::notice ...::``
  when a verified fix was applied. The message has its control and bidirectional characters
  written out (as the summary has); ``file=`` names only a file inside the checkout;
* files under the artifacts directory (``$HEAL_ARTIFACTS_DIR``, default
  ``$RUNNER_TEMP/heal``) for ``actions/upload-artifact``: ``decision.json``, ``fix.patch``
  (when there is a verified diff) and ``pr-comment.md`` (a pull-request comment body);
* step outputs appended to ``$GITHUB_OUTPUT``: ``decision``, ``fix-id``, ``patch-path``,
  ``error-id``, ``artifacts-dir``, ``resolved``.

Formats follow GitHub's documentation of workflow commands (values escaped: ``%`` ``\\r``
``\\n``, and ``:`` ``,`` in properties) and of the ``GITHUB_OUTPUT`` / ``GITHUB_STEP_SUMMARY``
files. A file that cannot be written is reported on stderr and never changes the exit status.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from pipeline.ci import markdown
from pipeline.ci.artifacts import not_utf8_warning, shown, write_artifacts
from pipeline.ci.report import RunReport
from pipeline.console import visible


def active(env: Mapping[str, str]) -> bool:
    return env.get("GITHUB_ACTIONS", "").lower() == "true"


def artifacts_dir(env: Mapping[str, str]) -> Path:
    explicit = env.get("HEAL_ARTIFACTS_DIR")
    if explicit:
        return Path(explicit)
    # never the checkout (GITHUB_WORKSPACE, "."): the artifacts would show up in the
    # repository heal keeps clean; the runner's temp folder, else the system's
    base = env.get("RUNNER_TEMP") or tempfile.gettempdir()
    return Path(base) / "heal"


def escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: str) -> str:
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


#: what the annotation says heal did, per decision (``suggested`` depends on verification:
#: see :func:`_what`)
_DID = {
    "applied": "heal applied a verified fix{fix}",
    "rolled_back": "heal applied a fix{fix}, then rolled it back: the step still failed",
    "failed": "heal's fix{fix} did not survive verification",
    "escalated": "heal escalated this error to a human",
    "observed": "heal only observed this error",
    "skipped": "heal skipped this error",
    "flaky": "the failure did not reproduce on a re-run without a fix: recorded as flaky",
    "deferred": "heal deferred its fix{fix} (rate limit); it is retried automatically",
    "none": "heal reached no decision",
    "not reported": "heal could not report this error",
}


def _what(report: RunReport) -> str:
    fix_id = str((report.fix or {}).get("id") or "")
    if report.decision == "suggested":
        named = f" {fix_id}" if fix_id else ""
        fix = (f"a verified fix{named}" if report.verified
               else f"a fix{named} (not verified yet)")
        # the error id: the one handle that names exactly this suggestion (a fix id does only
        # while no other suggestion of it waits)
        return f"heal suggests {fix}; apply it with: heal apply {report.event.id}"
    what = _DID.get(report.decision, "heal: " + report.decision.replace("{", "(") + "{fix}")
    what = what.replace("{fix}", f" {fix_id}" if fix_id else "")
    if report.outcome is None and report.decision in ("none", "not reported") and report.note:
        what += f": {report.note}"  # why (PostgreSQL unreachable, no decision in time...)
    return what


def workflow_commands(report: RunReport) -> list[str]:
    """The workflow commands for this report (one line each)."""
    file, line = report.checkout_location()
    props = [("title", "heal")]
    if file:
        props.insert(0, ("file", file))
        if line is not None:
            props.insert(1, ("line", str(line)))
    head = ",".join(f"{k}={escape_property(v)}" for k, v in props)
    level = "notice" if report.resolved else "error"
    # (visible: a U+202E in the error must not reorder the annotation GitHub shows on the line)
    message = visible(f"{report.headline} ({_what(report)})")
    out = [f"::{level} {head}::{escape_data(message)}"]
    if report.decision == "applied" and not report.resolved:
        out.append(f"::warning title=heal::{escape_data('the command still fails after the fix')}")
    return out


def write_outputs(path: str, values: Mapping[str, str]) -> None:
    """Append ``name=value`` lines (single-line values) to the ``GITHUB_OUTPUT`` file, all in
    one write (never half of them); a byte that is not UTF-8 (a path) is written ``\\xNN``.

    Raises: OSError when the file cannot be written."""
    text = "".join(f"{name}={shown(' '.join(str(value).splitlines()))}\n"
                   for name, value in values.items())
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)


def report_github(report: RunReport, env: Mapping[str, str] | None = None,
                  stderr: IO[str] | None = None) -> Path:
    """Write everything (see the module docstring); returns the artifacts directory."""
    env = os.environ if env is None else env
    err = stderr or sys.stderr
    directory = artifacts_dir(env)
    files = _safely(err, "artifacts", lambda: write_artifacts(report, directory)) or {}
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary:
        _safely(err, "job summary", lambda: _append(summary, markdown.summary(report)))
    for line in workflow_commands(report):
        print(line, file=err, flush=True)
    output = env.get("GITHUB_OUTPUT")
    if output:
        values = {
            "decision": report.decision,
            "fix-id": str((report.fix or {}).get("id") or ""),
            "patch-path": str(files.get("patch", "")),
            "error-id": report.event.id,
            "artifacts-dir": str(directory),
            "resolved": "true" if report.resolved else "false",
        }
        for name in ("artifacts-dir", "patch-path"):
            warning = not_utf8_warning(f"the step output {name}", values[name],
                                       "HEAL_ARTIFACTS_DIR (or RUNNER_TEMP)")
            if warning:
                print(warning, file=err, flush=True)
                break
        _safely(err, "step outputs", lambda: write_outputs(output, values))
    return directory


def report_passed(env: Mapping[str, str] | None = None) -> None:
    """The command passed the first time: outputs ``decision=none``, ``resolved=true`` (no
    summary, annotation or artifact: there is nothing to say)."""
    env = os.environ if env is None else env
    output = env.get("GITHUB_OUTPUT")
    if active(env) and output:
        try:
            # only these two (as the README says): an output not set reads as '' in the
            # workflow, so empty fix-id, patch-path and error-id would add nothing
            write_outputs(output, {"decision": "none", "resolved": "true"})
        except OSError as exc:
            print(f"heal: could not write the GitHub step outputs: {exc}", file=sys.stderr)


def _append(path: str, text: str) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)


def _safely(err: IO[str], what: str, action: Callable[[], object]) -> dict[str, Path] | None:
    """``action``, its failure said and isolated: the other files are written all the same."""
    try:
        result = action()
    except (OSError, ValueError) as exc:  # (ValueError: text a file's encoding cannot hold)
        print(f"heal: could not write the GitHub {what}: {exc}", file=err, flush=True)
        return None
    return result if isinstance(result, dict) else None
