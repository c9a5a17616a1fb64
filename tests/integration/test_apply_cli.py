"""`heal apply FIX_ID [--dry-run] [--force]` on a verified suggestion (real engines)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from pipeline.apply.applier import Applier
from pipeline.cli import main
from pipeline.config import Settings
from pipeline.demo.sample import break_formatting, git
from pipeline.validate.runner import run_argv
from pipeline.validate.validator import Validator
from storage.attempts import AttemptStore
from storage.engines import open_database
from tests.integration._heal_validate_support import (
    FORMAT_FIX,
    candidate,
    sample_repo,
    suggested_format_fix,
)


def test_heal_apply_dry_run_then_apply_then_nothing_left(
        tmp_path: Path, heal_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    s = suggested_format_fix(tmp_path, heal_env["HEAL_REDIS_URL"], "t")
    db, fix_id, root, verdict = s.db, s.fix_id, s.root, s.verdict
    head = git(root, "rev-parse", "HEAD")

    # --dry-run shows the verified commit and changes nothing
    assert main(["apply", fix_id, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"verified commit {verdict.commit[:12]}" in out and "dry run" in out
    assert git(root, "rev-parse", "HEAD") == head

    # apply brings the verified commit onto main and the failing command passes
    assert main(["apply", fix_id]) == 0
    assert "applied" in capsys.readouterr().out
    assert git(root, "rev-parse", "HEAD") != head
    assert run_argv(["ruff", "format", "--check", "."], str(root), 60)["exit_code"] == 0

    # a second apply finds nothing waiting (exit 1, not bad usage): never applied twice, and
    # says so as the approvals API does: already decided, with the status and when
    assert main(["apply", fix_id]) == 1
    err = capsys.readouterr().err
    assert f"{fix_id!r} was already decided: applied (at 20" in err, err
    assert main(["apply", verdict.error_id]) == 1
    assert "already decided: applied (at " in capsys.readouterr().err
    db.close()


def test_heal_apply_of_a_decided_or_empty_id_says_why(
        tmp_path: Path, heal_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """An empty id is bad usage (exit 2); a suggestion already applied or rejected is
    'already decided: <status> (at <time>)' (exit 1), as `POST /api/approvals` says."""
    assert main(["apply", ""]) == 2
    assert "name what to apply" in capsys.readouterr().err
    assert main(["apply", "  "]) == 2
    capsys.readouterr()
    s = suggested_format_fix(tmp_path, heal_env["HEAL_REDIS_URL"], "r")
    db, store, fix_id, root, verdict = s.db, s.store, s.fix_id, s.root, s.verdict
    head = git(root, "rev-parse", "HEAD")
    # rejected (as the dashboard's reject button does)
    assert store.record_apply(verdict.error_id, {"fix_id": fix_id, "status": "rejected",
                                                 "detail": "no"}, replace_suggested=True)
    for name in (verdict.error_id, fix_id):
        assert main(["apply", name]) == 1
        err = capsys.readouterr().err
        assert f"{name!r} was already decided: rejected (at 20" in err, err
        assert "no verified suggestion waiting" not in err
    assert git(root, "rev-parse", "HEAD") == head  # nothing applied
    db.close()


def test_heal_apply_unknown_id_exits_1_and_says_what_is_waiting(
        heal_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["apply", "no.such.fix"]) == 1
    err = capsys.readouterr().err
    assert "no verified suggestion waiting for 'no.such.fix'" in err
    assert "waiting to be applied" in err or "nothing is waiting to be applied" in err


def test_heal_apply_takes_the_pattern_id_of_the_one_waiting_fix(
        tmp_path: Path, heal_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings.from_env()
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    db = open_database(settings)
    store = AttemptStore(db)
    pattern = f"format.ruff_format_t{uuid.uuid4().hex[:6]}"
    root = sample_repo(tmp_path)
    break_formatting(root)
    cand = candidate(root, ("ruff", "format", "--check", "."),
                     {**FORMAT_FIX, "id": f"{pattern}/fix"}, mode="suggest")
    verdict = Validator(settings, client, store).validate(cand)
    assert Applier(settings, client, store).handle(verdict).status == "suggested"
    # the pattern id (as in `heal apply --help`) names its one waiting fix
    assert main(["apply", pattern, "--dry-run"]) == 0
    assert f"fix {pattern}/fix" in capsys.readouterr().out
    # --json: one object (compact: stdout is not a terminal here)
    assert main(["apply", pattern, "--dry-run", "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    result = json.loads(out)
    assert result["status"] == "dry_run" and result["fix"]["id"] == f"{pattern}/fix"
    assert result["verified_commit"] == verdict.commit
    # and the unknown-id message lists it among what is waiting
    assert main(["apply", "no.such.fix"]) == 1
    assert f"{pattern}/fix" in capsys.readouterr().err
    db.close()


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main(list(argv)) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _seed_fix(capsys: pytest.CaptureFixture[str], fix_id: str) -> dict[str, Any]:
    export = _json(capsys, "export", "--format", "json")
    (fix,) = [f for p in export["patterns"] for f in p["fixes"] if f["id"] == fix_id]
    return dict(fix)


def test_heal_apply_is_visible_in_explain_metrics_and_export(
        tmp_path: Path, heal_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings.from_env()
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    db = open_database(settings)
    store = AttemptStore(db)
    fix_id = "format.ruff_format/fix"  # a seeded fix: export lists its statistics
    before_fix = _seed_fix(capsys, fix_id)
    before = _json(capsys, "metrics", "--json")["windows"]["24h"]["outcomes"].get("applied", 0)
    root = sample_repo(tmp_path)
    break_formatting(root)
    fine = f"fp-v1:ac{uuid.uuid4().hex[:14]}"
    cand = candidate(root, ("ruff", "format", "--check", "."), {**FORMAT_FIX, "id": fix_id},
                     mode="suggest", fine=fine)
    verdict = Validator(settings, client, store).validate(cand)
    assert Applier(settings, client, store).handle(verdict).status == "suggested"

    # When a person applies the suggestion (by its error id)
    assert main(["apply", verdict.error_id]) == 0
    capsys.readouterr()

    # Then explain tells the outcome, not "apply with", and the pair's statistics count it
    story = _json(capsys, "explain", fine, "--json")
    assert story["why"].startswith("last outcome applied") and "apply with" not in story["why"]
    assert [o["status"] for o in story["outcomes"]] == ["applied"]
    (stat,) = [s for s in story["fix_stats"] if s["fix_id"] == fix_id]
    assert stat["successes"] == 1
    # metrics and export count it too
    after = _json(capsys, "metrics", "--json")["windows"]["24h"]["outcomes"].get("applied", 0)
    assert after == before + 1
    fix = _seed_fix(capsys, fix_id)
    assert fix["successes"] == before_fix["successes"] + 1
    assert fix["attempts"] == before_fix["attempts"] + 1
    db.close()


def test_heal_apply_of_a_change_already_on_the_branch_says_so_without_git_hints(
        tmp_path: Path, heal_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """Given a verified suggestion whose change was then committed by hand (another commit
    on top, so heal cherry-picks), when `heal apply` runs, then it reports `skipped: already
    applied: nothing to do` (exit 1: nothing to do), leaves the branch and tree as they were
    and passes none of git's advice on (`git cherry-pick --continue` for a cherry-pick heal
    has aborted)."""
    s = suggested_format_fix(tmp_path, heal_env["HEAL_REDIS_URL"], "h")
    root = s.root
    assert run_argv(["ruff", "format", "."], str(root), 60)["exit_code"] == 0
    git(root, "commit", "-qam", "format by hand")
    (root / "scratch-untracked.txt").write_text("x\n")  # git status would list it, with advice
    head = git(root, "rev-parse", "HEAD")
    assert main(["apply", s.fix_id]) == 1
    out = capsys.readouterr().out
    assert "skipped: already applied: nothing to do" in out, out
    assert "escalated" not in out and "could not apply" not in out
    for advice in ("--continue", "cherry-pick --skip", "(use ", "On branch", "Untracked"):
        assert advice not in out, out
    assert git(root, "rev-parse", "HEAD") == head
    assert not (root / ".git" / "CHERRY_PICK_HEAD").exists()
    assert git(root, "status", "--porcelain", "--untracked-files=no") == ""
    # the suggestion is decided: a second apply finds nothing waiting
    assert main(["apply", s.fix_id]) == 1
    assert "already decided: skipped" in capsys.readouterr().err
    s.db.close()
