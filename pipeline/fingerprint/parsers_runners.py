"""Rust panics and test-runner failures (cargo test, go test, jest, vitest, rspec, PHPUnit,
Gradle).

A runner's failure is identified as pytest's is: by what failed (the test, or the Gradle
task) and by what it said, with the failing file as a frame where the runner prints one. The
test itself is the innermost frame (``Frame(file or module, test name)``), so two different
failing tests never share a fingerprint, even with the same message in the same helper; the
runner's own boilerplate (``note: run with RUST_BACKTRACE``, ``Received: 1``, ``BUILD FAILED
in 1m 12s``) is never the headline.

Every regex here is anchored at a line start and bounded: a name or path is a run of at most
a few hundred characters of one class, followed by a literal that class does not hold.
"""

from __future__ import annotations

import re

from pipeline.fingerprint.model import Extraction, Frame
from pipeline.fingerprint.parsers_lines import KOTLIN_ERROR, parse_diagnostic
from pipeline.fingerprint.parsers_stacks import NODE_FRAME, parse_go, parse_node_head
from pipeline.fingerprint.paths import is_library, normalize_path

# --- Rust panics and cargo test ------------------------------------------------------------

#: ``thread 'main' panicked at src/main.rs:10:5:`` (Rust >= 1.73: the message on the next
#: lines) or ``thread 'main' panicked at 'msg', src/main.rs:10:5`` (older Rust)
#: (Rust >= 1.88 adds the thread id: ``thread 'main' (8288) panicked at``)
_RUST_PANIC = re.compile(
    r"^thread '(?P<thread>[^'\n]{0,300})'(?: \(\d{1,20}\))? panicked at (?P<rest>.*)$")
#: the location of a panic: ``src/main.rs:10:5`` (with the new form's trailing colon)
_RUST_LOC = re.compile(r"^(?P<file>[^\s:']{1,500}):(?P<line>\d{1,9}):\d{1,9}:?$")
#: cargo test's block of one failing test's captured output
_CARGO_BLOCK = re.compile(r"^---- (?P<test>\S{1,300}) std(?:out|err) ----$")
#: cargo test's per-test result line (``test net::tests::timeout ... FAILED``)
_CARGO_FAILED = re.compile(r"^test (?P<test>\S{1,300}) \.\.\. FAILED$")
#: lines that end a panic's message: the runtime's and cargo's own words after it
_RUST_AFTER = ("note: ", "stack backtrace:", "thread '", "---- ", "failures:", "test result:",
               "error: ", "  left:", " right:", "left:", "right:")
#: where the Rust standard library and crates from the registry live (not project code)
_RUST_LIBRARY = ("/rustc/", "library/core/", "library/std/", "library/alloc/")


def _rust_frame(raw: str, line: str, repo: str) -> Frame:
    library = is_library(raw) or raw.startswith(_RUST_LIBRARY) or "/rustc/" in raw
    return Frame(normalize_path(raw, repo), "", int(line), not library)


def _test_frame(test: str, separator: str) -> Frame:
    """The failing test as a frame: its module (or file) and its own name."""
    module, _, name = test.rpartition(separator)
    return Frame(module, name or test, None, True)


def parse_rust(text: str, repo: str = "") -> Extraction | None:
    """A Rust panic (its message and location), or a failing ``cargo test`` test (which
    one, and its panic or first line of output).

    Of several failing tests, the first in cargo's sorted ``failures:`` list decides (else
    the first by name): the tests run on threads, so which one panicked, and so printed,
    first changes from run to run, and the key must not."""
    if "panicked at" not in text and "---- " not in text:
        return None
    lines = text.splitlines()
    blocks: dict[str, int] = {}  # each failing test's captured output: where it starts
    panics: dict[str, int] = {}  # each thread's first panic
    for index, line in enumerate(lines):
        block = _CARGO_BLOCK.match(line)
        if block:
            blocks.setdefault(block.group("test"), index)
            continue
        panic = _RUST_PANIC.match(line)
        if panic:
            panics.setdefault(panic.group("thread"), index)
    if not blocks and not panics:
        return None
    listed = _cargo_failures(lines)
    test = next((t for t in listed if t in blocks), min(blocks) if blocks else "")
    if test:
        start = blocks[test]
        end = next((i for i in sorted(blocks.values()) if i > start), len(lines))
        panic_at = next((i for i in range(start + 1, end) if _RUST_PANIC.match(lines[i])), -1)
    else:
        cargo = "test result: FAILED" in text or _any_match(_CARGO_FAILED, lines)
        # (no captured blocks: --nocapture, or a binary's own panic; cargo names each
        # test's thread after the test)
        thread = next((t for t in listed if t in panics), "") or (
            min(panics) if cargo else min(panics, key=panics.__getitem__))
        panic_at = panics[thread]
        test = thread if cargo else ""
    if panic_at < 0:
        message = next((s.strip() for s in lines[blocks[test] + 1:] if s.strip()), "")
        return Extraction("rust", "TestFailure", message, (_test_frame(test, "::"),),
                          tool="cargo")
    panic = _RUST_PANIC.match(lines[panic_at])
    assert panic is not None
    message, frames = _panic(panic.group("rest").strip(), lines[panic_at + 1:panic_at + 8], repo)
    if test:
        frames.append(_test_frame(test, "::"))
    tool = "cargo" if test else "rust"
    return Extraction("rust", "panic", message, tuple(frames), tool=tool)


