"""The exit status and signal in the fingerprint of a text with no line saying what failed
(QA qa_s16c defect 5), and every caller holding an event keying it the same way (fast unit
tests; the real path is tests/integration/test_run_exit_status_key.py)."""

from __future__ import annotations

from pipeline.events import ErrorEvent, Repo
from pipeline.fingerprint import Fingerprinter, fingerprint_event, fingerprint_text
from pipeline.fingerprint.explain import explain_grouping
from pipeline.fingerprint.status import (
    ended_parts,
    exit_status,
    program_of,
    reported_signal,
    signal_name,
)
from pipeline.learn.lessons import lesson_fix
from pipeline.learn.source import TaughtError
from pipeline.learn.teach import Lesson, draft_pattern


def _event(text: str, exit_code: int | None, signal: str = "") -> ErrorEvent:
    return ErrorEvent(id="e1", text=text, repo=Repo(path="/srv/x"), exit_code=exit_code,
                      tags={"signal": signal} if signal else {})


def test_the_status_key_names_the_signal_or_the_exit_status() -> None:
    assert exit_status(139, "SIGSEGV") == exit_status(139) == exit_status(None, "segv") \
        == "SIGSEGV"
    assert exit_status(3) == "exit 3" and exit_status(0) == exit_status(None) == ""
    assert signal_name(134) == "SIGABRT" and signal_name(3) == "" and signal_name(200) == ""
    assert reported_signal("start\nmake: *** [Makefile:2: run] Segmentation fault (core "
                           "dumped)\n") == "SIGSEGV"
    assert reported_signal("the job was done\n") == ""


def test_a_text_with_no_error_line_is_keyed_on_how_its_command_ended() -> None:
    segv = fingerprint_text("start\n", exit_code=139, signal="SIGSEGV")
    other_line = fingerprint_text("loading config\n", exit_code=139, signal="SIGSEGV")
    nothing = fingerprint_text("command exited with status 139 and printed nothing",
                               exit_code=139, signal="SIGSEGV")
    abrt = fingerprint_text("start\n", exit_code=134, signal="SIGABRT")
    exit3 = fingerprint_text("start\n", exit_code=3)
    exit3_other = fingerprint_text("loading config\n", exit_code=3)
    alone = fingerprint_text("start\n")
    assert segv.fine == other_line.fine == nothing.fine and segv.normalized == \
        "killed by SIGSEGV"
    assert len({segv.fine, abrt.fine, exit3.fine, alone.fine, exit3_other.fine}) == 5
    assert len({segv.coarse, abrt.coarse, exit3.coarse, alone.coarse}) == 4
    assert exit3.normalized == "exit 3: start" and alone.normalized == "start"
    # make reporting its recipe's segfault (make exits 2): the reported signal
    made = fingerprint_text("./app\nstart\nmake: *** [Makefile:2: run] Segmentation fault "
                            "(core dumped)\n", exit_code=2)
    assert made.fine == segv.fine


def test_a_text_with_an_error_line_keeps_its_key_whatever_the_status() -> None:
    for text in ("Traceback (most recent call last):\n  File \"a.py\", line 1, in <module>\n"
                 "ValueError: bad\n",
                 "start\nError: connection refused\n",
                 "start\nAborted (core dumped)\n",
                 "src/a.c:3:5: error: expected ';' before '}' token\n"):
        plain = fingerprint_text(text)
        for code, signal in ((1, ""), (139, "SIGSEGV"), (2, "")):
            keyed = fingerprint_text(text, exit_code=code, signal=signal)
            assert (keyed.fine, keyed.coarse) == (plain.fine, plain.coarse), text


def test_every_caller_with_an_event_keys_it_as_the_stage_does() -> None:
    from consumers.fingerprint import FingerprintHandler
    from pipeline.ci.report import RunReport, describe

    event = _event("start\n", 139, "SIGSEGV")
    stage = FingerprintHandler(Fingerprinter(), 1 << 20)
    stage.prepare([event])
    (published,) = stage.handle(event)
    fp = fingerprint_event(event)
    assert published.fine == fp.fine and published.coarse == fp.coarse
    assert fp.fine != fingerprint_text(event.text, event.repo.path).fine
    # explain's recomputation with the event's status
    assert explain_grouping(event.text, event.repo.path, 139, "SIGSEGV")["fine"] == fp.fine
    # the CI report's headline: the signal, not the ordinary line
    report = RunReport(event=event, exit_status=139)
    describe(report)
    assert report.headline == "killed by SIGSEGV"
    # a lesson taught from the candidate keys it the same way (no rule over "start")
    error = TaughtError("e1", event.text, "", repo="", exit_code=139, signal="SIGSEGV")
    fix = lesson_fix({"fix": "make clean", "fix_kind": "command"})
    assert fix is not None
    _, taught = draft_pattern(Lesson(error, fix))
    assert taught.fingerprints[0] == fp.fine
    assert taught.regex is None


def test_a_queued_sample_keyed_on_its_status_gets_no_rule_over_its_ordinary_lines() -> None:
    # the issue queue keeps the text, not the status: the stored fingerprint says it was
    # keyed on how the command ended, so no rule is derived from "start"
    fine = fingerprint_text("start\n", exit_code=139, signal="SIGSEGV").fine
    error = TaughtError(f"issue:{fine}", "start\n", fine, why="queued")
    fix = lesson_fix({"fix": "make clean", "fix_kind": "command"})
    assert fix is not None
    _, taught = draft_pattern(Lesson(error, fix))
    assert taught.fingerprints == (fine,) and taught.regex is None


def test_the_program_is_the_executable_or_the_script_an_interpreter_ran() -> None:
    cases = {
        ("./build/app", "--port", "8080"): "app",
        ("env", "A=1", "nice", "-n", "5", "/opt/bin/app"): "app",
        ("python3.11", "-u", "tools/seed.py", "--n", "3"): "python seed.py",
        ("python", "-m", "pkg.mod", "arg"): "python -m pkg.mod",
        ("sh", "-c", "echo start; exit 3"): "sh -c",
        ("java", "-jar", "/srv/app.jar", "x"): "java app.jar",
        ("/usr/bin/env", "node", "dist/s.js"): "node s.js",
        ("./a\x1bb c" + "x" * 200,): "abc" + "x" * 61,
        (): "",
    }
    for argv, program in cases.items():
        assert program_of(argv) == program, argv
        assert program_of(program.split()) == program  # (parsed back from issue_queue.ended)
    # the status key holds it, and ended_parts reads it back
    assert exit_status(-11, "", ["./app", "--x"]) == "SIGSEGV app"
    assert ended_parts("exit 3 python seed.py") == (3, "", "python seed.py")
    assert ended_parts("SIGSEGV") == (None, "SIGSEGV", "")
    app = fingerprint_text("start\n", exit_code=139, command=["./app", "--x", "1"])
    assert app.fine == fingerprint_text("loading\n", exit_code=139, command=["./app"]).fine
    other = fingerprint_text("start\n", exit_code=139, command=["./other"])
    assert other.fine != app.fine and other.coarse != app.coarse


def test_negative_codes_and_numeric_signal_tags_are_signals_and_hostile_tags_ignored() -> None:
    assert signal_name(-11) == signal_name(None, "11") == signal_name(None, "segv") == "SIGSEGV"
    for hostile in ("SEGV\x1b[31m", "S" * 16, "SIG SEGV", "11;rm", "99999"):
        assert signal_name(None, hostile) == "", hostile
