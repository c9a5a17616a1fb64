"""Attack 13: the dedupe key ignored the fix parameters: six permission errors on six files,
only the first was fixed and the rest were "identical requests".

The request key includes the rendered fix (argv, steps or diff, hashed): the real validate
stage judges six chmod fixes for six files as six requests, and still refuses a true repeat.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import redis

from pipeline.config import Settings
from pipeline.demo.sample import git
from pipeline.events import CandidateEvent, ErrorEvent, Repo, Workflow
from pipeline.trust.attest import attest
from pipeline.validate.validator import Validator
from storage.attempts import AttemptStore
from storage.db import Database
from tests.integration._heal_validate_support import sample_repo


def _candidate(root: Path, script: str, fine: str) -> CandidateEvent:
    eid = f"dd-{uuid.uuid4().hex[:10]}"
    fix = {"id": "fs.permission_denied_exec/fix", "pattern_id": "fs.permission_denied_exec",
           "kind": "command", "category": "SAFE", "state": "ACTIVE", "title": "chmod +x",
           "rendered": {"argv": ["chmod", "+x", f"./{script}"], "timeout_s": 10}}
    # as heal run would publish it (the operator ran the command here): signed (pipeline.trust)
    err = attest(ErrorEvent(id=eid, text=f"bash: ./{script}: Permission denied",
                     command=(f"./{script}",), exit_code=126,
                     tags={"cwd": str(root), "mode": "auto-safe"},
                     repo=Repo(path=str(root), commit=git(root, "rev-parse", "HEAD"),
                               branch="main"), workflow=Workflow(id=f"wf-{eid}", step="s")),
                 Settings.from_env())
    return CandidateEvent(id=f"{eid}:lookup", error_id=eid, error=err, fine=fine,
                          params={"file": f"./{script}"}, fix=fix)


def test_six_permission_errors_on_six_files_are_six_requests(
    tmp_path: Path, redis_url: str, prefix: str, db: Database,
) -> None:
    root = sample_repo(tmp_path)
    scripts = [f"s{i}.sh" for i in range(6)]
    for name in scripts:
        (root / name).write_text("#!/bin/sh\nexit 0\n")
        (root / name).chmod(0o644)
    git(root, "add", *scripts)
    git(root, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "scripts")
    settings = Settings(redis_url=None, database_url=None, home=tmp_path / "home", prefix=prefix)
    validator = Validator(settings, redis.Redis.from_url(redis_url), AttemptStore(db))
    fine = f"fp-perm-{uuid.uuid4().hex[:8]}"  # one fingerprint for all six (as in the attack)
    # When six errors with the same fingerprint but different files are validated
    verdicts = [validator.validate(_candidate(root, name, fine)) for name in scripts]
    # Then none is refused as a duplicate of another
    assert not [v.reason for v in verdicts if "identical request" in v.reason]
    # And a true repeat (same file, same fix) still is
    again = validator.validate(_candidate(root, scripts[0], fine))
    assert "identical request" in again.reason