#: a test of cargo's closing ``failures:`` list (``    tests::adds``)
_CARGO_LISTED = re.compile(r"^ {4}(?P<test>\S{1,300})$")


def _cargo_failures(lines: list[str]) -> list[str]:
    """The tests of cargo's last ``failures:`` list (libtest sorts it by name), in order."""
    listed: list[str] = []
    for index in range(len(lines) - 1, -1, -1):
        if lines[index] == "failures:":
            for line in lines[index + 1:]:
                found = _CARGO_LISTED.match(line)
                if found is None:
                    break
                listed.append(found.group("test"))
            if listed:
                return listed
    return listed


def _panic(rest: str, below: list[str], repo: str) -> tuple[str, list[Frame]]:
    """The message and location of a panic, from what follows "panicked at" and the lines
    below it."""
    loc = _RUST_LOC.match(rest)
    if loc:  # Rust >= 1.73: the message is the next line
        message = next((s.strip() for s in below[:1]
                        if s.strip() and not s.startswith(_RUST_AFTER)), "")
        return message, [_rust_frame(loc.group("file"), loc.group("line"), repo)]
    if not rest.startswith("'"):
        return rest, []
    message = ""  # older Rust: 'message', file:line:col (the location maybe lines later)
    for follow in [rest[1:], *below]:
        head, sep, tail = follow.rpartition("', ")
        loc = _RUST_LOC.match(tail.strip()) if sep else None
        if loc:
            return (message or head).strip(), [
                _rust_frame(loc.group("file"), loc.group("line"), repo)]
        message = message or follow
    return message.strip(), []


def _any_match(pattern: re.Pattern[str], lines: list[str]) -> bool:
    return any(pattern.match(line) for line in lines)


# --- go test --------------------------------------------------------------------------------

#: ``--- FAIL: TestParse/empty_input (0.00s)`` (indented under its parent for a subtest)
_GO_FAIL = re.compile(r"^\s{0,40}--- FAIL: (?P<test>\S{1,300}) \([\d.]{1,20}s\)$")
#: ``=== RUN   TestParse`` (go test -v prints a test's output under it, before its result)
_GO_RUN = re.compile(r"^=== (?:RUN|CONT|NAME)\s{1,10}(?P<test>\S{1,300})$")
#: ``    config_test.go:12: expected 8080, got 0``: a test's t.Error/t.Fatal line
_GO_TEST_LOC = re.compile(r"^\s{1,40}(?P<file>[\w./-]{1,300}\.go):(?P<line>\d{1,9}): (?P<msg>.*)$")


def parse_go_test(text: str, repo: str = "") -> Extraction | None:
    """A failing ``go test`` test: its name, its first t.Error line (the file as a frame),
    or the panic it raised."""
    if "--- FAIL: " not in text:
        return None
    lines = text.splitlines()
    failed: list[str] = []
    for line in lines:
        fail = _GO_FAIL.match(line)
        if fail:
            failed.append(fail.group("test"))
    if not failed:
        return None
    failing = set(failed)
    current = ""
    for line in lines:
        header = _GO_FAIL.match(line) or _GO_RUN.match(line)
        if header:
            current = header.group("test")
            continue
        loc = _GO_TEST_LOC.match(line)
        if loc and current in failing:
            raw = loc.group("file")
            frame = Frame(normalize_path(raw, repo), current, int(loc.group("line")),
                          not is_library(raw))
            return Extraction("test", "FAIL", loc.group("msg").strip(), (frame,), tool="go")
    # (no t.Error line: a panic, or a failure printed without location; a subtest's parent
    # is printed first, the subtest that failed last)
    test = Frame("", failed[-1] if _nested(failed) else failed[0], None, True)
    panic = parse_go(text, repo)
    if panic is not None:
        return Extraction("test", panic.error_type, panic.message, (*panic.frames, test),
                          tool="go")
    return Extraction("test", "FAIL", "", (test,), tool="go")


