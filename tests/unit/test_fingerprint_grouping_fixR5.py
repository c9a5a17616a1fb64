"""Rust panics, test runners (cargo test, go test, jest, Gradle), Java 9+ traces and tsc's
pretty form: pairs of tool outputs that must split (different errors or different failing
tests) or merge (one error, seen twice with different noise).

Before, every Rust panic was headed by its ``note: run with RUST_BACKTRACE`` line, a failing
jest/go/cargo/Gradle test by the runner's tally or ``Received:`` line (so any two failing
tests were one), a Java root cause with only ``... N more`` or ``java.base/`` frames was
replaced by the cause above it, and tsc's default output was a log line, not a diagnostic.
The texts are the tools' own output formats, written for these tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from pipeline.config import Settings
from pipeline.events import ErrorEvent, FingerprintEvent
from pipeline.fingerprint import fingerprint_text
from pipeline.runtime.drain import drain_inline

_NOTE = "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n"
_CARGO_RUN = """   Compiling inventory v0.3.1 ({root}/inventory)
warning: unused variable: `retries`
 --> src/main.rs:7:9
  |
7 |     let retries = 3;
  |         ^^^^^^^ help: if this is intentional, prefix it with an underscore: `_retries`
  |
  = note: `#[warn(unused_variables)]` on by default

warning: `inventory` (bin "inventory") generated 1 warning
    Finished `dev` profile [unoptimized + debuginfo] target(s) in {secs}s
     Running `target/debug/inventory`
thread 'main' panicked at {loc}:
{message}
""" + _NOTE
_CARGO_RUN_OLD = """     Running `target/debug/inventory`
thread 'main' panicked at '{message}', {loc}
""" + _NOTE
_CARGO_TEST = """   Compiling parser v0.1.0 ({root}/parser)
    Finished `test` profile [unoptimized + debuginfo] target(s) in {secs}s
     Running unittests src/lib.rs (target/debug/deps/parser-{hash})

running 3 tests
test net::tests::timeout ... {timeout}
test tests::parses_empty ... {empty}
test tests::roundtrip ... ok

failures:

---- {failing} stdout ----
thread '{failing}' panicked at src/testutil.rs:{line}:5:
assertion `left == right` failed
  left: {left}
 right: 4
""" + _NOTE + """

failures:
    {failing}

test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in {secs}s

error: test failed, to rerun pass `--lib`
"""


def _cargo_test(failing: str, left: int = 3, line: int = 8, secs: str = "0.01",
                root: str = "/home/ann/src") -> str:
    return _CARGO_TEST.format(
        failing=failing, left=left, line=line, secs=secs, root=root, hash="9f2c1e0b7a3d4c55",
        timeout="FAILED" if failing == "net::tests::timeout" else "ok",
        empty="FAILED" if failing == "tests::parses_empty" else "ok")


_GO_TEST = """=== RUN   TestParseConfig
{parse_log}--- {parse_result}: TestParseConfig ({secs}s)
=== RUN   TestLoadDefaults
{load_log}--- {load_result}: TestLoadDefaults ({secs}s)
FAIL
FAIL\tgithub.com/acme/svc/config\t{secs}5s
FAIL
"""
_GO_LOG = "    config_test.go:{line}: expected port 8080, got {got}\n"


def _go_test(failing: str, line: int = 41, got: int = 0, secs: str = "0.00") -> str:
    log = _GO_LOG.format(line=line, got=got)
    return _GO_TEST.format(
        secs=secs,
        parse_log=log if failing == "TestParseConfig" else "",
        parse_result="FAIL" if failing == "TestParseConfig" else "PASS",
        load_log=log if failing == "TestLoadDefaults" else "",
        load_result="FAIL" if failing == "TestLoadDefaults" else "PASS")


_GO_TEST_QUIET = """--- FAIL: TestSplit ({secs}s)
    --- FAIL: TestSplit/{case} ({secs}s)
        split_test.go:{line}: Split("a,b") = [a b], want [a]
