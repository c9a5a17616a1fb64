"""A failure the developer fixed by hand in the working tree (not committed yet) is not
flaky when a suggestion of it is applied and the step passes (QA s16d R4): real `heal run` /
`heal learn` / `heal apply` subprocesses on a real git repository and the embedded engines.
`heal run` records the working tree's digest with the error (``tags.tree_state``); the apply
stage compares it with the tree before its plain re-run. A changed tree is "resolved by a
change in the working tree": `skipped`, no determinism evidence. An unchanged tree (the step
passes because its environment changed, as a flaky step does) is still `flaky`; an event
without the tag keeps the older rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.apply.applier import Applier
from pipeline.config import Settings
from pipeline.treestate import TAG, tree_digest
from pipeline.trust.attest import attest
from pipeline.validate.validator import Validator
from tests.integration._heal_validate_support import candidate, sample_repo
from tests.integration._repos import git

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]

# fails while settings.txt (tracked) says "broken", or while the environment's marker (a file
# outside the repository) is missing: the first is fixed by hand, the second is "flakiness"
APP = """import os


class SettingsNotReadyError(Exception):
    pass


if open("settings.txt").read().strip() == "broken" or not os.path.exists({marker!r}):
    raise SettingsNotReadyError("settings of {token} are not ready")
"""


def _heal(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HEAL, *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env={**os.environ, **env, "PYTHONPATH": str(ROOT),
                                        "PYTHONDONTWRITEBYTECODE": "1"}, check=False)


def _run(env: dict[str, str], repo: Path, mode: str = "suggest") -> dict[str, Any]:
    """`heal run` of the failing step; its decision (``--json-file``)."""
    out = repo.parent / f"decision-{uuid.uuid4().hex[:6]}.json"
    done = _heal(env, repo, "run", "--json-file", str(out), "--timeout", "120", "--mode",
                 mode, "--", sys.executable, "-c", "import app")
    assert done.returncode == 1, done.stderr
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def _determinism(env: dict[str, str], repo: Path, fine: str) -> dict[str, Any]:
    explained = _heal(env, repo, "explain", fine, "--json")
    assert explained.returncode == 0, explained.stderr
    found: dict[str, Any] = json.loads(explained.stdout)["determinism"]
    return found


def test_a_failure_fixed_by_hand_in_the_working_tree_is_resolved_not_flaky(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    token = "".join(chr(97 + int(c, 16)) for c in uuid.uuid4().hex[:10])
    repo = tmp_path / "repo"
    repo.mkdir()
    marker = tmp_path / "environment-ready"
    marker.write_text("")
    git(repo, "init", "-q", "-b", "main")
    (repo / "app.py").write_text(APP.format(token=token, marker=str(marker)))
    (repo / "settings.txt").write_text("broken\n")
    (repo / ".gitignore").write_text("unused.flag\n")  # the taught command changes no file
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "app")
    env = {**heal_env, "HEAL_WORKFLOW": f"wf-{token}"}

    first = _run(env, repo)
    assert first["decision"] == "escalated", first
    taught = _heal(env, repo, "learn", "--last", "--command", "touch unused.flag")
    assert taught.returncode == 0, taught.stdout + taught.stderr
    fix_id = taught.stdout.split("fix        ", 1)[1].split()[0]

    # Given a suggestion of the failure
    suggested = _run(env, repo)
    assert suggested["decision"] == "suggested" and suggested["fix"]["id"] == fix_id, suggested
    fine = suggested["fingerprint"]
    before = _determinism(env, repo, fine)
    # When the developer fixes it by hand, does not commit, and applies the suggestion
    (repo / "settings.txt").write_text("ok\n")
    applied = _heal(env, repo, "apply", suggested["error_id"])
    # Then it is already resolved by the change in the working tree; not flaky, nothing ran
    assert applied.returncode == 1, applied.stdout + applied.stderr
    assert "skipped: already resolved" in applied.stdout, applied.stdout
    assert "resolved by a change in the working tree" in applied.stdout, applied.stdout
    assert "flaky:" not in applied.stdout
    assert not (repo / "unused.flag").exists()
    # And the fingerprint's determinism is untouched: no sleep-and-rerun playbook later
    after = _determinism(env, repo, fine)
    assert after["flaky"] is False and after["score"] == before["score"], (before, after)

    # A step that passes with the working tree as the error saw it (uncommitted changes
    # included: settings.txt stays "ok") while its environment changed is flaky
    marker.unlink()
    again = _run(env, repo, "auto-safe")  # another request: not deduped
    assert again["decision"] == "suggested", again["detail"]
    marker.write_text("")
    flaky = _heal(env, repo, "apply", again["error_id"])
    assert "flaky: the failing step passed" in flaky.stdout, flaky.stdout
    assert "working tree" not in flaky.stdout and "flaky: flaky:" not in flaky.stdout


def test_the_validate_path_compares_the_tree_too_and_an_untagged_event_keeps_the_old_rule(
        tmp_path: Path, validator: Validator, applier: Applier) -> None:
    root = sample_repo(tmp_path)
    (root / "settings.txt").write_text("broken\n")
    git(root, "add", "settings.txt")
    git(root, "commit", "-q", "-m", "settings")
    fix = {"id": "test.tree/fix", "pattern_id": "test.tree", "kind": "command",
           "category": "MODERATE", "state": "ACTIVE", "title": "touch",
           "rendered": {"argv": ["touch", "unused.flag"], "timeout_s": 30}}
    command = ("sh", "-c", "grep -qx ok settings.txt")
    cand = candidate(root, command, fix, mode="suggest")
    seen = tree_digest(root)
    assert seen is not None
    tagged = replace(cand, error=attest(replace(cand.error, tags={**cand.error.tags,
                                                                  TAG: seen}),
                                        Settings.from_env()))
    verdict = validator.validate(tagged)
    assert verdict.decision == "suggest", verdict.reason
    (root / "settings.txt").write_text("ok\n")  # fixed by hand, not committed
    # the apply stage's plain re-run passes: the tree changed, so resolved, not flaky
    outcome = applier.apply_suggested(replace(verdict, decision="apply"))
    assert outcome.status == "skipped", outcome.detail
    assert "resolved by a change in the working tree" in outcome.detail, outcome.detail
    # a verification whose "before" run passed in a worktree of the changed tree: the same
    rejected = replace(verdict, decision="reject", verification=[
        {"phase": "before", "name": "failing-command", "exit_code": 0}])
    outcome = applier.handle(replace(rejected, id=f"{rejected.id}-r"))
    assert outcome.status == "skipped", outcome.detail
    assert "resolved by a change in the working tree" in outcome.detail, outcome.detail

    # an event without the tag (another producer): the pass is flaky, as before
    plain = validator.validate(candidate(root, ("sh", "-c", "grep -qx nope settings.txt"),
                                         fix, mode="suggest"))
    assert plain.decision == "suggest", plain.reason
    rejected = replace(plain, decision="reject", verification=[
        {"phase": "before", "name": "failing-command", "exit_code": 0}])
    assert applier.handle(rejected).status == "flaky"


# fails while the dependency (in an ignored folder, as node_modules/ or a virtualenv's
# site-packages are) is missing: installing it changes no file `git status` lists
APP_DEP = """import sys

