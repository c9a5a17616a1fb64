"""What the validate and apply stages say (real git repositories, real stages on the embedded
engines): a fix refused by the judges after it passed verification is not a failed fix and
leaves no heal branch; a fix that was not kept names the files its steps left; a diff that
does not apply says git's reason, bounded; a suggestion names the error id to apply."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

from pipeline.apply.applier import Applier
from pipeline.demo.sample import git
from pipeline.validate.validator import Validator
from tests.integration._heal_validate_support import candidate, sample_repo


def _fix(argv: list[str], category: str = "SAFE", kind: str = "command") -> dict[str, object]:
    tag = uuid.uuid4().hex[:8]
    return {"id": f"test.words_{tag}/fix", "pattern_id": f"test.words_{tag}", "kind": kind,
            "category": category, "state": "ACTIVE", "title": "test fix",
            "rendered": {"argv": argv, "timeout_s": 30}}


def test_a_verified_fix_the_judges_refuse_is_escalated_not_failed_and_its_branch_is_gone(
        tmp_path: Path, validator: Validator, applier: Applier) -> None:
    root = sample_repo(tmp_path)
    # Given a MODERATE diff that fixes the step but touches more files than the judge allows
    diff = "".join(f"--- /dev/null\n+++ b/gen{i}.txt\n@@ -0,0 +1 @@\n+generated\n"
                   for i in range(1, 9))
    fix = {**_fix([]), "kind": "diff", "category": "MODERATE", "rendered": {"diff": diff}}
    cand = candidate(root, ("sh", "-c", "test -f gen1.txt"), fix)
    verdict = validator.validate(cand)
    assert verdict.decision == "reject", verdict.reason
    assert any(r.get("phase") == "after" for r in verdict.verification)  # it was verified
    assert verdict.reason.startswith("judges refused: blast-radius:"), verdict.reason
    # Then heal's branch is discarded, and the decision says so
    assert git(root, "branch", "--list", "heal/*") == ""
    assert "heal branch heal/" in verdict.reason and "discarded" in verdict.reason
    assert verdict.branch == ""
    outcome = applier.handle(verdict)
    # And the outcome says what happened, and does not count it as the fix failing
    assert outcome.status == "escalated", outcome.detail
    assert outcome.detail.startswith("passed verification, then refused"), outcome.detail
    assert "did not survive verification" not in outcome.detail


def test_a_command_fix_that_is_not_kept_names_the_files_it_left(
        tmp_path: Path, validator: Validator, applier: Applier) -> None:
    root = sample_repo(tmp_path)
    # Given a MODERATE command (run only when applied) that does not fix the step
    fix = _fix(["touch", "left-behind.lock"], category="MODERATE")
    verdict = validator.validate(candidate(root, ("sh", "-c", "exit 3"), fix, mode="suggest"))
    assert verdict.decision == "suggest", verdict.reason
    outcome = applier.apply_suggested(replace(verdict, decision="apply"))
    assert outcome.status == "escalated", outcome.detail
    # Then the detail does not claim the steps were validated, and names what they left
    assert "validated" not in outcome.detail, outcome.detail
    assert "but the failing step still fails (exit 3)" in outcome.detail, outcome.detail
    assert "left left-behind.lock in the working tree" in outcome.detail, outcome.detail


def test_a_suggestion_names_the_error_id_to_apply_it_with(
        tmp_path: Path, validator: Validator, applier: Applier) -> None:
    root = sample_repo(tmp_path)
    fix = _fix(["touch", "x.flag"], category="MODERATE")
    verdict = validator.validate(candidate(root, ("sh", "-c", "exit 3"), fix, mode="suggest"))
    assert verdict.decision == "suggest"
    assert f"run `heal apply {verdict.error_id}` to apply" in verdict.reason, verdict.reason
    assert f"heal apply {fix['id']}" not in verdict.reason
    outcome = applier.handle(verdict)
    assert outcome.detail.endswith(f"apply with: heal apply {verdict.error_id}"), outcome.detail


def test_a_diff_that_does_not_apply_says_gits_reason_not_its_progress(
        tmp_path: Path, validator: Validator) -> None:
    root = sample_repo(tmp_path)
    (root / "Makefile").write_text("all:\n\techo here\n")
    git(root, "add", "Makefile")
    git(root, "commit", "-q", "-m", "make")
    # Given a diff made in another repository, whose Makefile said something else
    diff = ("--- a/Makefile\n+++ b/Makefile\n@@ -1,2 +1,2 @@\n all:\n"
            "-\techo other-repository-secret-line\n+\techo fixed\n")
    fix = {**_fix([]), "kind": "diff", "category": "MODERATE", "rendered": {"diff": diff}}
    verdict = validator.validate(candidate(root, ("sh", "-c", "exit 2"), fix, mode="suggest"))
    assert verdict.decision == "reject"
    # Then the reason is git's, and nothing of the other repository's file is quoted
    assert "applies: patch does not apply: patch failed: Makefile:1" in verdict.reason, \
        verdict.reason
    everything = verdict.reason + repr(verdict.preflight)
    assert "Checking patch" not in everything
    assert "other-repository-secret-line" not in everything
    (applies,) = [c for c in verdict.preflight if c["name"] == "applies"]
    assert len(applies["reason"]) <= 330
