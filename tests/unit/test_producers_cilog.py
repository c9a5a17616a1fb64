"""CI build logs: one event per failed step, holding the part that explains the failure."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from producers.backfill import scan_file
from producers.cilog import CiLogDetector, CiOptions, condense, is_marker, plain, select
from producers.logs import LogRecords
from producers.records import iter_lines

ESC = "\x1b"

# a Travis-like log: a noisy install step that succeeds, then a test step that fails
TRAVIS = "\n".join([
    "travis_fold:start:install",
    "$ pip install -r requirements.txt",
    "Collecting error-reporting==1.0",
    "  WARNING: the error handler is deprecated",
    "ERROR: pip's legacy resolver found no conflicts",  # noise in a step that succeeded
    "travis_fold:end:install",
    f'{ESC}[32;1mThe command "pip install -r requirements.txt" exited with 0.{ESC}[0m',
    "$ pytest -q",
    *[f"tests/test_{i}.py ....                                   [{i:3d}%]" for i in range(60)],
    "=================================== FAILURES ===================================",
    "_________________________________ test_total _________________________________",
    "    def test_total():",
    ">       assert total([1, 2]) == 4",
    "E       assert 3 == 4",
    "E        +  where 3 = total([1, 2])",
    "tests/test_total.py:7: AssertionError",
    "=========================== 1 failed, 240 passed in 3.2s ===========================",
    "travis_time:end:0b1:start=1,finish=2,duration=1\r"
    f'{ESC}[0K{ESC}[31;1mThe command "pytest -q" exited with 1.{ESC}[0m',
    "travis_fold:start:cache.2",
    "store build cache",
    "travis_fold:end:cache.2",
    "Done. Your build exited with 1.",
    "",
])


def events_of(tmp_path: Path, text: str, name: str = "build.log") -> list[str]:
    path = tmp_path / name
    path.write_text(text)
    return [event.text for event, _ in scan_file(path)]


def test_a_failed_step_gives_one_event_with_its_assertion(tmp_path: Path) -> None:
    path = tmp_path / "build.log"
    path.write_text(TRAVIS)
    events = [event for event, _ in scan_file(path)]
    assert len(events) == 1  # not the install step's ERROR line, not "Done. ... exited with 1"
    event = events[0]
    assert "E       assert 3 == 4" in event.text
    assert "tests/test_total.py:7: AssertionError" in event.text
    assert "pip's legacy resolver" not in event.text
    assert event.exit_code == 1
    assert event.tags["record_kind"] == "ci-step"
    assert event.tags["ci_command"] == "$ pytest -q"
    assert not event.command  # a log line is never a command heal would run
    assert len(event.text) < len(TRAVIS) / 3


def test_github_actions_and_gitlab_shapes(tmp_path: Path) -> None:
    gha = "\n".join([
        "2024-05-01T10:00:00.0000000Z ##[group]Run npm ci",
        "added 300 packages",
        "##[endgroup]",
        "##[group]Run npm test",
        "> app@1.0.0 test",
        "  1) sums:",
        "     AssertionError [ERR_ASSERTION]: 3 == 4",
        "      at Context.<anonymous> (test/sum.js:5:12)",
        "##[error]Process completed with exit code 1.",
        "",
    ])
    # timestamps in front of GitHub's markers are the runner's, not part of the line
    texts = events_of(tmp_path, gha.replace("2024-05-01T10:00:00.0000000Z ", ""), "gha.log")
    assert len(texts) == 1 and "AssertionError [ERR_ASSERTION]: 3 == 4" in texts[0]
    gitlab = "\n".join([
        "section_start:1700000000:step_script\r\x1b[0KExecuting step",
        "$ go test ./...",
        "--- FAIL: TestSum (0.00s)",
        "    sum_test.go:9: got 3, want 4",
        "FAIL\texample.com/sum\t0.004s",
        "ERROR: Job failed: exit code 1",
        "",
    ])
    texts = events_of(tmp_path, gitlab, "gitlab.log")
    assert len(texts) == 1 and "sum_test.go:9: got 3, want 4" in texts[0]


def test_a_step_cut_off_by_the_end_of_the_log(tmp_path: Path) -> None:
    log = "travis_fold:start:script\n$ make lint\nsrc/a.c:3: teh ==> the\n" \
          "^ Warning: codespell identified likely spelling errors\n"
    texts = events_of(tmp_path, log)
    assert len(texts) == 1 and "src/a.c:3: teh ==> the" in texts[0]  # backfill: end of file
    # watch flushes when a file is idle: that says nothing about the build being over
    sink = LogRecords(str(tmp_path / "live.log"), lambda: "id", kind="log")
    for number, (line, start, end) in enumerate(iter_lines(log.encode()), 1):
        assert sink.feed(line, start, end, number) == []
    assert sink.flush() == []


def test_a_build_that_succeeded_publishes_nothing(tmp_path: Path) -> None:
    log = "$ make\ncc -Werror a.c\nerror handling tests: 12 passed\n" \
          'The command "make" exited with 0.\nDone. Your build exited with 0.\n'
    assert events_of(tmp_path, log) == []


def test_logs_without_ci_structure_keep_their_error_records(tmp_path: Path) -> None:
    log = "2024-01-01 INFO boot\n2024-01-01 ERROR cannot connect to db\n"
    assert events_of(tmp_path, log, "app.log") == ["2024-01-01 ERROR cannot connect to db"]


def test_runs_of_same_shape_lines_are_condensed() -> None:
    detector = CiLogDetector()
    frames = [f"    at org.example.Foo{i}.run(Foo{i}.java:{i})" for i in range(200)]
    lines = ["$ gradle test", "java.lang.IllegalStateException: boom", *frames,
             'The command "gradle test" exited with 1.']
    failure = None
    for number, line in enumerate(lines, 1):
        failure = detector.feed(line, number * 100, number * 100 + 99, number) or failure
    assert failure is not None
    text = failure.text
    assert "IllegalStateException: boom" in text
    assert frames[0] in text and frames[-1] in text and frames[100] not in text
    assert "[...]" in text


def test_selection_stays_within_max_lines() -> None:
    detector = CiLogDetector(CiOptions(max_lines=50))
    for number in range(1, 3000):
        detector.feed(f"case {number}: error code {number * 7} in module m{number}",
                      number, number + 1, number)
    failure = detector.feed("Process completed with exit code 2.", 0, 1, 3000)
    assert failure is not None and failure.exit_code == 2
    assert len(failure.text.splitlines()) <= 50 + 30  # blocks within max_lines, plus "[...]"


@pytest.mark.parametrize("line, expected", [
    ("E       assert 3 == 4", True),
    ("npm ERR! code ELIFECYCLE", True),
    ("src/main.rs:3:5: error[E0425]: cannot find value `x`", True),
    ("not ok 23 dns - resolveTxtTCP", True),
    ("Tests run: 12, Failures: 0, Errors: 0", False),
    ("compiled without errors", False),
    ("Downloading foo-1.0.tar.gz", False),
])
def test_failure_markers(line: str, expected: bool) -> None:
    assert is_marker(line) is expected


def test_terminal_view_of_a_line() -> None:
    assert plain(f"{ESC}[31;1mred{ESC}[0m") == "red"
    assert plain("10%\r50%\r100% done\r\n") == "100% done"


def test_regexes_stay_linear_on_hostile_input() -> None:
    hostile = [
        "a" * 65536,
        "error " * 11000,
        "exited with " * 5400,
        "\x1b[" + "1;" * 30000 + "m",
        "\x1b]" + "x" * 65536,
        ("    " * 1000 + "at a.b(c:1)\n") * 10,
        "E " + "!" * 65534,
    ]
    start = time.perf_counter()
    for text in hostile:
        detector = CiLogDetector()
        for number, line in enumerate(text.split("\n") * 3, 1):
            detector.feed(line, 0, len(line), number)
        detector.feed("exited with 1", 0, 1, 99)
    lines = [f"x{i} failed" for i in range(5000)]
    from producers.cilog import _Line
    step = [_Line(t, t, 0, 1, i) for i, t in enumerate(lines)]
    select(step, CiOptions(), condense(step, 3))
    assert time.perf_counter() - start < 5.0
