"""Pure parts of teaching: the fixes a person can teach, the pattern a lesson becomes, the
lessons of hooks, packs on disk, and the report's renderings."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from pipeline.errors import UsageError
from pipeline.learn.fixes import command_fix, escalate_fix, playbook_fix
from pipeline.learn.lessons import lesson_fix
from pipeline.learn.packs import read_pack
from pipeline.learn.source import TaughtError
from pipeline.learn.teach import Lesson, draft_pattern
from pipeline.lookup.catalog import parse_pattern
from pipeline.operator import render_report

TEXT = "Traceback (most recent call last):\nKilnColdError: kiln 4 is 120 degrees too cold\n"


@pytest.mark.parametrize("argv", ["make; rm -rf /", "cat x | grep y", "echo $HOME", "rm *.pyc",
                                  "ls ~/x", "a && b", "bash -c 'make'", "sh -ec make", ""])
def test_shell_syntax_and_shell_strings_are_refused(argv: str) -> None:
    with pytest.raises(UsageError, match="--command"):
        command_fix(argv)


def test_a_command_is_a_literal_argv_verified_in_a_worktree() -> None:
    fix = command_fix("npm ci --prefix 'web app'")
    assert fix.template["argv"] == ["npm", "ci", "--prefix", "web app"]
    assert fix.template["literal"] is True and fix.template["verify_in_worktree"] is True


def test_playbooks_are_checked_like_the_seeds(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("steps:\n  primary:\n    - {name: rebuild, argv: [make, cache]}\n"
                    "  validate:\n    - {name: rerun, action: rerun}\n")
    assert playbook_fix(str(good)).template["steps"]["primary"][0]["argv"] == ["make", "cache"]
    for body, match in (("- a\n", "a mapping"), ("steps: {validate: []}\n", "primary"),
                        ("steps:\n  primary:\n    - {name: x, argv: [make, '>', log]}\n",
                         "shell syntax"),
                        ("steps: {primary: [1]}\n", r"steps\.primary\[0\] must be a mapping")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(body)
        with pytest.raises(UsageError, match=match):
            playbook_fix(str(bad))
    with pytest.raises(UsageError, match="cannot read"):
        playbook_fix(str(tmp_path / "missing.yaml"))


def test_a_step_with_neither_argv_nor_action_is_named_by_its_place(tmp_path: Path) -> None:
    book = tmp_path / "book.yaml"
    book.write_text("steps:\n  primary:\n    - {name: a, argv: [make]}\n    - {argv: [make, b]}\n"
                    "    - {timeout_s: 5}\n")
    with pytest.raises(UsageError) as caught:
        playbook_fix(str(book))
    message = str(caught.value)
    assert "steps.primary[2] has neither argv nor action" in message, message
    assert "add argv: [program, arguments...] or action: one of rerun, sleep" in message
    assert "None" not in message and "(" + "'" not in message
    book.write_text("steps:\n  primary:\n    - {name: wait, action: snooze}\n")
    with pytest.raises(UsageError, match=r'steps\.primary\[0\] \("wait"\) names an unknown '
                                         r'action "snooze"'):
        playbook_fix(str(book))
    book.write_text("steps:\n  primary:\n    - {name: w, action: sleep, timeout_s: 0}\n")
    with pytest.raises(UsageError, match=r'steps\.primary\[0\] \("w"\) timeout_s 0 is outside'):
        playbook_fix(str(book))


def test_pack_values_are_spelled_as_yaml_not_as_python(tmp_path: Path) -> None:
    """A value read from YAML is shown as YAML/JSON spells it (true, ["funday"]), never as
    a Python repr (True, ['funday'])."""
    base = ("patterns:\n  - id: t.kiln\n    name: kiln\n    category: MODERATE\n"
            "    description: d\n    detect: [{regex: KilnColdError}]\n")
    cases = [
        ("    fix: {kind: command, state: yes, argv: [relight]}\n", "fix state true is not one of"),
        ("    fix: {kind: command, argv: [relight, '{funday}']}\n",
         'undeclared params "funday"'),
        ("    fix: {kind: playbook, steps: {primary: [{name: x}]}}\n",
         'steps.primary[0] ("x") has neither argv nor action'),
    ]
    for fix, expected in cases:
        pack = tmp_path / "pack.yaml"
        pack.write_text(base + fix)
        with pytest.raises(UsageError) as caught:
            read_pack(pack)
        message = str(caught.value)
        assert expected in message, message
        assert "True" not in message and "['" not in message and "None" not in message
    pack.write_text("heal_pack: true\n" + base + "    fix: {kind: escalate, message: m}\n")
    with pytest.raises(UsageError, match=r"pack version true \(heal_pack\); this heal reads"):
        read_pack(pack)


def test_a_lesson_becomes_a_valid_draft_pattern_with_provenance() -> None:
    now = dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC)
    raw, taught = draft_pattern(Lesson(TaughtError("e-1", TEXT, ""), command_fix("relight"),
                                       name="kiln", who="ada"), now)
    pattern = parse_pattern(raw)
    assert pattern.fix.state.value == "DRAFT" and pattern.category.value == "MODERATE"
    assert pattern.detect(TEXT.replace("4", "9").replace("120", "7")) is not None
    assert pattern.detect("KilnColdError: oven 4 is fine") is None
    assert taught.provenance == {"who": "ada", "when": "2026-11-30T12:00:00+00:00",
                                 "source": "heal learn", "error_id": "e-1",
                                 "fine": taught.fingerprints[0], "coarse": raw_coarse(raw),
                                 "repo": "", "error_was": "unmatched", "how": "command"}
    assert raw["name"] == "kiln" and taught.pattern_id.startswith("learned.h")


def raw_coarse(raw: dict[str, object]) -> object:
    from pipeline.fingerprint import fingerprint_text

    return fingerprint_text(TEXT).coarse


def test_safe_needs_yes_and_a_reason_and_an_escalation_is_risky() -> None:
    error = TaughtError("e-1", TEXT, "")
    with pytest.raises(UsageError, match="--yes"):
        draft_pattern(Lesson(error, command_fix("relight"), category="SAFE"))
    with pytest.raises(UsageError, match="--yes"):
        draft_pattern(Lesson(error, command_fix("relight"), category="SAFE", confirmed=True))
    _, taught = draft_pattern(Lesson(error, command_fix("relight"), category="safe",
                                     confirmed=True, reason="only warms the kiln"))
    assert taught.category == "SAFE"
    _, taught = draft_pattern(Lesson(error, escalate_fix("call facilities")))
    assert taught.category == "RISKY"
    with pytest.raises(UsageError, match="category 'HUGE'"):
        draft_pattern(Lesson(error, command_fix("relight"), category="HUGE"))
    with pytest.raises(UsageError, match="does not match the error"):
        draft_pattern(Lesson(error, command_fix("relight"), regex=r"OvenError \d{1,3}"))
    _, taught = draft_pattern(Lesson(error, command_fix("relight"), regex=r"KilnColdError"))
    assert taught.regex == "KilnColdError"


def test_hook_lessons_are_commands_when_they_name_a_program() -> None:
    assert lesson_fix({"fix": "python3 -m pip --version"}).kind == "command"  # type: ignore[union-attr]
    assert lesson_fix({"fix": "ask infra to rotate the key"}).kind == "escalate"  # type: ignore[union-attr]
    assert lesson_fix({"error": "x"}) is None
    with pytest.raises(UsageError, match="fix_kind"):
        lesson_fix({"fix": "x", "fix_kind": "magic"})


def test_packs_are_validated_before_anything_is_stored(tmp_path: Path) -> None:
    seeds = Path(__file__).resolve().parents[2] / "seeds" / "git.yaml"
    assert read_pack(seeds)["patterns"]
    for body, match in (("patterns: 3\n", "a 'patterns:' list"), ("heal_pack: 9\npatterns: []\n",
                        "version 9"), ("patterns: [{id: a.b, category: MEH, fix: {kind: escalate,"
                                       " message: m}}]\n", 'category "MEH"'), (":\n", "YAML")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(body)
        with pytest.raises(UsageError, match=match):
            read_pack(bad)


def _report() -> dict[str, object]:
    return {"window": "7d", "since": "2026-11-23T00:00:00+00:00", "errors": 4,
            "outcomes": {"applied": 2}, "auto_resolved": 1, "applied_on_request": 1,
            "auto_resolved_rate": 0.25, "auto_resolved_target": 0.8, "mttr_s": 42.0,
            "mttr_target_s": 300.0, "false_positive_rate": 0.0,
            "healings": [{"error": "KilnColdError: <b>hot</b> | pipe", "fix_id": "f1", "tier": 1,
                          "time_to_fix_s": 42.0, "auto": True, "verification": "ok"}],
            "escalations": [{"error": "X", "fix_id": None, "reason": "no known fix"}],
            "learning": {"new_patterns": [], "graduations": [], "quarantines": [],
                         "top_unmatched": []}}


def test_report_renderings_escape_and_stay_self_contained() -> None:
    data = _report()
    page = render_report.render_html(data)
    assert "&lt;b&gt;hot&lt;/b&gt;" in page and "<b>hot" not in page
    assert "<script" not in page and "href=" not in page and "25.0%" in page
    md = render_report.render_markdown(data)
    assert "\\| pipe" in md and "## Healings (1)" in md and "None." in md
    text = render_report.render_text(data)
    assert "auto-resolved        1 (25.0%; target 80.0%)" in text and "MTTR" in text


@pytest.mark.parametrize("argv", [
    ["learn", "--last", "--command", "touch a", "--command", "touch b"],
    ["learn", "--last", "--command", "touch a", "--name", "x", "--name", "y"],
    ["export", "--pack", "a.yaml", "--pack", "b.yaml"],
])
def test_an_option_taking_one_value_given_twice_is_bad_usage(
        argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import main

    with pytest.raises(SystemExit) as exited:
        main(argv)  # refused while parsing: before any engine or file is touched
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "given twice" in err and "it takes one value" in err, err


def test_a_taught_command_whose_arguments_leave_the_repository_is_refused(
        tmp_path: Path) -> None:
    """The pre-flight's own check (fix_escape), made at teach time: no denylist of names."""
    from pipeline.learn.fixes import check_stays_inside

    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "out").symlink_to(tmp_path)
    for text, why in (("rm -rf /", "path '/' is outside the repository"),
                      (f"touch {tmp_path}/x", "is outside the repository"),
                      ("touch ../x", "contains '..'"),
                      ("touch out/x", "out is a symlink to"),
                      ("cp x --target-directory=/etc", "path '/etc' is outside")):
        with pytest.raises(UsageError, match="acts only inside the repository") as caught:
            check_stays_inside(command_fix(text), root)
        assert why in str(caught.value), caught.value
    for text in ("touch marker.txt", "rm -rf build", f"touch {root}/src/x", "make -j4 all"):
        check_stays_inside(command_fix(text), root)  # inside: taught as before
    # without a repository, any absolute path or '..' is refused
    with pytest.raises(UsageError, match="absolute or contains '..'"):
        check_stays_inside(command_fix("touch /tmp/x"), None)
    check_stays_inside(command_fix("touch x"), None)
    with pytest.raises(UsageError, match="absolute or contains '..'"):
        check_stays_inside(command_fix("cp x --target-directory=/tmp"), None)
    # a playbook's steps are checked the same way
    book = tmp_path / "book.yaml"
    book.write_text("steps:\n  primary:\n    - {name: a, argv: [make]}\n"
                    "    - {name: b, argv: [rm, -rf, /]}\n")
    with pytest.raises(UsageError, match="path '/' is outside"):
        check_stays_inside(playbook_fix(str(book)), root, "--playbook book.yaml")
    # and every lesson (reviews, hooks) through the one path, with the error's repository
    error = TaughtError("e-1", TEXT, "", repo=str(root))
    with pytest.raises(UsageError, match="the taught command: path '/' is outside"):
        draft_pattern(Lesson(error, command_fix("rm -rf /")))
    draft_pattern(Lesson(error, command_fix("touch marker.txt")))


