"""The exit-status key names the program (QA report qa_s17b, defects 4 and 10): the silent
segfault (or silent ``exit 3``) of one program and of another are two groups, each program's
repeats one, the issue queue lists and labels them apart, and a lesson taught on one is not
offered for the other; a signal reported as ``-11`` (a ``subprocess`` return code: hooks,
Dagster) or ``tags.signal: "11"`` is the SIGSEGV ``heal run`` and ``heal diagnose --signal 11``
key, and a hostile ``tags.signal`` never enters the key. Real CLI in a subprocess, real
embedded engines (the session's), real signals."""

from __future__ import annotations

import json
import random
from pathlib import Path

from pipeline.events import ErrorEvent
from pipeline.fingerprint import fingerprint_event
from tests.integration.test_run_exit_status_key import _heal, _repo, _run

SEGV_PY = ("import os, signal, sys\nprint(sys.argv[1], flush=True)\n"
           "os.kill(os.getpid(), signal.SIGSEGV)\n")


def _scripts(root: Path) -> None:
    (root / "app.py").write_text(SEGV_PY)
    (root / "other.py").write_text(SEGV_PY)
    (root / "check.sh").write_text('echo "$1"; exit 3\n')
    (root / "verify.sh").write_text('echo "$1"; exit 3\n')


def test_two_programs_silent_crashes_are_two_groups_and_one_programs_repeats_one(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    root = _repo(tmp_path)
    _scripts(root)
    word = "begin" + "".join(random.choice("abcdefghij") for _ in range(8))  # (no digits)
    # Given two programs that print an ordinary line and die of SIGSEGV, each twice
    app = [_run(root, "python3", "app.py", w)[1] for w in (word, "loading")]
    other = [_run(root, "python3", "other.py", w)[1] for w in (word, "listening")]
    # and two scripts that print a line and exit 3 silently
    check = _run(root, "sh", "check.sh", word)[1]
    verify = _run(root, "sh", "verify.sh", word)[1]
    # Then each program's repeats are one group, and the programs are two (before: one)
    assert app[0]["fingerprint"] == app[1]["fingerprint"]
    assert other[0]["fingerprint"] == other[1]["fingerprint"]
    assert app[0]["fingerprint"] != other[0]["fingerprint"]
    assert check["fingerprint"] != verify["fingerprint"]

    # When the queue is listed, Then they are four groups, each labelled with its program
    listed = _heal(["issues", "list", "--json", "--limit", "1000"], root)
    assert listed.returncode == 0, listed.stderr
    ours = {str(f): g["label"] for g in json.loads(listed.stdout)["groups"] for f in g["fines"]}
    assert ours[str(app[0]["fingerprint"])] == "killed by SIGSEGV (python app.py)"
    assert ours[str(other[0]["fingerprint"])] == "killed by SIGSEGV (python other.py)"
    assert ours[str(check["fingerprint"])] == f"exit 3: {word} (sh check.sh)"
    assert ours[str(verify["fingerprint"])] == f"exit 3: {word} (sh verify.sh)"

    # heal diagnose keys a text as heal run did when given the command; without it, the
    # key holds no program (another group)
    args = ["diagnose", "--offline", "--no-semantic", "--json", "--exit-code", "139"]
    given = json.loads(_heal([*args, "--command", "python3 app.py --port 8080"], root,
                             "other output\n").stdout)
    assert given["fingerprint"]["fine"] == app[0]["fingerprint"]
    alone = json.loads(_heal(args, root, "other output\n").stdout)
    assert alone["fingerprint"]["fine"] not in (app[0]["fingerprint"], other[0]["fingerprint"])
    bad = _heal([*args, "--command", "python3 'app.py"], root, "x\n")
    assert bad.returncode == 2 and "--command" in bad.stderr and "quote" in bad.stderr


def test_a_lesson_taught_on_one_programs_crash_is_not_offered_for_another(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    root = _repo(tmp_path)
    _scripts(root)
    # Given a lesson taught (fingerprint only) on app.py's silent segfault
    _, app = _run(root, "python3", "app.py", "start")
    taught = _heal(["learn", str(app["fingerprint"]), "--escalate", "see app's core dump",
                    "--json"], root)
    assert taught.returncode == 0, taught.stderr
    # When app.py and other.py crash again, Then only app.py's crash gets the lesson
    args = ["diagnose", "--no-semantic", "--json", "--exit-code", "-11"]
    mine = json.loads(_heal([*args, "--command", "python3 app.py"], root, "again\n").stdout)
    theirs = json.loads(_heal([*args, "--command", "python3 other.py"], root,
                              "again\n").stdout)
    assert mine["fingerprint"]["fine"] == app["fingerprint"]
    learned = json.loads(taught.stdout)["pattern_id"]
    assert mine["match"]["pattern_id"] == learned, mine
    assert theirs["match"]["pattern_id"] != learned, theirs


def _event(**fields: object) -> ErrorEvent:
    return ErrorEvent.from_dict({"v": 1, "id": "e-" + "".join(random.choices("abc", k=8)),
                                 "text": "starting worker\n", "repo": {"path": "/r"},
                                 "command": ["./worker", "--id", "7"], **fields})


def test_a_negative_return_code_and_a_numeric_signal_tag_are_the_signal(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    # Given the same segfault as heal run (139), a hook or Dagster (-11) and a producer's
    # tags.signal "11" or "SEGV" report it
    keys = {fingerprint_event(_event(**extra)).fine for extra in (
        {"exit_code": 139}, {"exit_code": -11}, {"tags": {"signal": "11"}},
        {"exit_code": 1, "tags": {"signal": "segv"}}, {"tags": {"signal": "SIGSEGV"}})}
    # Then it is one key (before: `exit -11: starting worker` and class SIG11 were others)
    assert len(keys) == 1
    fp = fingerprint_event(_event(exit_code=-11))
    assert fp.normalized == "killed by SIGSEGV"
    # and heal diagnose --signal 11 / --exit-code -11 gives the stage's key
    root = _repo(tmp_path)
    args = ["diagnose", "--offline", "--no-semantic", "--json", "--command", "./worker --id 9"]
    for extra in (["--signal", "11"], ["--exit-code", "-11"]):
        done = json.loads(_heal([*args, *extra], root, "starting worker\n").stdout)
        assert done["fingerprint"]["fine"] == fp.fine, extra


def test_a_hostile_signal_tag_never_enters_the_key(heal_env: dict[str, str]) -> None:
    plain = fingerprint_event(_event(exit_code=2))
    for hostile in ("SEGV\x1b[31mRED\n 99 9 2099 FAKE ROW", "S" * 3000, "SIG SEGV", "11;rm"):
        fp = fingerprint_event(_event(exit_code=2, tags={"signal": hostile}))
        # ignored: keyed on the exit status, as without the tag
        assert fp.fine == plain.fine, hostile
        assert fp.extraction is not None and fp.extraction.error_type == "exit 2"
