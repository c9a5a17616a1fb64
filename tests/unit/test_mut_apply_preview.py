"""What an approval surface shows a fix will run (pipeline.apply.preview): long diffs are
cut at the documented size, odd shapes (no steps, a phase without steps, an action without
args) still give a plan, and nothing but the fix's own rendering is shown."""

from __future__ import annotations

from pipeline.apply.preview import MAX_DIFF_CHARS, describe_run, will_run


def test_a_long_diff_and_manifest_diff_are_cut_at_twenty_thousand_characters() -> None:
    assert MAX_DIFF_CHARS == 20_000
    long = "+" * 20_001
    assert will_run({"kind": "diff", "rendered": {"diff": long}}) == {"diff": "+" * 20_000}
    plan = will_run({"kind": "command", "rendered": {"argv": ["pip"], "manifest_diff": long}})
    assert plan == {"argv": ["pip"], "manifest_diff": "+" * 20_000}


def test_a_command_without_argv_or_manifest_diff_shows_an_empty_command() -> None:
    assert will_run({"kind": "command", "rendered": {"argv": None, "manifest_diff": ""}}) == {
        "argv": []}
    assert will_run({"kind": "command"}) == {"argv": []}
    assert describe_run({"kind": "command", "rendered": {"argv": [1, "a b"]}}) == [
        "  runs: 1 'a b'"]
    # a rendering that is not a mapping is ignored, not trusted
    assert will_run({"kind": "command", "rendered": ["rm", "-rf", "/"]}) == {"argv": []}


def test_a_diff_without_text_shows_an_empty_diff() -> None:
    assert will_run({"kind": "diff", "rendered": {}}) == {"diff": ""}
    assert describe_run({"kind": "diff"}) == ["  applies this diff:"]


def test_a_playbook_without_steps_or_with_an_empty_phase_shows_no_steps() -> None:
    assert will_run({"kind": "playbook"}) == {"steps": []}
    assert will_run({"kind": "playbook", "rendered": {"steps": {"primary": None}}}) == {
        "steps": []}
    assert describe_run({"kind": "playbook", "rendered": {"steps": {}}}) == []


def test_a_playbook_action_without_a_name_or_args_is_shown_with_empty_ones() -> None:
    fix = {"kind": "playbook", "rendered": {"steps": {"primary": [
        {"args": None}, {"name": "n", "argv": None}]}}}
    assert will_run(fix) == {"steps": [
        {"phase": "primary", "name": "", "action": "", "args": {}},
        {"phase": "primary", "name": "n", "argv": []}]}
    assert describe_run(fix) == ["  primary: : ", "  primary: n: "]