def _nested(failed: list[str]) -> bool:
    """Whether the later failures are subtests of the first (go prints the parent first)."""
    return all(name.startswith(failed[0] + "/") for name in failed[1:])


# --- jest -----------------------------------------------------------------------------------

#: ``  ● App › renders header``: one failing test's block
_JEST_HEADER = re.compile(r"^\s{0,8}\u25cf (?P<test>\S.{0,500})$")
#: `` FAIL  src/App.test.js (5.1 s)``: the test file the blocks below it belong to
_JEST_FILE = re.compile(r"^\s{0,8}FAIL\s{1,8}(?P<file>[^\s(]{1,500})")
#: lines that end a test's block
_JEST_END = re.compile(r"^\s{0,8}(?:\u25cf |(?:FAIL|PASS)\s|Test Suites:|Tests:)")


def parse_jest(text: str, repo: str = "") -> Extraction | None:
    """A failing jest test: its file and title, the first line of its block (the matcher or
    the thrown error) and the frames printed under it."""
    if "\u25cf " not in text or ("FAIL" not in text and "Tests:" not in text):
        return None  # (systemctl's "● unit" lines have no jest FAIL line or tally)
    lines = text.splitlines()
    file = ""
    for index, line in enumerate(lines):
        found = _JEST_FILE.match(line)
        if found:
            file = found.group("file")
            continue
        header = _JEST_HEADER.match(line)
        if header is None:
            continue
        block, error_type, message = _test_report(lines[index + 1:], _JEST_END)
        frames: list[Frame] = []
        for follow in block:
            frame = NODE_FRAME.match(follow)
            if frame:
                raw = frame.group("file").removeprefix("file://")
                frames.append(Frame(normalize_path(raw, repo),
                                    (frame.group("func") or "").strip(),
                                    int(frame.group("line")), not is_library(raw)))
        # printed innermost first: outermost to innermost, as every Extraction's, then the
        # test itself (always in the key)
        frames.reverse()
        frames.append(Frame(normalize_path(file, repo), header.group("test").strip(), None,
                            True))
        return Extraction("test", error_type, message, tuple(frames), tool="jest")
    return None


def _test_report(following: list[str], end: re.Pattern[str]) -> tuple[list[str], str, str]:
    """A JavaScript test runner's report of one failing test (jest, vitest): its lines up to
    ``end``, and the error class and message of its first line (a thrown Node error's, else
    ``TestFailure`` and the line: the matcher's complaint)."""
    block: list[str] = []
    for follow in following:
        if end.match(follow):
            break
        block.append(follow)
    first = next((line.strip() for line in block if line.strip()), "")
    head = parse_node_head(first)
    error_type, message = head if head is not None else ("TestFailure", first)
    return block, error_type, message


# --- vitest ---------------------------------------------------------------------------------

#: `` FAIL  src/lib/date.test.ts > formatDate > pads the month``: one failing test's report
_VITEST_FAIL = re.compile(r"^\s{0,8}FAIL\s{1,8}(?P<file>[^\s>]{1,500}) > (?P<test>\S.{0,500})$")
#: `` \u276f src/lib/date.test.ts:9:30``: a frame of the error, innermost first
_VITEST_FRAME = re.compile(r"^\s{0,8}\u276f (?P<file>[^\s:]{1,500}):(?P<line>\d{1,9}):\d{1,9}$")
#: what ends a test's report: the next one, or a rule (``\u23af\u23af\u23af``)
_VITEST_END = re.compile(r"^\s{0,8}(?:FAIL\s|\u23af)")


def parse_vitest(text: str, repo: str = "") -> Extraction | None:
    """A failing vitest test: its file and name (``FAIL  file > suite > test``), the error
    printed under it (``AssertionError: expected ...``) and its ``\u276f file:line:col``
    frames."""
    if "FAIL" not in text or " > " not in text:
        return None
    lines = text.splitlines()
    for index, line in enumerate(lines):
        failed = _VITEST_FAIL.match(line)
        if failed is None:
            continue
        block, error_type, message = _test_report(lines[index + 1:], _VITEST_END)
        frames = [Frame(normalize_path(m.group("file"), repo), "", int(m.group("line")),
                        not is_library(m.group("file")))
                  for m in map(_VITEST_FRAME.match, reversed(block)) if m]
        frames.append(Frame(normalize_path(failed.group("file"), repo),
                            failed.group("test").strip(), None, True))
        return Extraction("test", error_type, message, tuple(frames), tool="vitest")
    return None


