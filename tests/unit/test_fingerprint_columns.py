"""Which columns of a mined cluster are variables (pipeline/fingerprint/columns.py): decided
by the shape of the values and by columns varying together, with the one shipped config."""

from __future__ import annotations

from pipeline.fingerprint.cluster import mine, render, tokenize
from pipeline.fingerprint.columns import column_kind
from pipeline.fingerprint.rules import DEFAULT_NORMALIZER


def templates(messages: list[str]) -> dict[str, str]:
    tokens = {m: tokenize(DEFAULT_NORMALIZER.normalize(m)) for m in messages}
    mined = mine(tokens.values())
    return {m: render(mined[t]) for m, t in tokens.items()}


def test_value_shapes_are_told_apart_by_the_part_that_varies() -> None:
    # a key's value, digits, paths, dotted names and mostly-masked values are data
    assert column_kind({"user=root", "user=guest"}) == "data"
    assert column_kind({"QQ.10018", "Music.17988"}) == "data"
    assert column_kind({"/srv/a", "/srv/b"}) == "data"
    assert column_kind({"com.example.alpha", "com.example.beta.gamma"}) == "data"
    assert column_kind({"[<*>,<*>]-<*>.txt", "[<*>,<*>]-<*>.xml"}) == "data"
    # one value is another with a masked part: the rules masked that slot once
    assert column_kind({"chdir(<*>)", "chdir(pwd)"}) == "glob"
    # program identifiers and plain words
    assert column_kind({"Device::start", "Device::stop"}) == "code"
    assert column_kind({"TASK_SETUP", "JOB_ABORT"}) == "code"
    assert column_kind({"mach-lookup", "network-outbound"}) == "code"
    assert column_kind({"cyrus", "news", "test"}) == "word"
    # the shared prefix does not decide: '(uid=<*>)' vs 'LOGIN(uid=<*>)' varies in a word
    assert column_kind({"(uid=<*>)", "LOGIN(uid=<*>)"}) == "word"


def test_a_key_value_slot_is_a_variable_with_three_values() -> None:
    out = templates([f"authentication failure; rhost=<ip> user={u}"
                     for u in ("root", "guest", "test")])
    assert set(out.values()) == {"authentication failure; rhost=<*> <*>"}


def test_a_slot_masked_in_one_message_is_a_variable_in_the_other() -> None:
    out = templates(["LOGIN chdir(/home/u/run) failed: No such file or directory",
                     "LOGIN chdir(pwd) failed: No such file or directory"])
    assert len(set(out.values())) == 1


def test_words_need_three_values_and_program_identifiers_five() -> None:
    two = templates([f"user {u} not found" for u in ("alice", "bob")])
    assert len(set(two.values())) == 2  # two words may be two messages
    three = templates([f"user {u} not found" for u in ("alice", "bob", "carol")])
    assert set(three.values()) == {"user <*> not found"}
    # names from a program's source (kebab, snake, camel case, ::) need five
    ops = ["mach-lookup", "network-outbound", "file-read-data", "file-write-data"]
    four = templates([f"Sandbox: deny {op} now" for op in ops])
    assert len(set(four.values())) == 4
    five = templates([f"Sandbox: deny {op} now" for op in [*ops, "signal-send"]])
    assert set(five.values()) == {"Sandbox: deny <*> now"}


def test_columns_that_vary_together_are_wording_not_variables() -> None:
    # Given two columns whose values pair one-to-one (each reason has its own description),
    # with enough values for either column alone to be called variable
    pairs = [("RTC", "(Alarm)"), ("ARPT", "(Network)"), ("USB", "(Device)"),
             ("LID", "(Open)"), ("PWR", "(Button)")]
    out = templates([f"Wake reason: {a} {b}" for a, b in pairs])
    # Then every message keeps its own template
    assert len(set(out.values())) == len(pairs)
    assert "Wake reason: RTC (Alarm)" in out.values()
    # But a name varying independently of another column is still a variable
    users = ["ann", "bob", "cy", "dee", "eve"]
    out = templates([f"{verb} password for {u} from <ip> port <num> ssh2"
                     for verb in ("Accepted", "Failed") for u in users])
    assert set(out.values()) == {"Accepted password for <*> from <*> port <*> ssh2",
                                 "Failed password for <*> from <*> port <*> ssh2"}


def test_a_word_paired_with_the_wording_of_a_numbered_column_is_wording() -> None:
    # the word decides the padded text of the next column; only its digit varies
    lines = ["program interrupt: illegal instruction......0",
             "program interrupt: illegal instruction......1",
             "program interrupt: imprecise exception......0",
             "program interrupt: privileged instruction...0",
             "program interrupt: trap instruction.........0",
             "program interrupt: unimplemented operation..0",
             "program interrupt: unimplemented operation..1"]
    out = templates(lines)
    assert out[lines[0]] == out[lines[1]] == "program interrupt: illegal <*>"
    assert out[lines[5]] == out[lines[6]] == "program interrupt: unimplemented <*>"
    assert len(set(out.values())) == 5


def test_the_glob_test_is_linear_on_hostile_tokens() -> None:
    # many masked parts and a near-miss literal: no backtracking (str.find, leftmost)
    pattern = "a" + "<*>a" * 60 + "b"
    literal = "a" * 400
    assert column_kind({pattern, literal}) != "glob"
    assert column_kind({"x<*>y<*>z", "x1y2z"}) == "glob"