def test_a_pack_carries_every_fix_of_a_pattern_each_with_its_own_extras(tmp_path: Path) -> None:
    from pipeline.learn.packs import build_pack, fix_count

    def row(fix_id: str, kind: str, template: dict[str, object], when: str) -> dict[str, object]:
        return {"id": "kiln.cold", "name": "kiln", "category": "MODERATE",
                "description": "d", "detection": [{"regex": "KilnColdError"}], "params": {},
                "examples": [TEXT], "source": "learned", "priority": 90,
                "provenance": {"when": "first lesson"}, "fix_id": fix_id, "kind": kind,
                "fix_category": "MODERATE", "fix_state": "DRAFT", "title": "t",
                "explanation": "e", "template": template,
                "fix_provenance": {"when": when, "how": kind}}

    rows = [row("kiln.cold.command_b", "command", {"argv": ["touch", "z"], "literal": True},
                "3"),
            row("kiln.cold.diff_a", "diff", {"diff": "--- a/x\n+++ b/x\n", "literal": True},
                "2"),
            row("kiln.cold.escalate_c", "escalate", {"message": "ask"}, "1")]
    pack = build_pack(rows, {"kiln.cold.diff_a": {"successes": 2, "failures": 0,
                                                      "reverts": 0}}, "ada")
    (pattern,) = pack["patterns"]
    assert fix_count(pack) == 3 and pattern["fix"]["id"] == "kiln.cold.command_b"
    assert pattern["provenance"] == {"when": "3", "how": "command", "source": "learned"}
    assert [(a["id"], a["provenance"]["when"], a["stats"]["successes"])
            for a in pattern["alternatives"]] == [("kiln.cold.diff_a", "2", 2),
                                                  ("kiln.cold.escalate_c", "1", 0)]
    assert list(pattern)[-3:] == ["alternatives", "stats", "provenance"]
    # read back: a diff and an escalation are valid alternatives in a pack
    from pipeline.learn.packs import parse_pack_pattern, write_pack

    path = tmp_path / "pack.yaml"
    write_pack(path, pack)
    clean, fixes = parse_pack_pattern(read_pack(path)["patterns"][0])
    assert "alternatives" not in clean and [f.fix["kind"] for f in fixes] == [
        "command", "diff", "escalate"]
    assert [f.provenance["when"] for f in fixes] == ["3", "2", "1"]
    # an invalid alternative is named by its place
    pattern["alternatives"][1] = {"id": "kiln.cold.x", "kind": "command"}
    write_pack(path, pack)
    with pytest.raises(UsageError, match=r"alternatives\[1\]: .*needs argv"):
        read_pack(path)
