"""CI providers: what ``heal run`` leaves for GitHub Actions and GitLab CI (job summary,
annotations, step outputs, patch and decision artifacts, Code Quality report).

:func:`report_ci` is the one entry point ``heal run`` calls after a failure was decided; it
detects the provider from its documented environment variables and does nothing elsewhere.
"""

from __future__ import annotations

import os
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
    if "github" in found:
        github.report_github(report, env)
    if "gitlab" in found:
        gitlab.report_gitlab(report, env)
    return found


__all__ = ["RunReport", "collect", "providers", "report_ci"]