# --- Gradle ---------------------------------------------------------------------------------

#: ``> Task :app:compileKotlin FAILED``
_GRADLE_TASK = re.compile(r"^> Task (?P<task>:\S{1,300}) FAILED$")
#: ``Execution failed for task ':app:compileKotlin'.`` (under "* What went wrong:")
_GRADLE_EXECUTION = re.compile(r"^Execution failed for task '(?P<task>:[^'\s]{1,300})'\.$")
#: ``AppTest > parsesEmpty() FAILED``: a failing test of a test task
_GRADLE_TEST = re.compile(r"^(?P<cls>[\w$.]{1,300}) > (?P<test>\S.{0,300}) FAILED$")
#: its exception, indented under it: ``    java.lang.AssertionError at AppTest.java:14``
#: (Gradle's short format), or ``    org.opentest4j.AssertionFailedError: expected...``
_GRADLE_TEST_AT = re.compile(
    r"^\s{1,16}(?P<type>[\w$.]{1,300}) at (?P<file>[\w$.-]{1,300}):(?P<line>\d{1,9})$")
_GRADLE_TEST_CAUSE = re.compile(r"^\s{1,16}(?P<type>[\w$.]{1,300})(?:: (?P<msg>.*))?$")
#: javac's ``/p/src/main/java/app/App.java:12: error: cannot find symbol``. Gradle prints it
#: on a line of its own under ``> Task :app:compileJava`` or ``> Task :app:compileJava
#: FAILED``; when the task's header line was not ended before javac wrote (the console's
#: progress line in a log), it is glued to the task's name, with the header's ``> Task ``
#: (``> Task :app:compileJava/p/src/...``) or without (``:compileJava/p/src/...``)
_JAVAC_ERROR = re.compile(r"^(?P<file>[^\s:]{1,500}\.java):(?P<line>\d{1,9}): error: (?P<msg>.*)$")


def _javac_line(line: str) -> str:
    """A javac error line of a Gradle build without the task name glued in front, or ""."""
    if ".java:" not in line:
        return ""
    line = line.removeprefix("> Task ")
    if line.startswith(":") and "/" in line:
        line = line[line.index("/"):]
    return line if _JAVAC_ERROR.match(line) else ""


def _what_went_wrong(lines: list[str]) -> tuple[str, str, str]:
    """The task, the first line and the innermost cause of the "What went wrong" block
    whose lines are ``lines`` (up to its end)."""
    task = context = root = ""
    for follow in lines:
        stripped = follow.strip()
        if not stripped or stripped.startswith("* "):
            break
        execution = _GRADLE_EXECUTION.match(stripped)
        if execution:  # the task: a frame of its own
            task = task or execution.group("task")
        elif stripped.startswith(">"):  # each is the cause of the line above
            root = stripped.lstrip("> ").strip()
        elif not (context or root):
            context = stripped
    return task, context, root


def _gradle_test(failed: re.Match[str], under: str) -> tuple[Frame, str, str, Frame | None]:
    """A failing test of a test task, and the exception Gradle prints under it: its type,
    message and location (``    java.lang.AssertionError at AppTest.java:14``)."""
    test = Frame(failed.group("cls"), failed.group("test"), None, True)
    at = _GRADLE_TEST_AT.match(under)
    if at:
        return test, at.group("type"), "", Frame(at.group("file"), "", int(at.group("line")),
                                                 True)
    below = _GRADLE_TEST_CAUSE.match(under)
    if below:
        return test, below.group("type"), below.group("msg") or "", None
    return test, "", "", None