sys.path.insert(0, "deps")
try:
    import {token}_helper  # noqa: F401
except ImportError:
    raise SystemExit("DependencyMissingError: {token}_helper is not installed in deps/")
"""


def test_a_failure_fixed_by_installing_into_an_ignored_folder_is_resolved_not_flaky(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    token = "".join(chr(97 + int(c, 16)) for c in uuid.uuid4().hex[:10])
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "app.py").write_text(APP_DEP.format(token=token))
    (repo / ".gitignore").write_text("deps/\nunused.flag\n__pycache__/\n")
    (repo / "deps").mkdir()
    (repo / "deps" / "other.py").write_text("")  # the folder exists, ignored
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "app")
    env = {**heal_env, "HEAL_WORKFLOW": f"wf-{token}"}

    first = _run(env, repo)
    assert first["decision"] == "escalated", first
    taught = _heal(env, repo, "learn", "--last", "--command", "touch unused.flag")
    assert taught.returncode == 0, taught.stdout + taught.stderr
    suggested = _run(env, repo)
    assert suggested["decision"] == "suggested", suggested
    before = _determinism(env, repo, suggested["fingerprint"])
    # When the developer installs the dependency by hand (an ignored folder: git status is
    # unchanged) and applies the suggestion
    (repo / "deps" / f"{token}_helper.py").write_text("")
    status = git(repo, "status", "--porcelain")
    assert not status.strip(), status
    applied = _heal(env, repo, "apply", suggested["error_id"])
    # Then it is already resolved by that change; not flaky, nothing ran
    assert applied.returncode == 1, applied.stdout + applied.stderr
    assert "skipped: already resolved" in applied.stdout, applied.stdout
    assert "files git ignores changed" in applied.stdout, applied.stdout
    assert "flaky:" not in applied.stdout and not (repo / "unused.flag").exists()
    after = _determinism(env, repo, suggested["fingerprint"])
    assert after["flaky"] is False and after["score"] == before["score"], (before, after)


def _one_file_fix() -> dict[str, Any]:
    """A diff fix (verified in a worktree: a "before" run of the failing command there)."""
    tag = uuid.uuid4().hex[:8]
    return {"id": f"test.tree_{tag}/fix", "pattern_id": f"test.tree_{tag}", "kind": "diff",
            "category": "SAFE", "state": "ACTIVE", "title": "add a file",
            "rendered": {"diff": "--- /dev/null\n+++ b/gen1.txt\n@@ -0,0 +1 @@\n+generated\n"}}


def _tagged(cand: Any, root: Path) -> Any:
    seen = tree_digest(root)
    assert seen is not None
    return replace(cand, error=attest(replace(cand.error, tags={**cand.error.tags, TAG: seen}),
                                      Settings.from_env()))


def test_the_validate_path_compares_the_tree_its_before_run_saw_not_the_tree_at_apply(
        tmp_path: Path, validator: Validator, applier: Applier) -> None:
    root = sample_repo(tmp_path)
    (root / "settings.txt").write_text("broken\n")
    git(root, "add", "settings.txt")
    git(root, "commit", "-q", "-m", "settings")
    # Given a failure, fixed by hand (not committed) before verification took its snapshot
    cand = _tagged(candidate(root, ("sh", "-c", "grep -qx ok settings.txt"), _one_file_fix()),
                   root)
    (root / "settings.txt").write_text("ok\n")
    verdict = validator.validate(cand)
    assert verdict.decision == "reject", verdict.reason
    before = [r for r in verdict.verification if r.get("phase") == "before"]
    assert before and before[0]["exit_code"] == 0, verdict.verification
    # When the change is undone before the apply stage decides
    git(root, "checkout", "-q", "settings.txt")
    outcome = applier.handle(verdict)
    # Then the "before" run passed on the changed tree: resolved, not flaky
    assert outcome.status == "skipped", outcome.detail
    assert "resolved by a change in the working tree" in outcome.detail, outcome.detail

    # And a "before" run that passed on the error's own tree stays flaky, even when the tree
    # changed after verification (the change did not make that run pass)
    marker = tmp_path / "environment-ready"
    cand = _tagged(candidate(root, ("sh", "-c", f"test -f {marker}"), _one_file_fix()), root)
    marker.write_text("")  # the environment changes: a flaky pass
    verdict = validator.validate(cand)
    assert verdict.decision == "reject", verdict.reason
    (root / "settings.txt").write_text("edited after verification\n")
    outcome = applier.handle(verdict)
    assert outcome.status == "flaky", outcome.detail


def test_an_ignored_secret_is_not_read_into_the_digest(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    """QA s17b 14: the ignored part of ``tags.tree_state`` (events go to the stream, CI
    artifacts, the API) held a hash of the bytes of small ignored files such as ``.env``. It
    now counts an ignored file by its size and modification time: a ``.env`` whose bytes
    differ with the same size and time is the same tree (the pass is flaky, as with no
    change), while the install case above still tells an ignored change."""
    token = "".join(chr(97 + int(c, 16)) for c in uuid.uuid4().hex[:10])
    repo = tmp_path / "repo"
    repo.mkdir()
    marker = tmp_path / "environment-ready"
    git(repo, "init", "-q", "-b", "main")
    (repo / "app.py").write_text(APP.format(token=token, marker=str(marker)))
    (repo / "settings.txt").write_text("ok\n")
    (repo / ".gitignore").write_text("unused.flag\n.env\n__pycache__/\n")
    secret = repo / ".env"
    secret.write_text("DB_PASSWORD=hunter2\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "app")
    env = {**heal_env, "HEAL_WORKFLOW": f"wf-{token}"}
    first = _run(env, repo)
    assert first["decision"] == "escalated", first
    taught = _heal(env, repo, "learn", "--last", "--command", "touch unused.flag")
    assert taught.returncode == 0, taught.stdout + taught.stderr
    suggested = _run(env, repo, "auto-safe")
    assert suggested["decision"] == "suggested", suggested["detail"]
    when = secret.stat().st_mtime_ns
    secret.write_text("DB_PASSWORD=hunter3\n")  # other bytes, same size and time
    os.utime(secret, ns=(when, when))
    marker.write_text("")  # the environment changed: the step passes now
    applied = _heal(env, repo, "apply", suggested["error_id"])
    assert "files git ignores changed" not in applied.stdout, applied.stdout
    assert "flaky: the failing step passed" in applied.stdout, applied.stdout
