"""Attack 7: a symlink in the working directory let a chmod fix change a file outside the
repository, while the verdict said "the fix changed nothing".

Every path a fix touches is walked with ``lstat`` from the repository root and from the
directory the fix runs in; a symlink leaving the tree is refused with the reason in the
verdict, and checked again when the fix is applied.
"""

from __future__ import annotations

import stat
import uuid
from pathlib import Path

import redis

from pipeline.apply.applier import Applier
from pipeline.config import Settings
from pipeline.demo.sample import git
from pipeline.events import CandidateEvent, ErrorEvent, Repo, VerdictEvent, Workflow
from pipeline.policy import Policy
from pipeline.trust.attest import attest
from pipeline.validate.paths import path_problem
from pipeline.validate.validator import Validator
from storage.attempts import AttemptStore
from storage.db import Database
from tests.integration._heal_validate_support import sample_repo

CHMOD_FIX = {"id": "fs.permission_denied_exec/fix", "pattern_id": "fs.permission_denied_exec",
             "kind": "command", "category": "SAFE", "state": "ACTIVE",
             "title": "Set the executable bit",
             "rendered": {"argv": ["chmod", "+x", "./run.sh"], "timeout_s": 10}}


def _attack(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A repository whose sub-directory holds run.sh -> a file outside the repository."""
    root = sample_repo(tmp_path)
    outside = tmp_path / "outside" / "victim.sh"
    outside.parent.mkdir()
    outside.write_text("echo victim\n")
    outside.chmod(0o644)
    work = root / "tools"
    work.mkdir()
    (work / "run.sh").symlink_to(outside)
    return root, work, outside


def _candidate(root: Path, work: Path) -> CandidateEvent:
    eid = f"sym-{uuid.uuid4().hex[:10]}"
    # as heal run would publish it (the operator ran the command here): signed (pipeline.trust)
    err = attest(ErrorEvent(id=eid, text="bash: ./run.sh: Permission denied", command=("./run.sh",),
                     exit_code=126, tags={"cwd": str(work), "mode": "auto-safe"},
                     repo=Repo(path=str(root), commit=git(root, "rev-parse", "HEAD"),
                               branch="main"), workflow=Workflow(id=f"wf-{eid}", step="s")),
                 Settings.from_env())
    return CandidateEvent(id=f"{eid}:lookup", error_id=eid, error=err, fine=f"fp-{eid}",
                          params={"file": "./run.sh"}, fix=CHMOD_FIX)


def test_path_problem_names_the_symlink_seen_from_the_working_directory(
    tmp_path: Path,
) -> None:
    root, work, outside = _attack(tmp_path)
    # from the root, ./run.sh does not exist: the old check passed it
    assert path_problem(root, "./run.sh", Policy()) is None
    problem = path_problem(root, "./run.sh", Policy(), work)
    assert problem is not None and "symlink" in problem and str(outside) in problem


def test_a_chmod_through_a_symlink_is_refused_with_the_reason_in_the_verdict(
    tmp_path: Path, redis_url: str, prefix: str, db: Database,
) -> None:
    root, work, outside = _attack(tmp_path)
    settings = Settings(redis_url=None, database_url=None, home=tmp_path / "home", prefix=prefix)
    client = redis.Redis.from_url(redis_url)
    store = AttemptStore(db)
    # When the real validate stage judges the chmod fix
    verdict = Validator(settings, client, store).validate(_candidate(root, work))
    # Then it is refused, the verdict names the symlink, and the outside file is untouched
    assert verdict.decision != "apply"
    assert "symlink" in verdict.reason and "outside" in verdict.reason, verdict.reason
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644
    # And an approved verdict forged for it (or a symlink planted after validation) is
    # refused again when applied
    forged = VerdictEvent(id=f"{verdict.error_id}:validate", error_id=verdict.error_id,
                          error=verdict.error, fine=verdict.fine, fix=CHMOD_FIX,
                          params={"file": "./run.sh"}, decision="apply", reason="forged")
    outcome = Applier(settings, client, store).handle(forged)
    assert outcome.status == "escalated" and "symlink" in outcome.detail, outcome.detail
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644