def parse_gradle(text: str, repo: str = "") -> Extraction | None:
    """A failed Gradle build: the failed task (and test), and what went wrong (a kotlinc or
    javac error when there is one, else what failed and its innermost cause)."""
    if "* What went wrong:" not in text and "> Task :" not in text:
        return None
    lines = text.splitlines()
    task = context = root = ""
    test: tuple[Frame, str, str, Frame | None] | None = None
    kotlin: re.Match[str] | None = None
    javac = ""
    for index, line in enumerate(lines):
        found = _GRADLE_TASK.match(line)
        if found:
            task = task or found.group("task")
            continue
        failed = _GRADLE_TEST.match(line) if test is None else None
        if failed:
            test = _gradle_test(failed, lines[index + 1] if index + 1 < len(lines) else "")
            continue
        if kotlin is None and line.startswith("e: "):
            kotlin = KOTLIN_ERROR.match(line)
        javac = javac or _javac_line(line)
        if line.strip() == "* What went wrong:" and not (context or root):
            named, context, root = _what_went_wrong(lines[index + 1:])
            task = task or named
    if javac:
        # the diagnostic javac printed, as it reads outside Gradle (or in its rich console,
        # where it is not glued to the task's name): one error, one fingerprint
        return parse_diagnostic(javac, repo)
    if not (task or context or root):
        return None
    return _gradle_failure(task, " ".join(w for w in (context, root) if w), test, kotlin, repo)


def _gradle_failure(task: str, wrong: str, test: tuple[Frame, str, str, Frame | None] | None,
                    kotlin: re.Match[str] | None, repo: str) -> Extraction:
    """The extraction of a failed Gradle build from what ``parse_gradle`` found: a kotlinc
    error, else the failing test's exception, else what went wrong (what failed and its
    innermost cause: "Could not resolve all files for configuration ':app'." and
    "repo.maven.apache.org: Name or service not known"); then the test and the task."""
    frames: list[Frame] = []
    error_type, message = "BuildFailed", wrong
    if kotlin is not None:
        raw = kotlin.group("file")
        frames.append(Frame(normalize_path(raw, repo), "", int(kotlin.group("line")),
                            not is_library(raw)))
        error_type, message = "error", kotlin.group("msg").strip()
    elif test is not None and test[1]:
        error_type, message = test[1], test[2]
        if test[3] is not None:
            frames.append(test[3])
    if test is not None:
        frames.append(test[0])
    if task:
        project, _, name = task.rpartition(":")
        frames.append(Frame(project or ":", name, None, True))
    return Extraction("gradle", error_type, message, tuple(frames), tool="gradle")


# --- rspec ----------------------------------------------------------------------------------

#: ``  1) Invoice#due_date adds the payment terms``: one failing example under ``Failures:``
_RSPEC_EXAMPLE = re.compile(r"^\s{0,8}(?P<n>\d{1,6})\) (?P<test>\S.{0,500})$")
#: ``     Failure/Error: expect(x).to eq(1)``: the line of the example that failed
_RSPEC_FAILURE = re.compile(r"^\s{1,16}Failure/Error: (?P<code>.*)$")
#: ``     NoMethodError:``: the exception the example raised, its message on the lines below
_RSPEC_EXCEPTION = re.compile(r"^\s{1,16}(?P<type>[A-Z][\w:]{0,300}):(?: (?P<msg>.*))?$")
#: ``     # ./app/models/cart.rb:31:in `checkout'``: a frame, innermost first
_RSPEC_FRAME = re.compile(
    r"^\s{1,16}# (?P<file>[^\s:]{1,500}):(?P<line>\d{1,9})(?::in [`'](?P<func>[^`']{0,300})')?")
#: ``rspec ./spec/models/cart_spec.rb:7 # Cart#checkout charges the card``
_RSPEC_RERUN = re.compile(r"^rspec (?P<file>[^\s:\[]{1,500})[:\[]")


def parse_rspec(text: str, repo: str = "") -> Extraction | None:
    """A failing rspec example: its description and spec file (the test frame), the
    exception it raised (its class and first message line) or else the line that failed
    (``Failure/Error: expect(...)``, type ``ExpectationNotMetError``), and its frames."""
    if "Failure/Error: " not in text:
        return None
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _RSPEC_EXAMPLE.match(line)), -1)
    if start < 0:
        return None
    example = _RSPEC_EXAMPLE.match(lines[start])
    assert example is not None
    code = error_type = message = ""
    raw_frames: list[re.Match[str]] = []
    block = lines[start + 1:]
    for index, line in enumerate(block):
        if _RSPEC_EXAMPLE.match(line) or (line.strip() and not line[0].isspace()):
            break  # the next example, or rspec's summary
        failure = _RSPEC_FAILURE.match(line)
        if failure:
            code = code or failure.group("code").strip()
            continue
        frame = _RSPEC_FRAME.match(line)
        if frame:
            raw_frames.append(frame)
            continue
        exception = _RSPEC_EXCEPTION.match(line) if code and not error_type else None
        if exception and not line.strip().startswith(("expected", "got")):
            error_type = exception.group("type")
            message = exception.group("msg") or next(
                (s.strip() for s in block[index + 1:index + 3] if s.strip()), "")
    if not code:
        return None
    frames = [Frame(normalize_path(m.group("file").removeprefix("./"), repo),
                    m.group("func") or "", int(m.group("line")),
                    not is_library(m.group("file"))) for m in reversed(raw_frames)]
    spec = next((m.group("file") for m in map(_RSPEC_RERUN.match, lines) if m), "")
    if not spec:
        spec = next((m.group("file") for m in raw_frames
                     if m.group("file").endswith("_spec.rb")), "")
    frames.append(Frame(normalize_path(spec.removeprefix("./"), repo),
                        example.group("test").strip(), None, True))
    if not error_type:
        error_type, message = "ExpectationNotMetError", code
    return Extraction("test", error_type, message.strip(), tuple(frames), tool="rspec")


