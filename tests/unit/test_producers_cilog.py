"""CI build logs: one event per failed step, holding the part that explains the failure."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from producers.backfill import scan_file
from producers.cilog import (
    CiLogDetector,
    CiOptions,
    condense,
    is_marker,
    is_rule,
    plain,
    select,
)
from producers.logs import LogRecords
from producers.records import LineSplitter

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
    for number, (line, start, end, cut) in enumerate(_whole(LineSplitter(), log.encode()), 1):
        assert sink.feed(line, start, end, number, cut) == []
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
        "=" * 65536,
        "_ " * 32768,
        ("=" * 3 + " ") * 16000,
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


def feed_all(lines: list[str], opts: CiOptions | None = None) -> list[str]:
    """The texts a detector publishes for ``lines`` (backfill: the end of the file too)."""
    detector = CiLogDetector(opts)
    texts = []
    for number, line in enumerate(lines, 1):
        failure = detector.feed(line, number * 100, number * 100 + 99, number)
        if failure is not None:
            texts.append(failure.text)
    last = detector.finish()
    return texts + ([last.text] if last is not None else [])


_NOISE = ("{w} unit_{n}.o", "[{i}] {w} unit_{n}.o in {t} ms", "  {w} {n} objects (cached)",
          "{w}: lib{n}.so -> lib{n}.so.1", "{w} step {i} of the build: {t}s")


def noise(count: int, word: str = "compiled") -> list[str]:
    """Harmless output whose consecutive lines differ in shape (nothing to condense)."""
    return [_NOISE[i % len(_NOISE)].format(w=word, n=i * 7919 % 1000, i=i, t=i % 17)
            for i in range(count)]


@pytest.mark.parametrize("line, expected", [
    ("=================================== FAILURES ===================================", True),
    ("_________________________________ test_total _________________________________", True),
    ("---- grid_reset stdout ----", True),
    ("── 1. Failure: names are kept (@test-names.R#12) " + "─" * 30, True),
    ("========DIFF========", True),
    ("node2 stderr " + "=" * 40, True),
    ("E         ?                      -------", False),  # a diff's guide line
    ("--- Expected", False),
    ("-- Docs: https://docs.pytest.org/en/latest/warnings.html", False),
    ("_ _ _ _ _ _ _ _ _ _ _ _", False),  # pytest's frame separator stays inside a section
])
def test_horizontal_rules(line: str, expected: bool) -> None:
    assert is_rule(line) is expected


def test_a_report_between_two_rules_is_published_whole() -> None:
    # 60 same-shape frames would be cut to 4 outside a section, and a block stops at 25 lines
    frames = [f"    #{i} 0x{4096 + i:x} in worker_loop{i} src/worker.c:{i + 10}" for i in range(60)]
    report = ["==== report of the failed check ====",
              "==4242==ERROR: AddressSanitizer: heap-use-after-free on address 0x61b0",
              *frames,
              "SUMMARY: AddressSanitizer: heap-use-after-free src/worker.c:12"]
    lines = ["$ make check", *noise(300), *report, "==== 40 checks, 1 failed ====",
             *noise(50, "cleaned"), 'The command "make check" exited with 1.']
    (text,) = feed_all(lines)
    assert all(frame in text for frame in frames)
    assert "SUMMARY: AddressSanitizer" in text
    assert noise(300)[150] not in text
    # with sections off, the same report is cut (the mechanism, not the budget, keeps it)
    (cut,) = feed_all(lines, CiOptions(section_lines=0))
    assert frames[30] not in cut


def test_a_verdict_right_after_a_rule_takes_the_section_it_closes() -> None:
    # a runner that prints the details first and its verdict after them
    diff = ["========DIFF========", "004+ stat count: 8", "004- stat count: 7",
            *[f"{i:03d}+ field_{i} => {i * 3}" for i in range(5, 25)], "========DONE========"]
    lines = ["$ run-tests", *noise(400), *diff, "FAIL stat() counts links [tests/stat_007]",
             *noise(200, "skipped"), 'The command "run-tests" exited with 1.']
    (text,) = feed_all(lines)
    assert all(line in text for line in diff)
    assert "FAIL stat() counts links" in text


def test_the_head_of_a_failed_step_is_published() -> None:
    usage = [line.replace("unit_", "    -o") for line in noise(80, "sets")]
    lines = ["$ ./run-tests -j4", "Illegal switch 'j' specified!", "Synopsis:", *usage,
             'The command "./run-tests -j4" exited with 1.']
    (text,) = feed_all(lines)
    assert "Illegal switch 'j' specified!" in text
    (without,) = feed_all(lines, CiOptions(head_lines=0))
    assert "Illegal switch" not in without


def test_routine_marker_lines_start_no_block() -> None:
    # every suite prints "OK (n tests, m assertions)": 'assertions' is a marker word, but a
    # line of a shape that recurs all over the step is routine output, not a failure
    suites = []
    for i in range(40):
        suites += [f"Running suite {i}", "." * (i % 7 + 1),
                   f"OK ({i + 2} tests, {i * 3} assertions)"]
    failure = ["1) SolverTest::testUnsatisfiable", "Failed asserting that two strings are equal.",
               "--- Expected", "+++ Actual", "-  a private package", "+  a missing credential"]
    lines = ["$ run-suites", *suites[:60], *failure, *suites[60:], *noise(40, "archived"),
             'The command "run-suites" exited with 1.']
    (text,) = feed_all(lines)
    assert "Failed asserting that two strings are equal." in text
    assert "OK (2 tests, 0 assertions)" not in text
    (noisy,) = feed_all(lines, CiOptions(routine_min=10_000))  # every marker starts a block
    assert "OK (2 tests, 0 assertions)" in noisy


def test_blocks_are_ranked_by_the_failures_they_report() -> None:
    # with room for one block, the one holding three verdicts wins over a lone early word
    lines = ["$ make test", "warning: the cache is missing, rebuilding", *noise(100),
             "src/a.c:3:5: error: unknown type name 'sizet'",
             "src/a.c:9:1: error: expected ';' before '}' token",
             "src/b.c:4:2: error: implicit declaration of function 'frob'",
             *noise(100, "linked"), 'The command "make test" exited with 2.']
    (text,) = feed_all(lines, CiOptions(max_blocks=1, head_lines=0))
    assert "implicit declaration of function 'frob'" in text
    assert "the cache is missing" not in text


def test_a_build_that_stops_without_an_exit_line_is_searched_across_its_steps(
        tmp_path: Path) -> None:
    # the check step ends without the runner reporting it; later steps dump logs, and the
    # file ends: the explanation is in the first of the unreported steps
    log = "\n".join([
        "travis_fold:start:check",
        "$ R CMD check pkg.tar.gz; CHECK_RET=$?",
        "* checking tests ...",
        "  Running 'test-all.R'",
        " ERROR",
        "Running the tests in 'tests/test-all.R' failed.",
        "1. Failure: names are kept (@test-names.R#12)",
        "travis_fold:end:check",
        "$ for f in logs/*.out; do cat $f; done",
        *noise(120, "printed"),
        "R CMD check failed",
        "",
    ])
    texts = events_of(tmp_path, log)
    assert len(texts) == 1
    assert "Running the tests in 'tests/test-all.R' failed." in texts[0]
    assert "1. Failure: names are kept" in texts[0]


def _whole(splitter: LineSplitter, data: bytes) -> Iterator[tuple[str, int, int, int]]:
    """Every line of ``data`` as backfill reads a file: ``feed``, then ``finish``."""
    yield from splitter.feed(data)
    yield from splitter.finish()
