"""Learning from precedent: when a workflow step that failed with a fingerprint later
succeeds, and the repository changed in between, someone (an agent or a person) fixed it.
The diff between the failing and the passing commit becomes a DRAFT fix for that fingerprint.
A DRAFT is never applied as is: it goes through validation like any other fix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.gitops import GitRepo

#: a precedent diff larger than this is not a fix worth learning (a release, a merge)
MAX_DIFF_BYTES = 100_000


@dataclass(frozen=True)
class StepFailure:
    workflow: str
    step: str
    fingerprint: str
    repo_path: str
    commit: str


class PrecedentStore(Protocol):
    def remember_failure(self, failure: StepFailure) -> None: ...
    def failures_for_step(self, workflow: str, step: str) -> list[StepFailure]: ...
    def forget_failure(self, failure: StepFailure) -> None: ...
    def save_draft(self, draft: dict[str, Any]) -> bool: ...


def commit_diff(repo_path: str, from_commit: str, to_commit: str) -> str:
    """Unified diff between two commits. Raises GitError (unknown commit, not a repo)."""
    return GitRepo(repo_path).run("diff", "--no-color", "--no-ext-diff", from_commit,
                                  to_commit).stdout


def draft_fix(failure: StepFailure, to_commit: str, diff: str) -> dict[str, Any]:
    """The DRAFT fix, in the shape of ``CandidateEvent.fix``."""
    ident = hashlib.sha256(
        f"{failure.fingerprint}|{failure.commit}|{to_commit}".encode()).hexdigest()[:16]
    return {
        "id": f"precedent-{ident}", "pattern_id": None, "kind": "diff", "category": "RISKY",
        "state": "DRAFT", "fingerprint": failure.fingerprint,
        "workflow": failure.workflow, "step": failure.step, "repo_path": failure.repo_path,
        "from_commit": failure.commit, "to_commit": to_commit,
        "title": f"learned from {failure.workflow}/{failure.step}: "
                 f"{failure.commit[:10]}..{to_commit[:10]}",
        "explanation": "the step failed on the first commit and passed on the second; "
                       "this is the change between them",
        "rendered": {"diff": diff},
    }


class PrecedentLearner:
    def __init__(self, store: PrecedentStore,
                 diff: Callable[[str, str, str], str] = commit_diff) -> None:
        self.store = store
        self.diff = diff

    def observe(self, workflow: str, step: str, ok: bool, repo_path: str, commit: str,
                fingerprint: str = "") -> list[dict[str, Any]]:
        """Record one step result; returns the DRAFT fixes learned from it (maybe none).

        Raises:
            GitError: the commits cannot be diffed.
        """
        if not ok:
            if fingerprint and commit:
                self.store.remember_failure(
                    StepFailure(workflow, step, fingerprint, repo_path, commit))
            return []
        learned = []
        for failure in self.store.failures_for_step(workflow, step):
            self.store.forget_failure(failure)
            if not commit or failure.commit == commit or not failure.repo_path:
                continue  # same code passed: flaky, not fixed; nothing to learn
            diff = self.diff(failure.repo_path, failure.commit, commit)
            try:
                size = len(diff.encode())
            except UnicodeEncodeError:  # a byte not UTF-8 (a Latin-1 file, see GitRepo.run):
                continue  # a diff fix is UTF-8 text; nothing to learn from this one
            if not diff.strip() or size > MAX_DIFF_BYTES:
                continue
            draft = draft_fix(failure, commit, diff)
            if self.store.save_draft(draft):
                learned.append(draft)
        return learned