# --- PHPUnit ---------------------------------------------------------------------------------

#: ``There was 1 failure:``, ``There were 2 errors:``: the section of failed tests that follows
_PHPUNIT_SECTION = re.compile(r"^There (?:was|were) \d{1,9} (?P<what>failure|error)s?:$")
#: any other section (``There was 1 risky test:``, ``There were 2 warnings:``): ends one
_PHPUNIT_OTHER = re.compile(r"^There (?:was|were) \d{1,9} [^\n:]{1,80}:$|^(?:FAILURES|ERRORS)!$")
#: ``1) Tests\Unit\CartTest::testTotal`` (``with data set #2 (1, 2)`` or ``"empty" (...)``)
_PHPUNIT_TEST = re.compile(
    r"^(?P<n>\d{1,6})\) (?P<cls>[\w\\]{1,500})::(?P<method>\w{1,300})"
    r"(?: with data set (?P<set>#\d{1,9}|\"[^\"\n]{0,300}\"))?")
#: ``/app/tests/Unit/CartTest.php:43``: one frame of a failed test, innermost first
_PHPUNIT_FRAME = re.compile(r"^(?P<file>[^\s:]{1,500}\.php):(?P<line>\d{1,9})$")
#: ``RuntimeException: carrier unavailable``: the exception an erroring test raised
_PHPUNIT_EXCEPTION = re.compile(r"^(?P<type>[A-Z][\w\\]{0,300}): (?P<msg>.*)$")
#: where a comparison's diff starts under the assertion's message
_PHPUNIT_DIFF = ("--- Expected", "+++ Actual", "@@ @@")
#: PHPUnit's class of a failed assertion
_PHPUNIT_ASSERTION = "ExpectationFailedException"


def parse_phpunit(text: str, repo: str = "") -> Extraction | None:
    """A failed PHPUnit test (9 and 10): the test (class and method, its data set's name) as
    the innermost frame, its printed location lines as frames, and what it said: the
    exception an erroring test raised, or the failed assertion's message (class
    ExpectationFailedException, a custom message before ``Failed asserting ...`` kept).

    Of several failed tests, the first by name decides (``--order-by=random`` prints them
    in another order each run, and the key must not change with it)."""
    if "There w" not in text:
        return None
    tests = _phpunit_tests(text.splitlines())
    if not tests:
        return None
    tests.sort(key=lambda t: _PHPUNIT_TEST.sub(r"\g<cls>::\g<method> \g<set>", t[0]))
    head, block = tests[0]
    test = _PHPUNIT_TEST.match(head)
    assert test is not None
    said, frames = _phpunit_block(block, repo)
    exception = _PHPUNIT_EXCEPTION.match(said[0]) if said else None
    if exception and not said[0].startswith("Failed asserting"):
        error_type, message = exception.group("type"), exception.group("msg")
    else:
        error_type, message = _PHPUNIT_ASSERTION, " ".join(said)
    name = test.group("method") + (f" {test.group('set')}" if test.group("set") else "")
    frames.append(Frame(test.group("cls"), name, None, True))
    return Extraction("test", error_type, message, tuple(frames), tool="phpunit")


def _phpunit_tests(lines: list[str]) -> list[tuple[str, list[str]]]:
    """Each failed or erroring test's header line and the lines below it."""
    tests: list[tuple[str, list[str]]] = []
    section = False
    for index, line in enumerate(lines):
        stripped = line.strip()
        if _PHPUNIT_SECTION.match(stripped):
            section = True
        elif _PHPUNIT_OTHER.match(stripped):
            section = False
        elif section and _PHPUNIT_TEST.match(stripped):
            tests.append((stripped, lines[index + 1:index + 1 + _PHPUNIT_BLOCK]))
    return tests


