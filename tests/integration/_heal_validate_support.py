"""Shared helpers of the validate/apply integration tests (not a test module)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.demo.sample import create_repo, git
from pipeline.events import CandidateEvent, ErrorEvent, Repo, Workflow
from pipeline.trust.attest import attest
from pipeline.validate.runner import run_argv

FORMAT_FIX = {"id": "format.ruff_format", "pattern_id": "format.ruff_format", "kind": "command",
              "category": "SAFE", "state": "ACTIVE", "title": "Run ruff format",
              "rendered": {"argv": ["ruff", "format", "."], "timeout_s": 60}}
LINT_FIX = {"id": "lint.ruff_fixable", "pattern_id": "lint.ruff_fixable", "kind": "command",
            "category": "SAFE", "state": "ACTIVE", "title": "Apply ruff's safe fixes",
            "rendered": {"argv": ["ruff", "check", "--fix", "."], "timeout_s": 60}}


def lock_fix(lock: Path) -> dict[str, Any]:
    return {"id": "git.index_lock", "pattern_id": "git.index_lock", "kind": "playbook",
            "category": "MODERATE", "state": "ACTIVE", "title": "Remove the stale index.lock",
            "rendered": {"steps": {
                "diagnosis": [{"name": "lock exists", "argv": ["test", "-f", str(lock)],
                               "timeout_s": 5}],
                "primary": [{"name": "remove the lock", "argv": ["rm", "-f", str(lock)],
                             "timeout_s": 5}],
                "validate": [{"name": "index readable", "argv": ["git", "status"],
                              "timeout_s": 30}]}}}


def sample_repo(tmp: Path) -> Path:
    return create_repo(tmp / "shop")


def candidate(root: Path, command: tuple[str, ...], fix: dict[str, Any] | None,
              mode: str = "auto-safe", fine: str = "", params: dict[str, Any] | None = None,
              ) -> CandidateEvent:
    """Run ``command`` (it must fail) and build the candidate lookup would emit."""
    run = run_argv(list(command), str(root), 60)
    assert run["exit_code"] != 0, run
    eid = f"it-{uuid.uuid4().hex[:10]}"
    tags: dict[str, Any] = {"cwd": str(root)}
    if mode:
        tags["mode"] = mode
    # the test ran the command itself, as heal run does: it signs the event as the operator
    err = attest(ErrorEvent(id=eid, text=run["tail"], command=command, exit_code=run["exit_code"],
                     repo=Repo(path=str(root), commit=git(root, "rev-parse", "HEAD"),
                               branch="main"),
                     workflow=Workflow(id=f"wf-{eid}", step="s"), tags=tags),
                 Settings.from_env())
    return CandidateEvent(id=f"{eid}:lookup", error_id=eid, error=err,
                          fine=fine or f"fp-{eid}", params=params or {}, fix=fix)


@dataclass
class Suggested:
    """A verified ``ruff format`` suggestion waiting in a sample repository (see
    :func:`suggested_format_fix`); ``db`` is the caller's to close."""

    settings: Settings
    client: Any
    db: Any
    store: Any
    fix_id: str
    root: Path
    verdict: Any


def suggested_format_fix(tmp_path: Path, redis_url: str, tag: str) -> Suggested:
    """A sample repository with a formatting error, validated and handled in mode suggest:
    its fix (id ``format.ruff_format.<tag><random>``) waits for ``heal apply`` / approval."""
    import redis

    from pipeline.apply.applier import Applier
    from pipeline.demo.sample import break_formatting
    from pipeline.validate.validator import Validator
    from storage.attempts import AttemptStore
    from storage.engines import open_database

    settings = Settings.from_env()
    client = redis.Redis.from_url(redis_url)
    db = open_database(settings)
    store = AttemptStore(db)
    fix_id = f"format.ruff_format.{tag}{uuid.uuid4().hex[:6]}"
    root = sample_repo(tmp_path)
    break_formatting(root)
    cand = candidate(root, ("ruff", "format", "--check", "."), {**FORMAT_FIX, "id": fix_id},
                     mode="suggest")
    verdict = Validator(settings, client, store).validate(cand)
    assert Applier(settings, client, store).handle(verdict).status == "suggested"
    return Suggested(settings, client, db, store, fix_id, root, verdict)
