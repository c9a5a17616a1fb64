"""Packs end to end (real PostgreSQL): a fix learned and verified in one installation is
exported with its statistics and provenance, imported into a fresh HEAL_HOME with its own
database, and offered there as DRAFT; a different fix for the same detection is a conflict,
reported and not merged; a seed file imports through the same code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.events import ErrorEvent, OutcomeEvent, Repo
from pipeline.learn.fixes import command_fix
from pipeline.learn.source import TaughtError
from pipeline.learn.teach import Lesson, Teacher, learned_fix_id
from pipeline.lifecycle.graduation import LifecyclePolicy
from pipeline.lifecycle.service import LifecycleService
from storage.engines import open_database
from storage.lifecycle import LifecycleStore
from storage.scratch import create_scratch_database
from tests.integration._stores import close_stores

WORKTREE = Path(__file__).resolve().parents[2]
TEXT = "ObsidianLatchError: latch {token} jammed after 14 turns at /opt/vault/door-2\n"


def letters() -> str:
    return "".join(chr(97 + int(c, 16)) for c in uuid.uuid4().hex[:10])



def test_an_exported_pack_is_offered_as_draft_in_a_fresh_installation(
    tmp_path: Path, heal_env: dict[str, str], database_url: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    token = letters()
    text = TEXT.format(token=token)
    db = open_database(Settings.from_env())
    try:
        taught = Teacher(db).teach(Lesson(TaughtError(f"e-{token}", text, ""),
                                          command_fix("touch latch.oiled"), name="latch"))
        error = ErrorEvent(id=f"e2-{token}", text=text, repo=Repo(path="/srv"))
        LifecycleService(LifecycleStore(db), None, None, LifecyclePolicy()).handle(
            OutcomeEvent(id=f"{error.id}:apply", error_id=error.id, error=error,
                         fine=taught.fingerprints[0], fix_id=taught.fix_id, status="applied"))
        assert db.fetchval("SELECT state FROM fixes WHERE id = $1", taught.fix_id) == "ACTIVE"
    finally:
        db.close()

    pack = tmp_path / "learned.yaml"
    assert main(["export", "--pack", str(pack)]) == 0
    doc = yaml.safe_load(pack.read_text())
    assert doc["heal_pack"] == 1 and doc["created_by"]
    (mine,) = [p for p in doc["patterns"] if p["id"] == taught.pattern_id]
    assert mine["fix"]["state"] == "ACTIVE" and mine["stats"]["successes"] == 1
    assert mine["provenance"]["error_id"] == f"e-{token}" and mine["name"] == "latch"

    # a fresh installation: its own HEAL_HOME and its own database
    url, drop = create_scratch_database(database_url, f"heal_pack_{uuid.uuid4().hex[:10]}")
    try:
        monkeypatch.setenv("HEAL_DATABASE_URL", url)
        monkeypatch.setenv("HEAL_HOME", str(tmp_path / "elsewhere"))
        assert main(["import", str(pack)]) == 0
        out = capsys.readouterr().out
        assert f"imported {taught.pattern_id} with fix {taught.fix_id} (DRAFT)" in out, out

        variant = tmp_path / "variant.txt"
        variant.write_text(text.replace("14 turns", "3 turns").replace("/opt/vault", "/mnt/v"))
        assert main(["diagnose", "--json", "--no-semantic", str(variant)]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["match"]["pattern_id"] == taught.pattern_id
        assert report["fix"]["id"] == taught.fix_id and report["fix"]["state"] == "DRAFT"

        # the same pack again: already known; the same detection with another fix: a conflict
        assert main(["import", str(pack)]) == 0
        assert "0 imported (DRAFT), " in capsys.readouterr().out
        mine["fix"]["argv"] = ["touch", "latch.greased"]
        mine["fix"]["id"] = learned_fix_id(taught.pattern_id, "command", {
            k: v for k, v in mine["fix"].items()
            if k not in ("id", "kind", "category", "state", "title", "explanation")})
        other = tmp_path / "other.yaml"
        other.write_text(yaml.safe_dump({**doc, "patterns": [mine]}))
        assert main(["import", "--json", str(other)]) == 1
        result = json.loads(capsys.readouterr().out)
        assert result["imported"] == [] and result["conflicts"][0]["held"] == taught.pattern_id
        db = open_database(Settings.from_env())
        try:
            fixes = db.fetch("SELECT id FROM fixes WHERE pattern_id = $1", taught.pattern_id)
        finally:
            db.close()
        assert [r["id"] for r in fixes] == [taught.fix_id]  # never merged

        # the seeds are a pack: a seed file imports through the same code (known here)
        seeds = Path(__file__).resolve().parents[2] / "seeds" / "net.yaml"
        assert main(["import", str(seeds)]) == 0
        assert "0 imported (DRAFT)" in capsys.readouterr().out
        bad = tmp_path / "bad.yaml"
        bad.write_text("patterns: [{id: Not An Id}]\n")
        assert main(["import", str(bad)]) == 2
        assert "must look like area.name" in capsys.readouterr().err
    finally:
        close_stores()
        drop()


def test_every_taught_fix_of_a_pattern_round_trips_with_its_own_stats_and_provenance(
    tmp_path: Path, heal_env: dict[str, str], database_url: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """Three fixes taught for one error (a command, an escalation, another command): the pack
    holds all three, each with its own outcomes and provenance, and importing it into a
    fresh installation gives the same pattern with the same fixes, the newest still served."""
    import time

    from pipeline.learn.fixes import escalate_fix

    token = letters()
    text = TEXT.format(token=token)
    error = TaughtError(f"e-{token}", text, "")
    db = open_database(Settings.from_env())
    try:
        teacher = Teacher(db)
        first = teacher.teach(Lesson(error, command_fix("touch marker.txt"), name="latch"))
        time.sleep(1.1)  # provenance times are to the second: three lessons, three times
        second = teacher.teach(Lesson(error, escalate_fix("ask the vault team")))
        time.sleep(1.1)
        newest = teacher.teach(Lesson(error, command_fix("touch z")))
        assert first.pattern_id == second.pattern_id == newest.pattern_id
        outcome = ErrorEvent(id=f"o-{token}", text=text, repo=Repo(path="/srv"))
        LifecycleService(LifecycleStore(db), None, None, LifecyclePolicy()).handle(
            OutcomeEvent(id=f"{outcome.id}:apply", error_id=outcome.id, error=outcome,
                         fine=first.fingerprints[0], fix_id=first.fix_id, status="applied"))
    finally:
        db.close()

    pack = tmp_path / "learned.yaml"
    assert main(["export", "--pack", str(pack)]) == 0
    assert "fix(es) to" in capsys.readouterr().err
    doc = yaml.safe_load(pack.read_text())
    (mine,) = [p for p in doc["patterns"] if p["id"] == first.pattern_id]
    assert mine["fix"]["id"] == newest.fix_id  # the newest is the one served
    fixes = [(mine["fix"], mine["stats"], mine["provenance"]),
             *((a, a["stats"], a["provenance"]) for a in mine["alternatives"])]
    assert [f["id"] for f, _s, _p in fixes] == [newest.fix_id, second.fix_id, first.fix_id]
    by_id = {f["id"]: (s, p) for f, s, p in fixes}
    for taught in (first, second, newest):  # each its own provenance, not the first lesson's
        stats, provenance = by_id[taught.fix_id]
        assert provenance["when"] == taught.provenance["when"]
        assert provenance["how"] == taught.kind
    assert len({by_id[t.fix_id][1]["when"] for t in (first, second, newest)}) == 3
    assert by_id[first.fix_id][0]["successes"] == 1 and by_id[newest.fix_id][0]["successes"] == 0

    # a fresh installation: its own HEAL_HOME and its own database
    before = _fixes_of(capsys, first.pattern_id)
    url, drop = create_scratch_database(database_url, f"heal_pack_{uuid.uuid4().hex[:10]}")
    try:
        monkeypatch.setenv("HEAL_DATABASE_URL", url)
        monkeypatch.setenv("HEAL_HOME", str(tmp_path / "elsewhere"))
        assert main(["import", str(pack)]) == 0
        out = capsys.readouterr().out
        for taught in (first, second, newest):
            assert f"imported {first.pattern_id} with fix {taught.fix_id} (DRAFT)" in out, out
        after = _fixes_of(capsys, first.pattern_id)
        assert after == [{**f, "state": "DRAFT"} for f in before]  # same fixes, all DRAFT

        # the newest is still the one offered
        variant = tmp_path / "variant.txt"
        variant.write_text(text.replace("14 turns", "3 turns"))
        assert main(["diagnose", "--json", "--no-semantic", str(variant)]) == 0
        assert json.loads(capsys.readouterr().out)["fix"]["id"] == newest.fix_id

        # exported again from here: the same fixes in the same order, their provenance kept
        again = tmp_path / "again.yaml"
        assert main(["export", "--pack", str(again)]) == 0
        capsys.readouterr()
        (theirs,) = [p for p in yaml.safe_load(again.read_text())["patterns"]
                     if p["id"] == first.pattern_id]
        assert [theirs["fix"]["id"], *(a["id"] for a in theirs["alternatives"])] == [
            newest.fix_id, second.fix_id, first.fix_id]
        assert theirs["alternatives"][1]["provenance"]["when"] == first.provenance["when"]
        assert theirs["alternatives"][1]["provenance"]["stats_elsewhere"]["successes"] == 1

        # the same pack again: known, nothing added
        assert main(["import", str(pack)]) == 0
        assert "0 imported (DRAFT), " in capsys.readouterr().out
        assert _fixes_of(capsys, first.pattern_id) == after
    finally:
        close_stores()
        drop()


def _fixes_of(capsys: pytest.CaptureFixture[str], pattern_id: str) -> list[dict[str, object]]:
    """The pattern's fixes as `heal export --format json` lists them (what matters to
    compare two installations: id, kind, category, state, title, explanation, template)."""
    assert main(["export", "--format", "json"]) == 0
    (pattern,) = [p for p in json.loads(capsys.readouterr().out)["patterns"]
                  if p["id"] == pattern_id]
    keys = ("id", "kind", "category", "state", "title", "explanation", "template")
    return [{k: f[k] for k in keys} for f in pattern["fixes"]]


def _escalation(pattern_id: str, detect: str) -> dict[str, object]:
    return {"id": pattern_id, "name": "n", "category": "RISKY", "detect": [{"regex": detect}],
            "fix": {"id": f"{pattern_id}/fix", "kind": "escalate", "category": "RISKY",
                    "title": "t", "explanation": "e", "message": "m"}}


def test_a_pack_naming_one_pattern_id_twice_is_refused_before_anything_is_stored(
    tmp_path: Path, heal_env: dict[str, str], capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a pack whose two patterns share an id (QA report qa_life, item 6)
    pid = f"dup.{letters()}"
    pack = tmp_path / "dupes.yaml"
    pack.write_text(yaml.safe_dump({"heal_pack": 1, "patterns": [
        _escalation(pid, "QAERR-DUP first"), _escalation(pid, "QAERR-DUP second")]}))
    # Then heal import refuses it naming the id, and stores neither
    assert main(["import", str(pack)]) == 2
    err = capsys.readouterr().err
    assert f'pattern id "{pid}" is given twice (patterns 0 and 1)' in err, err
    db = open_database(Settings.from_env())
    try:
        assert db.fetchval("SELECT count(*) FROM patterns WHERE id = $1", pid) == 0
    finally:
        db.close()
        close_stores()


def test_an_imported_pack_never_moves_a_fingerprint_mapped_to_another_pattern(
    tmp_path: Path, heal_env: dict[str, str], capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a fingerprint heal maps to a taught pattern
    token = letters()
    db = open_database(Settings.from_env())
    try:
        taught = Teacher(db).teach(Lesson(TaughtError(f"e-{token}", TEXT.format(token=token),
                                                      ""), command_fix("touch latch.oiled"),
                                          name="latch"))
    finally:
        db.close()
    fine = taught.fingerprints[0]
    # When a pack's pattern (a detection that never matches) claims it in its provenance
    # (QA report qa_life, item 7)
    hijack = {**_escalation(f"evil.{token}", f"NEVER-{token}"), "provenance": {"fine": fine}}
    pack = tmp_path / "hijack.yaml"
    pack.write_text(yaml.safe_dump({"heal_pack": 1, "patterns": [hijack]}))
    assert main(["import", "--json", str(pack)]) == 1
    result = json.loads(capsys.readouterr().out)
    # Then it is a conflict naming the pattern that holds the fingerprint, nothing is stored
    # and the fingerprint still leads to the taught pattern
    assert result["imported"] == []
    (conflict,) = result["conflicts"]
    assert conflict["held"] == taught.pattern_id and fine in conflict["why"]
    db = open_database(Settings.from_env())
    try:
        assert db.fetchval("SELECT pattern_id FROM pattern_fingerprints WHERE fingerprint = $1"
                           " AND level = 'fine'", fine) == taught.pattern_id
        assert db.fetchval("SELECT count(*) FROM patterns WHERE id = $1", hijack["id"]) == 0
    finally:
        db.close()
        close_stores()


def _heal(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    """The real CLI of this worktree in a process of its own."""
    return subprocess.run(
        [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())",
         *argv], cwd=WORKTREE, env={**os.environ, **env, "PYTHONPATH": str(WORKTREE)},
        capture_output=True, text=True, timeout=300, check=False)


def test_an_imported_fix_remembers_the_state_it_had_where_it_came_from(
        tmp_path: Path, heal_env: dict[str, str], database_url: str) -> None:
    # Given a pack whose fix is ACTIVE where it was learned (one verified success)
    token = letters()
    text = TEXT.format(token=token)
    db = open_database(Settings.from_env())
    try:
        taught = Teacher(db).teach(Lesson(TaughtError(f"e-{token}", text, ""),
                                          command_fix("touch latch.oiled"), name="latch"))
        error = ErrorEvent(id=f"e2-{token}", text=text, repo=Repo(path="/srv"))
        LifecycleService(LifecycleStore(db), None, None, LifecyclePolicy()).handle(
            OutcomeEvent(id=f"{error.id}:apply", error_id=error.id, error=error,
                         fine=taught.fingerprints[0], fix_id=taught.fix_id, status="applied"))
    finally:
        db.close()
    pack = tmp_path / "learned.yaml"
    done = _heal(heal_env, "export", "--pack", str(pack))
    assert done.returncode == 0, done.stderr
    (mine,) = [p for p in yaml.safe_load(pack.read_text())["patterns"]
               if p["id"] == taught.pattern_id]
    assert mine["fix"]["state"] == "ACTIVE"
    # When a fresh installation imports it (offered there as DRAFT) and exports its own pack
    url, drop = create_scratch_database(database_url, f"heal_pack_{uuid.uuid4().hex[:10]}")
    try:
        there = {**heal_env, "HEAL_DATABASE_URL": url, "HEAL_HOME": str(tmp_path / "there")}
        done = _heal(there, "import", str(pack))
        assert done.returncode == 0, done.stderr
        assert f"imported {taught.pattern_id} with fix {taught.fix_id} (DRAFT)" in done.stdout
        again = tmp_path / "again.yaml"
        done = _heal(there, "export", "--pack", str(again))
        assert done.returncode == 0, done.stderr
    finally:
        close_stores()
        drop()
    (theirs,) = [p for p in yaml.safe_load(again.read_text())["patterns"]
                 if p["id"] == taught.pattern_id]
    # Then its provenance says the fix was ACTIVE where it came from; here it is DRAFT
    assert theirs["fix"]["state"] == "DRAFT"
    assert theirs["provenance"]["state_elsewhere"] == "ACTIVE", theirs["provenance"]
    assert theirs["provenance"]["stats_elsewhere"]["successes"] == 1