def _phpunit_block(block: list[str], repo: str) -> tuple[list[str], list[Frame]]:
    """What a failed test said (its lines above the frames, a comparison's diff left out:
    its values are data) and its frames, outermost first."""
    said: list[str] = []
    frames: list[Frame] = []
    in_diff = False
    for line in block:
        stripped = line.strip()
        if _PHPUNIT_TEST.match(stripped) or _PHPUNIT_OTHER.match(stripped) or stripped == "--":
            break
        frame = _PHPUNIT_FRAME.match(stripped)
        if frame:
            raw = frame.group("file")
            frames.append(Frame(normalize_path(raw, repo), "", int(frame.group("line")),
                                not is_library(raw)))
        elif stripped.startswith(_PHPUNIT_DIFF):
            in_diff = True
        elif stripped and not frames and not in_diff:
            said.append(stripped)
    frames.reverse()
    return said, frames


#: lines under a failed test's header read for its message and frames
_PHPUNIT_BLOCK = 60


# --- node:test ------------------------------------------------------------------------------

#: TAP (node --test's report when its output is not a terminal): ``not ok 3 - sums a cart``,
#: indented under its suite's ``# Subtest:`` for a nested test
_TAP_NOT_OK = re.compile(r"^(?P<indent> {0,64})not ok \d{1,9} - (?P<test>\S.{0,500})$")
#: a key of the YAML block under it (``  location: '/p/test/a.test.js:4:1'``, ``  error: |-``)
_TAP_KEY = re.compile(r"^(?P<indent> {0,70})(?P<key>[A-Za-z]{1,40}): ?(?P<value>.{0,2000})$")
#: the spec reporter's (Node 20+, on a terminal) failing test: ``✖ sums a cart (1.2ms)``
_SPEC_FAIL = re.compile(r"^(?P<indent> {0,64})\u2716 (?P<test>\S.{0,500}?) \([\d.]{1,20}m?s\)$")
#: its summary's location of the test below (``test at test/a.test.js:4:1``)
_SPEC_AT = re.compile(r"^ {0,64}test at (?P<loc>\S{1,500})$")
#: a thrown error's first line as the spec reporter prints it: ``AssertionError
#: [ERR_ASSERTION]: Expected values...``, ``TypeError [Error]: Cannot read...``
_NODE_TEST_HEAD = re.compile(
    r"^(?P<type>[A-Z]\w{0,200}(?:Error|Exception)|Error)(?: \[(?P<code>\w{1,100})\])?: ?"
    r"(?P<msg>.*)$")
#: a frame of the error's stack: ``at f (/p/a.js:4:36)`` (spec) or ``f (/p/a.js:4:36)`` (TAP)
_NODE_TEST_FRAME = re.compile(
    r"^\s{0,64}(?:at )?(?:(?P<func>[^()]{1,500}?) \()?(?P<file>[^()\s]{1,500}?):(?P<line>\d{1,9})"
    r":\d{1,9}\)?(?: \{)?$")
#: the runner's own code, which wraps an error a test threw (not the error's identity)
_NODE_TEST_WRAPPER = ("ERR_TEST_FAILURE", "Error")


def parse_node_test(text: str, repo: str = "") -> Extraction | None:
    """A failing ``node --test`` test, from its TAP report (``not ok N - name`` and the YAML
    block under it) or its spec report (``✖ name (1ms)`` and the error under it): the thrown
    error's class and message, the project frames of its stack, and the test itself (its
    file and name) as the innermost frame. Of several failing tests the first by file,
    line and name decides: tests of several files finish in any order."""
    if "not ok " in text and "---" in text:
        found = _node_tap(text.splitlines())
    elif "\u2716 " in text:
        found = _node_spec(text.splitlines())
    else:
        return None
    if not found:
        return None
    return _node_test_extraction(min(found, key=_location_order), repo)


#: one failing test: its name, location (``file:line:col`` or ""), error class, message and
#: stack lines
_NodeTest = tuple[str, str, str, str, list[str]]


def _location_order(test: _NodeTest) -> tuple[str, int, str]:
    file, line = _split_location(test[1])
    return file, line, test[0]


def _split_location(location: str) -> tuple[str, int]:
    """``/p/a.test.js:4:1`` -> (``/p/a.test.js``, 4)."""
    parts = location.rsplit(":", 2)
    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
        return parts[0], int(parts[1])
    return location, 0


