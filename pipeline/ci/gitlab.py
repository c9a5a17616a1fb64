"""GitLab CI: what ``heal run`` leaves for the job when ``GITLAB_CI=true``.

* ``gl-code-quality-report.json`` (in ``$CI_PROJECT_DIR``, or ``$HEAL_CODE_QUALITY_REPORT``):
  GitLab's Code Quality format (a JSON array of ``{"description", "check_name",
  "fingerprint", "severity", "location": {"path", "lines": {"begin"}}}``) holding the errors
  heal did NOT resolve. Several ``heal run`` steps in one job merge into one report; a step
  that was healed removes its own entry.
* ``decision.json``, ``fix.patch``, ``pr-comment.md`` under ``$HEAL_ARTIFACTS_DIR`` (default
  ``$CI_PROJECT_DIR/heal-artifacts``), and ``heal.env`` there for ``artifacts:reports:dotenv``
  (``HEAL_DECISION``, ``HEAL_FIX_ID``, ``HEAL_PATCH_PATH``, ``HEAL_ERROR_ID``).

The template job is ``deploy/ci/gitlab-heal.yml``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from pipeline.ci.artifacts import not_utf8_warning, shown, write_artifacts
from pipeline.ci.report import RunReport
from pipeline.console import visible

REPORT_NAME = "gl-code-quality-report.json"
CHECK_NAME = "heal"


def active(env: Mapping[str, str]) -> bool:
    return env.get("GITLAB_CI", "").lower() == "true"


def _project(env: Mapping[str, str]) -> Path:
    return Path(env.get("CI_PROJECT_DIR") or ".")


def report_path(env: Mapping[str, str]) -> Path:
    return Path(env.get("HEAL_CODE_QUALITY_REPORT") or _project(env) / REPORT_NAME)


def artifacts_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("HEAL_ARTIFACTS_DIR") or _project(env) / "heal-artifacts")


def issue_fingerprint(report: RunReport) -> str:
    """Stable across runs of the same error: heal's own fine fingerprint when known (the
    outcome's, else the one computed for the report: the headline is the error's own line,
    with the numbers and ids that differ from run to run)."""
    fine = report.outcome.fine if report.outcome is not None else ""
    base = fine or report.local_fine or (
        report.headline + "\0" + " ".join(report.event.command))
    return hashlib.sha256(base.encode("utf-8", "replace")).hexdigest()[:32]


def code_quality_issue(report: RunReport) -> dict[str, Any]:
    # (a file outside the checkout is no path GitLab can show: the job definition then)
    file, line = report.checkout_location()
    fix = report.fix or {}
    detail = report.outcome.detail if report.outcome is not None else report.note
    description = f"{report.headline} — heal: {report.decision}"
    if fix.get("id"):
        description += f" (fix {fix['id']})"
    if detail:
        description += f": {detail}"
    return {
        # (control and bidirectional characters written out, as in every CI report)
        "description": visible(description)[:1000],
        "check_name": CHECK_NAME,
        "fingerprint": issue_fingerprint(report),
        "severity": "major" if report.decision in ("escalated", "none", "failed") else "minor",
        # GitLab needs a path; an error with no project frame belongs to the job definition
        "location": {"path": file or ".gitlab-ci.yml", "lines": {"begin": line or 1}},
    }


def update_code_quality(report: RunReport, path: Path) -> list[dict[str, Any]]:
    """Merge this run into the report at ``path`` (an unreadable or non-array file is
    replaced) and return the issues written.

    Raises: OSError when the file cannot be written.
    """
    issues: list[dict[str, Any]] = []
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(loaded, list):
            issues = [i for i in loaded if isinstance(i, dict)]
    except (OSError, ValueError):
        issues = []
    mine = issue_fingerprint(report)
    issues = [i for i in issues if i.get("fingerprint") != mine]
    if not report.resolved:
        issues.append(code_quality_issue(report))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(issues, indent=2) + "\n", encoding="utf-8")
    return issues


def dotenv(report: RunReport, files: Mapping[str, Path]) -> str:
    values = {
        "HEAL_DECISION": report.decision,
        "HEAL_FIX_ID": str((report.fix or {}).get("id") or ""),
        "HEAL_PATCH_PATH": str(files.get("patch", "")),
        "HEAL_ERROR_ID": report.event.id,
    }
    # (a path that is not UTF-8 written \xNN: heal.env is UTF-8 text)
    return "".join(f"{k}={shown(' '.join(v.split()))}\n" for k, v in values.items())


def report_gitlab(report: RunReport, env: Mapping[str, str] | None = None,
                  stderr: IO[str] | None = None) -> Path:
    """Write the Code Quality report and the artifacts; returns the artifacts directory."""
    env = os.environ if env is None else env
    err = stderr or sys.stderr
    directory = artifacts_dir(env)
    # each file on its own: one that cannot be written leaves the others written
    try:
        update_code_quality(report, report_path(env))
    except (OSError, ValueError) as exc:
        print(f"heal: could not write the GitLab Code Quality report: {exc}", file=err,
              flush=True)
    try:
        files = write_artifacts(report, directory)
        warning = not_utf8_warning("the dotenv HEAL_PATCH_PATH", str(files.get("patch", "")),
                                   "HEAL_ARTIFACTS_DIR (or CI_PROJECT_DIR)")
        if warning:
            print(warning, file=err, flush=True)
        (directory / "heal.env").write_text(dotenv(report, files), encoding="utf-8")
    except (OSError, ValueError) as exc:
        print(f"heal: could not write the GitLab artifacts: {exc}", file=err, flush=True)
    return directory