FAIL
exit status 1
FAIL\tgithub.com/acme/strs\t0.004s
"""

_JEST = """ FAIL  src/{file} ({secs} s)
  \u25cf {test}

    expect(received).toBe(expected) // Object.is equality

    Expected: {expected}
    Received: {received}

      {line} |   it('renders', () => {{
    > {line2} |     expect(count).toBe({expected});
         |                   ^

      at Object.<anonymous> (src/{file}:{line2}:19)

Test Suites: 1 failed, 3 passed, 4 total
Tests:       1 failed, 11 passed, 12 total
Snapshots:   0 total
Time:        {secs} s
Ran all test suites.
"""


def _jest(test: str, file: str = "App.test.js", expected: int = 2, received: int = 1,
          secs: str = "2.311", line: int = 17) -> str:
    return _JEST.format(test=test, file=file, expected=expected, received=received, secs=secs,
                        line=line, line2=line + 1)


_JEST_THROWN = """ FAIL  src/api/client.test.ts
  \u25cf client \u203a {test}

    TypeError: Cannot read properties of undefined (reading 'status')

      40 |   const res = await client.get('/health');
    > 41 |   expect(res.status).toBe(200);
         |              ^

      at Object.<anonymous> (src/api/client.test.ts:41:14)

Tests:       1 failed, 7 passed, 8 total
"""

_KOTLIN_RUNNER = "GradleCompilerRunnerWithWorkers$GradleKotlinCompilerWorkAction"
_GRADLE_KOTLIN = """> Task :app:checkKotlinGradlePluginConfigurationErrors
> Task :app:compileKotlin FAILED
e: file://{root}/app/src/main/kotlin/com/acme/Main.kt:{line}:5 Unresolved reference: {name}

FAILURE: Build failed with an exception.

* What went wrong:
Execution failed for task ':app:compileKotlin'.
> A failure occurred while executing org.jetbrains.kotlin.compilerRunner.{runner}
   > Compilation error. See log for more details

* Try:
> Run with --stacktrace option to get the stack trace.
> Run with --info or --debug option to get more log output.
> Run with --scan to get full insights.
> Get more help at https://help.gradle.org.

BUILD FAILED in {took}
{tasks} actionable tasks: {tasks} executed
""".replace("{runner}", _KOTLIN_RUNNER)
_GRADLE_TEST = """> Task :lib:compileJava UP-TO-DATE
> Task :lib:test FAILED

StringsTest > {test}() FAILED
    org.opentest4j.AssertionFailedError at StringsTest.java:{line}

6 tests completed, 1 failed

FAILURE: Build failed with an exception.

* What went wrong:
Execution failed for task ':lib:test'.
> There were failing tests. See the report at: file://{root}/lib/build/reports/tests/test/index.html

* Try:
> Run with --scan to get full insights.

BUILD FAILED in {took}
4 actionable tasks: 2 executed, 2 up-to-date
"""

_GRADLE_JAVAC = """> Task :compileJava
:compileJava{root}/src/main/java/app/App.java:{line}: error: {message}
        int x = "s";
                ^
1 error
 FAILED

FAILURE: Build failed with an exception.

* What went wrong:
Execution failed for task ':compileJava'.
> Compilation failed; see the compiler error output for details.

BUILD FAILED in 8s
"""
_GRADLE_RESOLVE = """FAILURE: Build failed with an exception.

* What went wrong:
Could not resolve all files for configuration ':app:compileClasspath'.
> Could not resolve com.squareup.okhttp3:okhttp:4.12.0.
  Required by:
      project :app
{causes}
* Try:
> Run with --stacktrace option to get the stack trace.

BUILD FAILED in {took}
"""

_JAVA = """2025-03-04 10:{mm}:12.204 ERROR 4411 --- [main] c.a.sync.Worker : sync failed
java.lang.IllegalStateException: sync of batch {batch} failed
\tat app//com.acme.sync.Worker.run(Worker.java:{line})
\tat java.base/java.lang.Thread.run(Thread.java:1583)
Caused by: java.net.SocketTimeoutException: Read timed out
\tat java.base/sun.nio.ch.NioSocketImpl.timedRead(NioSocketImpl.java:288)
\tat app//com.acme.sync.Client.fetch(Client.java:77)
\t... 2 more
Caused by: {root_cause}
\t... 4 more
"""
_JAVA_MODULE_FRAMES = """Exception in thread "main" java.lang.RuntimeException: upload failed
\tat app//com.acme.up.Uploader.send(Uploader.java:{line})
\tat app//com.acme.up.Main.main(Main.java:9)
Caused by: {root_cause}
\tat java.base/java.net.SocketInputStream.read(SocketInputStream.java:168)
\tat app//com.acme.up.Uploader.send(Uploader.java:{line})
\t... 1 more
"""

DIFFERENT = {
    "rust: two different panics of one program": (
        _CARGO_RUN.format(root="/home/ann/src", secs="0.52", loc="src/main.rs:10:5",
                          message="called `Option::unwrap()` on a `None` value"),
        _CARGO_RUN.format(root="/home/ann/src", secs="0.52", loc="src/db.rs:77:14",
                          message="failed to connect to database: Io(Os { code: 111, kind: "
                                  "ConnectionRefused, message: \"Connection refused\" })")),
    "rust: the same message at two places": (
        _CARGO_RUN.format(root="/srv", secs="1.1", loc="src/main.rs:10:5",
                          message="index out of bounds: the len is 3 but the index is 5"),
        _CARGO_RUN.format(root="/srv", secs="1.1", loc="src/grid.rs:31:18",
                          message="index out of bounds: the len is 3 but the index is 5")),
    "rust, older panic format: two panics": (
        _CARGO_RUN_OLD.format(message="called `Option::unwrap()` on a `None` value",
                              loc="src/main.rs:10:5"),
        _CARGO_RUN_OLD.format(message="attempt to subtract with overflow",
                              loc="src/main.rs:22:13")),
    "cargo test: two tests failing in one helper": (
        _cargo_test("tests::parses_empty"), _cargo_test("net::tests::timeout")),
    "go test: two tests with the same message in one file": (
        _go_test("TestParseConfig"), _go_test("TestLoadDefaults")),
    "go test: two subtests": (
        _GO_TEST_QUIET.format(secs="0.00", case="one_comma", line=23),
        _GO_TEST_QUIET.format(secs="0.00", case="trailing_comma", line=23)),
    "jest: two tests with the same matcher in one file": (
        _jest("App \u203a renders header"), _jest("App \u203a renders footer")),
    "jest: a matcher and a thrown error": (
        _jest("client \u203a retries on 503", file="api/client.test.ts"),
        _JEST_THROWN.format(test="retries on 503")),
    "gradle: a compile task and a test task": (
        _GRADLE_KOTLIN.format(root="/home/ann/src/shop", line=3, name="fooBar", took="1m 12s",
                              tasks=5),
        _GRADLE_TEST.format(root="/home/ann/src/shop", test="trimsBlank", line=14,
                            took="1m 12s")),
    "gradle: two failing tests of one task": (
        _GRADLE_TEST.format(root="/srv/shop", test="trimsBlank", line=14, took="9s"),
        _GRADLE_TEST.format(root="/srv/shop", test="splitsOnComma", line=14, took="9s")),
    "gradle: two kotlin errors": (
        _GRADLE_KOTLIN.format(root="/srv", line=3, name="fooBar", took="20s", tasks=5),
        _GRADLE_KOTLIN.format(root="/srv", line=3, name="Clock.now", took="20s", tasks=5)
        .replace("Unresolved reference: Clock.now", "Type mismatch: inferred type is String "
                 "but Int was expected")),
    "gradle: two javac errors of one task": (
        _GRADLE_JAVAC.format(root="/srv/shop", line=5,
                             message="incompatible types: String cannot be converted to int"),
        _GRADLE_JAVAC.format(root="/srv/shop", line=5, message="cannot find symbol")),
    "gradle: two causes of one unresolved dependency": (
        _GRADLE_RESOLVE.format(took="3s", causes="   > No cached version of com.squareup.okhttp3"
                               ":okhttp:4.12.0 available for offline mode.\n"),
        _GRADLE_RESOLVE.format(took="3s", causes="   > Could not GET 'https://repo.maven.apache"
                               ".org/maven2/com/squareup/okhttp3/okhttp/4.12.0/okhttp-4.12.0.pom'"
                               ".\n      > repo.maven.apache.org: Name or service not known\n")),
    "java: root causes printed with only '... N more'": (
        _JAVA.format(mm=11, batch=4411, line=52,
                     root_cause="java.net.SocketException: Connection reset"),
        _JAVA.format(mm=11, batch=4411, line=52,
                     root_cause="javax.net.ssl.SSLHandshakeException: PKIX path building "
                                "failed")),
    "java: root causes under java.base/ frames": (
        _JAVA_MODULE_FRAMES.format(line=40,
                                   root_cause="java.net.SocketException: Connection reset"),
        _JAVA_MODULE_FRAMES.format(line=40,
                                   root_cause="java.io.EOFException: Unexpected end of ZLIB "
                                              "input stream")),
}

SAME = {
    "rust: one panic in two checkouts and builds": (
        _CARGO_RUN.format(root="/home/ann/src", secs="0.52", loc="src/main.rs:10:5",
                          message="called `Option::unwrap()` on a `None` value"),
        _CARGO_RUN.format(root="/home/runner/work/inventory", secs="3.07", loc="src/main.rs:12:9",
                          message="called `Option::unwrap()` on a `None` value")),
    "rust: one panic in the old and the new format": (
        _CARGO_RUN.format(root="/srv", secs="0.52", loc="src/main.rs:10:5",
                          message="called `Option::unwrap()` on a `None` value"),
        _CARGO_RUN_OLD.format(message="called `Option::unwrap()` on a `None` value",
                              loc="src/main.rs:10:5")),
    "rust: the thread id newer Rust prints": (
        _CARGO_RUN.format(root="/srv", secs="0.52", loc="src/main.rs:10:5",
                          message="called `Option::unwrap()` on a `None` value"),
        _CARGO_RUN.format(root="/srv", secs="0.52", loc="src/main.rs:10:5",
                          message="called `Option::unwrap()` on a `None` value"
                          ).replace("thread 'main' panicked", "thread 'main' (8288) panicked")),
    "gradle: one javac error, glued to the task's name or not": (
        _GRADLE_JAVAC.format(root="/srv/shop", line=5, message="cannot find symbol"),
        _GRADLE_JAVAC.format(root="/srv/shop", line=5, message="cannot find symbol")
        .replace(":compileJava/srv", "/srv")),
    "gradle: one javac error in two checkouts": (
        _GRADLE_JAVAC.format(root="/home/ann/shop", line=5, message="cannot find symbol"),
        _GRADLE_JAVAC.format(root="/home/runner/work/shop", line=7, message="cannot find symbol")),
    "cargo test: one test, other values and timings": (
        _cargo_test("tests::parses_empty", left=3, line=8, secs="0.01"),
        _cargo_test("tests::parses_empty", left=7, line=9, secs="0.13", root="/builds/acme")),
    "go test: one test, other line and value, -v or not": (
        _go_test("TestParseConfig", line=41, got=0),
        "--- FAIL: TestParseConfig (0.01s)\n" + _GO_LOG.format(line=44, got=1)
        + "FAIL\nFAIL\tgithub.com/acme/svc/config\t0.012s\nFAIL\n"),
    "jest: one test, other values and timings": (
        _jest("App \u203a renders header", expected=2, received=1, secs="2.311", line=17),
        _jest("App \u203a renders header", expected=3, received=0, secs="4.9", line=21)),
    "gradle: one kotlin error, another build time and checkout": (
        _GRADLE_KOTLIN.format(root="/home/ann/src/shop", line=3, name="fooBar", took="1m 12s",
                              tasks=5),
        _GRADLE_KOTLIN.format(root="/home/runner/work/shop", line=4, name="fooBar", took="48s",
                              tasks=7)),
    "gradle: one failing test, another build time": (
        _GRADLE_TEST.format(root="/srv/shop", test="trimsBlank", line=14, took="1m 2s"),
        _GRADLE_TEST.format(root="/home/bo/shop", test="trimsBlank", line=15, took="31s")),
    "java: one root cause, other batch and line": (
        _JAVA.format(mm=11, batch=4411, line=52,
                     root_cause="java.net.SocketException: Connection reset"),
        _JAVA.format(mm=48, batch=97, line=55,
                     root_cause="java.net.SocketException: Connection reset")),
    "tsc: the pretty and the plain form of one error": (
        "src/app.ts:3:22 - error TS2307: Cannot find module 'lodash' or its corresponding "
        "type declarations.\n\n3 import _ from 'lodash';\n                       ~~~~~~~~\n\n\n"
        "Found 1 error in src/app.ts:3\n\n",
        "src/app.ts(3,22): error TS2307: Cannot find module 'lodash' or its corresponding "
        "type declarations.\n"),
}


@pytest.mark.parametrize("name", sorted(DIFFERENT))
def test_different_errors_and_tests_get_different_fingerprints(name: str) -> None:
    a, b = (fingerprint_text(text) for text in DIFFERENT[name])
    assert a.fine != b.fine, (name, a.normalized, b.normalized)


@pytest.mark.parametrize("name", sorted(SAME))
def test_one_error_seen_twice_gets_one_fingerprint(name: str) -> None:
    a, b = (fingerprint_text(text) for text in SAME[name])
    assert a.fine == b.fine, (name, a.normalized, a.extraction, b.normalized, b.extraction)


def test_a_rust_panic_is_headed_by_its_message_at_its_location() -> None:
    fp = fingerprint_text(_CARGO_RUN.format(root="/srv", secs="0.5", loc="src/db.rs:77:14",
                                            message="pool timed out while waiting"))
    assert fp.extraction is not None
    assert (fp.extraction.kind, fp.extraction.error_type) == ("rust", "panic")
    assert fp.normalized == "panic: pool timed out while waiting"
    assert [(f.file, f.line) for f in fp.extraction.frames] == [("src/db.rs", 77)]
    assert fp.params["file"] == "src/db.rs"


def test_a_failing_cargo_test_is_named_and_the_assertion_is_its_headline() -> None:
    fp = fingerprint_text(_cargo_test("net::tests::timeout"))
    assert fp.extraction is not None
    assert fp.normalized == "panic: assertion `left == right` failed"
    assert [(f.file, f.function) for f in fp.extraction.frames] == [
        ("src/testutil.rs", ""), ("net::tests", "timeout")]
    assert fp.extraction.tool == "cargo"


def test_runner_failures_name_the_test_and_its_file() -> None:
    go = fingerprint_text(_go_test("TestLoadDefaults")).extraction
    jest = fingerprint_text(_jest("App \u203a renders header")).extraction
    gradle = fingerprint_text(_GRADLE_KOTLIN.format(root="/srv/shop", line=3, name="fooBar",
                                                    took="9s", tasks=5), repo="/srv/shop"
                              ).extraction
    assert go is not None and jest is not None and gradle is not None
    assert (go.kind, go.tool, go.message) == ("test", "go", "expected port 8080, got 0")
    assert [(f.file, f.function) for f in go.frames] == [("config_test.go", "TestLoadDefaults")]
    assert (jest.tool, jest.message) == (
        "jest", "expect(received).toBe(expected) // Object.is equality")
    assert jest.frames[-1].file == "src/App.test.js"
    assert jest.frames[-1].function == "App \u203a renders header"
    assert (gradle.kind, gradle.message) == ("gradle", "Unresolved reference: fooBar")
    assert [(f.file, f.function) for f in gradle.frames] == [
        ("app/src/main/kotlin/com/acme/Main.kt", ""), (":app", "compileKotlin")]


def test_java_root_cause_is_the_last_caused_by_even_without_frames_of_its_own() -> None:
    fp = fingerprint_text(_JAVA.format(mm=1, batch=1, line=52,
                                       root_cause="java.net.SocketException: Connection reset"))
    assert fp.extraction is not None
    assert fp.extraction.error_type == "java.net.SocketException"
    assert fp.extraction.message == "Connection reset"
    assert [t for t, _ in fp.extraction.chain] == [
        "java.lang.IllegalStateException", "java.net.SocketTimeoutException"]
    # its frames are its wrapper's, module-prefixed frames read like any other
    assert "com.acme.sync.Client.fetch" in [f.function for f in fp.extraction.frames]


def test_a_go_test_panic_keeps_the_test_and_the_panic() -> None:
    text = """--- FAIL: TestHandler (0.00s)
panic: runtime error: invalid memory address or nil pointer dereference [recovered]
\tpanic: runtime error: invalid memory address or nil pointer dereference
[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x5f1e2a]

goroutine 7 [running]:
testing.tRunner.func1.2({0x6a1b80, 0x8e4f10})
\t/usr/local/go/src/testing/testing.go:1545 +0x238
github.com/acme/svc/api.(*Server).Handle(0x0, {0x0, 0x0})
\t/home/runner/work/svc/svc/api/server.go:88 +0x2a
github.com/acme/svc/api.TestHandler(0xc000103380)
\t/home/runner/work/svc/svc/api/server_test.go:21 +0x45
FAIL\tgithub.com/acme/svc/api\t0.011s
"""
    fp = fingerprint_text(text)
    assert fp.extraction is not None
    assert (fp.extraction.kind, fp.extraction.error_type) == ("test", "runtime error")
    assert fp.extraction.frames[-1].function == "TestHandler"
    assert "api.(*Server).Handle" in fp.extraction.frames[-3].function
    other = fingerprint_text(text.replace("TestHandler (", "TestRouter ("))
    assert other.fine != fp.fine


def test_systemctl_status_dots_are_not_jest() -> None:
    text = ("\u25cf nginx.service - A high performance web server\n"
            "     Loaded: loaded (/lib/systemd/system/nginx.service; enabled)\n"
            "     Active: failed (Result: exit-code) since Tue 2025-03-04 10:11:12 UTC\n")
    fp = fingerprint_text(text)
    assert fp.extraction is not None and fp.extraction.kind != "test"


def test_the_stage_splits_different_panics_and_tests_and_merges_one_error_s_forms(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    # Given each pair's two texts published as error events, as any producer would
    settings = Settings(redis_url=redis_url, database_url=None, home=tmp_path, prefix=prefix)
    client = redis.Redis.from_url(redis_url)
    pairs = {**{f"split {k}": v for k, v in DIFFERENT.items()},
             **{f"merge {k}": v for k, v in SAME.items()}}
    names = sorted(pairs)
    for i, name in enumerate(names):
        for side, text in enumerate(pairs[name]):
            event = ErrorEvent(id=f"p{i}s{side}", text=text)
            client.xadd(settings.stream("errors"), {"event": event.encode()})
    # When the real fingerprint stage drains them through the stream runtime
    assert drain_inline(settings, client, stages=["fingerprint"]) == 2 * len(names)
    fine = {}
    for _, fields in client.xrange(settings.stream("fingerprints")):
        event = FingerprintEvent.decode(fields[b"event"])
        fine[event.id.removesuffix(":fingerprint")] = event.fine
    # Then different panics and failing tests split, and each error's two copies merge
    wrong = [name for i, name in enumerate(names)
             if (fine[f"p{i}s0"] == fine[f"p{i}s1"]) != name.startswith("merge ")]
    assert not wrong, wrong
