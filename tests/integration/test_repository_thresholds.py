"""A repository's heal.toml cannot set the thresholds that decide shared state (a fix's
lifecycle, the shared breaker) and may only tighten its own guardrails (QA report qa_s14b,
D1); `heal policy` shows what the operator's side capped and why (D1, D3). On the real
lifecycle stage, embedded PostgreSQL and Redis, and the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from consumers.lifecycle import LifecycleHandler
from pipeline.config import Settings
from pipeline.demo.sample import create_repo, git
from pipeline.events import ErrorEvent, OutcomeEvent, Repo, Workflow
from storage.db import Database
from storage.reports import ReportStore

WORKTREE = Path(__file__).resolve().parents[2]

#: the QA's hostile heal.toml: graduate anything, never trip, never gate
HOSTILE = """mode = "auto-safe"
[lifecycle]
min_attempts = 1
automate_threshold = 0.0
[breaker]
global_threshold = 1000
step_threshold = 1000
[execution]
min_auto_confidence = 0.0
[budget]
automatic_fixes = 100000
[limits]
dedupe_minutes = 0
"""


def _repo(tmp_path: Path, name: str, policy: str) -> Path:
    root = create_repo(tmp_path / name)
    (root / "heal.toml").write_text(policy)
    git(root, "add", "heal.toml")
    git(root, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "policy")
    return root


def _failed(root: Path, fp: str, fix_id: str, n: int) -> OutcomeEvent:
    error = ErrorEvent(id=f"{fp}-{n}", text="bash: ./run.sh: Permission denied",
                       workflow=Workflow(id=f"w-{fp}", step="s"),
                       repo=Repo(path=str(root), commit="c1"))
    return OutcomeEvent(id=f"{error.id}:apply", error_id=error.id, error=error, fine=fp,
                        fix_id=fix_id, status="failed", detail="did not survive verification")


def _pair_state(db: Database, fp: str, fix_id: str) -> str:
    rows = [r for r in ReportStore(db).fix_stats([fp]) if r["fix_id"] == fix_id]
    return str(rows[0]["state"]) if rows else ""


def _fix(db: Database) -> str:
    fix_id, pattern = f"fs.perm-{uuid.uuid4().hex[:8]}", "fs.permission_denied_exec"
    db.execute("INSERT INTO patterns (id) VALUES ($1) ON CONFLICT DO NOTHING", pattern)
    db.execute("INSERT INTO fixes (id, pattern_id, kind, category, state) VALUES ($1, $2,"
               " 'command', 'SAFE', 'ACTIVE')", fix_id, pattern)
    return fix_id


def test_a_repository_heal_toml_cannot_graduate_a_failing_fix_or_loosen_the_breaker(
        tmp_path: Path, db: Database, stage_settings: Settings,
        lifecycle_stage: Callable[[Settings], LifecycleHandler],
        operator_toml: Callable[[str], Path]) -> None:
    # Given a repository whose heal.toml asks to graduate anything after one attempt
    root = _repo(tmp_path, "glob1", HOSTILE)
    fix_id, fp = _fix(db), f"fp-v1:perm{uuid.uuid4().hex[:8]}"
    stage = lifecycle_stage(stage_settings)
    # When two failed outcomes of a fix in that repository go through the lifecycle stage
    for n in range(2):
        stage.handle(_failed(root, fp, fix_id, n))
    # Then the fix did not graduate, for the pair or globally, and the shared breaker keeps
    # the operator's (here the default) thresholds
    assert _pair_state(db, fp, fix_id) != "AUTOMATED"
    assert db.fetchval("SELECT state FROM fixes WHERE id = $1", fix_id) != "AUTOMATED"
    breaker = stage.service.breaker
    assert breaker is not None
    assert (breaker.config.global_threshold, breaker.config.step_threshold) == (5, 2)
    assert (stage.service.policy.min_attempts, stage.service.policy.automate_threshold) == \
        (10, 0.9)

    # When the operator's configuration sets [lifecycle] and [breaker] (hot reloaded)
    operator_toml("[lifecycle]\nmin_attempts = 3\n[breaker]\nglobal_threshold = 7\n")
    stage.handle(_failed(root, fp, fix_id, 2))
    # Then the stage uses the operator's values, the repository's still ignored
    assert stage.service.policy.min_attempts == 3
    assert stage.service.policy.automate_threshold == 0.9
    assert breaker.config.global_threshold == 7 and breaker.config.step_threshold == 2
    assert _pair_state(db, fp, fix_id) != "AUTOMATED"


def _heal_policy(repo: Path, home: Path, operator: Path) -> tuple[dict[str, Any], str]:
    env = {**os.environ, "HEAL_HOME": str(home), "HEAL_CONFIG": str(operator),
           "PYTHONPATH": str(WORKTREE)}
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())",
         "policy", "--repo", str(repo), "--json"],
        cwd=WORKTREE, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout), run.stderr


def _operator_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "operator.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_heal_policy_shows_the_thresholds_the_operator_capped_and_why(tmp_path: Path) -> None:
    # Given the hostile heal.toml, one tighter value, and an operator configuration that
    # sets its own [execution] floor and [lifecycle] value
    root = _repo(tmp_path, "glob1", HOSTILE.replace(
        "min_auto_confidence = 0.0\n",
        "min_auto_confidence = 0.0\ndegraded_confidence_bonus = 0.2\n"))
    operator = _operator_file(tmp_path, "[execution]\nmin_auto_confidence = 0.5\n"
                                        "[lifecycle]\nmin_attempts = 20\n")
    # When `heal policy --repo` shows it
    report, err = _heal_policy(root, tmp_path / "home", operator)
    rows = {r["key"]: r for r in report["keys"]}
    # Then the keys deciding shared state show the operator's value, the file's request and
    # the reason, and stderr warns naming each key
    grad = rows["lifecycle.min_attempts"]
    assert (grad["value"], grad["source"], grad["requested"]) == (20, "operator", 1)
    assert "only operator configuration may set it" in grad["reason"]
    thr = rows["lifecycle.automate_threshold"]
    assert (thr["value"], thr["source"], thr["requested"]) == (0.9, "operator", 0.0)
    brk = rows["breaker.global_threshold"]
    assert (brk["value"], brk["source"], brk["requested"]) == (5, "operator", 1000)
    # and a looser guardrail is replaced by the operator's (or the default) value
    conf = rows["execution.min_auto_confidence"]
    assert (conf["value"], conf["source"], conf["requested"]) == (0.5, "operator", 0.0)
    assert "looser than the operator's value" in conf["reason"]
    assert "may only raise it" in conf["reason"]
    fixes = rows["budget.automatic_fixes"]
    assert (fixes["value"], fixes["source"], fixes["requested"]) == (20, "operator", 100000)
    assert "looser than the default" in fixes["reason"]
    dedupe = rows["limits.dedupe_minutes"]
    assert (dedupe["value"], dedupe["source"], dedupe["requested"]) == (10, "operator", 0)
    # while a tighter one is the repository's
    assert (rows["execution.degraded_confidence_bonus"]["value"],
            rows["execution.degraded_confidence_bonus"]["source"]) == (0.2, "file")
    for key in ("lifecycle.min_attempts", "breaker.global_threshold",
                "execution.min_auto_confidence", "budget.automatic_fixes",
                "limits.dedupe_minutes"):
        assert f"heal: heal.toml: {key} = " in err, err
    assert "execution.degraded_confidence_bonus" not in err

    # When the operator allows a looser value than the default, the repository gets it
    report, _ = _heal_policy(root, tmp_path / "home", _operator_file(
        tmp_path, "[limits]\ndedupe_minutes = 0\n[execution]\nmin_auto_confidence = 0.0\n"))
    rows = {r["key"]: r for r in report["keys"]}
    assert (rows["limits.dedupe_minutes"]["value"],
            rows["limits.dedupe_minutes"]["source"]) == (0, "file")
    assert (rows["execution.min_auto_confidence"]["value"],
            rows["execution.min_auto_confidence"]["source"]) == (0, "file")


def test_heal_policy_says_an_unallowed_check_capped_the_mode_and_marks_it_not_run(
        tmp_path: Path) -> None:
    # Given mode = "auto" and a check whose argv the operator (max_mode auto-safe) did not
    # allow (QA report qa_s14b, D3)
    root = _repo(tmp_path, "evil", 'mode = "auto"\n[[verify.checks]]\nname = "pwn"\n'
                                   'argv = ["sh", "-c", "touch pwned"]\n'
                                   '[[verify.checks]]\nname = "ok"\nargv = ["make", "test"]\n')
    operator = _operator_file(tmp_path, '[trust]\nmax_mode = "auto-safe"\n'
                                        'commands = [["make", "test"]]\n')
    report, _ = _heal_policy(root, tmp_path / "home", operator)
    rows = {r["key"]: r for r in report["keys"]}
    # Then the mode row gives the true reason for suggest: the unallowed check, not the
    # auto-safe ceiling
    mode = rows["mode"]
    assert (mode["value"], mode["source"], mode["requested"]) == ("suggest", "operator", "auto")
    assert "repository check is not allowed by the operator" in mode["reason"]
    assert '["pwn"]' in mode["reason"] and "auto-safe" not in mode["reason"]
    # and the check is marked not run, the allowed one is not
    checks = {c["name"]: c for c in rows["verify.checks"]["value"]}
    assert checks["pwn"]["status"] == "not run (not allowed by the operator)"
    assert "status" not in checks["ok"]

    # When the repository asks for no more than the ceiling allows without the check,
    # the reason is still the ceiling where that is what capped the mode
    (root / "heal.toml").write_text('mode = "auto"\n')
    report, _ = _heal_policy(root, tmp_path / "home", operator)
    mode = {r["key"]: r for r in report["keys"]}["mode"]
    assert mode["value"] == "auto-safe" and "trust.max_mode" in mode["reason"]
