"""What ``heal run`` is doing while the operator waits: one stderr line per phase.

Printed only where a person (or a CI log) reads it: standard error is a terminal, or ``CI``
is set (GitHub Actions, GitLab, Buildkite, CircleCI... all set it). Never on standard
output, so the command's own output stays the command's. ``HEAL_PROGRESS=0`` silences it,
``HEAL_PROGRESS=1`` forces it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any

from pipeline.runtime.hooks import Delivery, Hook

#: stage -> the phase line printed when it takes its first event in this process
STAGE_PHASES = {
    "fingerprint": "fingerprinting the error…",
    "lookup": "looking up…",
    "validate": "validating the fix…",
    "apply": "acting on the verdict…",
    "lifecycle": "recording the outcome…",
}


def wanted(stream: IO[str], environ: Mapping[str, str] | None = None) -> bool:
    """Whether phase lines should be printed on ``stream``."""
    env = os.environ if environ is None else environ
    forced = env.get("HEAL_PROGRESS", "")
    if forced in ("0", "1"):
        return forced == "1"
    if env.get("CI", "").strip().lower() not in ("", "0", "false"):
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """Prints each distinct phase once, as ``heal: <phase>`` on standard error."""

    def __init__(self, out: IO[str] | None = None, enabled: bool | None = None) -> None:
        self.out = out or sys.stderr
        self.enabled = wanted(self.out) if enabled is None else enabled
        self.seen: list[str] = []

    def phase(self, message: str) -> None:
        if not self.enabled or message in self.seen:
            return
        self.seen.append(message)
        print(f"heal: {message}", file=self.out, flush=True)

    def hook(self) -> Hook:
        return PhaseHook(self)


class PhaseHook(Hook):
    """Runtime hook: the first event a stage takes prints that stage's phase."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def before_handle(self, stage: str, event: Any, delivery: Delivery) -> None:
        message = STAGE_PHASES.get(stage)
        if message:
            self.progress.phase(message)

    def after_handoff(self, stage: str, acked: int, emitted: int, duplicates: int) -> None:
        """Nothing: one line per phase, not per batch."""


def phase_hooks(progress: Progress | None) -> Sequence[Hook]:
    return [progress.hook()] if progress is not None and progress.enabled else []