def _error_type(name: str, code: str) -> str:
    return f"{name}[{code}]" if code and code not in _NODE_TEST_WRAPPER else name


def _node_tap(lines: list[str]) -> list[_NodeTest]:
    found: list[_NodeTest] = []
    for index, line in enumerate(lines):
        failed = _TAP_NOT_OK.match(line)
        if failed is None:
            continue
        fields = _tap_block(lines[index + 1:], len(failed.group("indent")) + 2)
        if fields.get("failureType") == "subtestsFailed" or fields.get("type") == "suite":
            continue  # a suite: the tests under it say what failed
        message = next((s.strip() for s in fields.get("error", "").splitlines() if s.strip()),
                       "")
        error_type = _error_type(fields.get("name", ""), fields.get("code", ""))
        found.append((failed.group("test").strip(), fields.get("location", ""),
                      error_type or "TestFailure", message, fields.get("stack", "").splitlines()))
    return found


def _tap_block(following: list[str], indent: int) -> dict[str, str]:
    """The keys of the YAML block (``---`` to ``...``) at ``indent`` under a TAP result
    line: scalars unquoted, a ``|-`` block as its lines (dedented)."""
    fields: dict[str, str] = {}
    if not following or following[0].strip() != "---":
        return fields
    key = ""
    block: list[str] = []
    for line in following[1:]:
        stripped = line.strip()
        if stripped == "..." and len(line) - len(line.lstrip(" ")) <= indent:
            break
        found = _TAP_KEY.match(line)
        if found and len(found.group("indent")) == indent:
            if key:
                fields[key] = "\n".join(block)
            key, block = "", []
            value = found.group("value").strip()
            if value in ("|-", "|", ">-", ">"):
                key = found.group("key")
            else:
                fields[found.group("key")] = _yaml_scalar(value)
        elif key:
            block.append(line[indent + 2:] if line.startswith(" " * (indent + 2)) else stripped)
    if key:
        fields[key] = "\n".join(block)
    return fields


def _yaml_scalar(value: str) -> str:
    """A YAML flow scalar as node's TAP reporter writes it (``'a''b'``, ``"a \\"b\\""``)."""
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def _node_spec(lines: list[str]) -> list[_NodeTest]:
    # the summary after "✖ failing tests:" repeats each failure with its location: read it
    # when it is there
    start = next((i for i, line in enumerate(lines) if line.strip() == "\u2716 failing tests:"),
                 -1)
    found: list[_NodeTest] = []
    location = ""
    for index in range(start + 1, len(lines)):
        line = lines[index]
        at = _SPEC_AT.match(line)
        if at:
            location = at.group("loc")
            continue
        failed = _SPEC_FAIL.match(line)
        if failed is None:
            continue
        indent = len(failed.group("indent"))
        block: list[str] = []
        for follow in lines[index + 1:]:
            if follow.strip() and len(follow) - len(follow.lstrip(" ")) <= indent:
                break
            block.append(follow)
        first = next((s.strip() for s in block if s.strip()), "")
        if first:  # (a suite's line has no error under it: its tests say what failed)
            head = _NODE_TEST_HEAD.match(first)
            error_type, message = (
                (_error_type(head.group("type"), head.group("code") or ""), head.group("msg"))
                if head else ("TestFailure", first))
            found.append((failed.group("test").strip(), location, error_type, message.strip(),
                          block))
        location = ""
    return found


def _node_test_extraction(test: _NodeTest, repo: str) -> Extraction:
    name, location, error_type, message, stack = test
    frames: list[Frame] = []
    raws: list[str] = []
    for line in stack:
        frame = _NODE_TEST_FRAME.match(line)
        if frame is None:
            continue
        raw = frame.group("file").removeprefix("file://")
        raws.append(raw)
        frames.append(Frame(normalize_path(raw, repo), (frame.group("func") or "").strip(),
                            int(frame.group("line")), not is_library(raw)))
    file, _ = _split_location(location.removeprefix("file://"))
    if file and not file.startswith("/"):
        # the spec summary's path is relative to where node ran; its stack's are absolute
        file = next((r for r in raws if r.endswith("/" + file.removeprefix("./"))), file)
    if not file:
        file = next((f.file for f in frames if f.function.startswith("TestContext.")),
                    next((f.file for f in reversed(frames) if f.in_project), ""))
    else:
        file = normalize_path(file, repo)
    # printed innermost first: outermost to innermost, then the test itself
    frames.reverse()
    frames.append(Frame(file, name, None, True))
    return Extraction("test", error_type, message, tuple(frames), tool="node")
