"""CI providers: what ``heal run`` leaves for GitHub Actions and GitLab CI (job summary,
annotations, step outputs, patch and decision artifacts, Code Quality report).

:func:`report_ci` is the one entry point ``heal run`` calls after a failure was decided; it
detects the provider from its documented environment variables and does nothing elsewhere.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from pipeline.ci.report import RunReport, collect


def providers(env: Mapping[str, str] | None = None) -> list[str]:
    """The CI providers detected in ``env`` ("github", "gitlab")."""
    from pipeline.ci import github, gitlab

    env = os.environ if env is None else env
    return [name for name, mod in (("github", github), ("gitlab", gitlab)) if mod.active(env)]


def report_ci(report: RunReport, env: Mapping[str, str] | None = None) -> list[str]:
    """Write the detected providers' files and annotations; returns the providers served."""
    from pipeline.ci import github, gitlab

    env = os.environ if env is None else env
    found = providers(env)
    # each provider on its own: GitHub's trouble never costs GitLab its report
    for name, write in (("github", github.report_github), ("gitlab", gitlab.report_gitlab)):
        if name in found:
            try:
                write(report, env)
            except Exception as exc:  # noqa: BLE001 - a report never changes CMD's status
                print(f"heal: could not write the {name} report ({type(exc).__name__}: {exc})",
                      file=sys.stderr, flush=True)
    return found


__all__ = ["RunReport", "collect", "providers", "report_ci"]
