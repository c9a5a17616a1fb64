"""Grouping fixes of QA s16c #2/#4/#7 and s16a D5-D7/D10 (fixB6): node:test's TAP and spec
reports are read as a failing test (the test the innermost frame, its error the error); of
several failing ``cargo test`` tests the key never depends on which thread panicked first;
CI checkout roots of Jenkins jobs, macOS volumes and Windows agents collapse; a peer's
``name:port`` and a host's name are masked whatever their shape, a source file's line is no
port; a missing module's path is no package. Texts are realistic tool output written for
these tests; the CLI tests run ``heal diagnose`` and ``heal fingerprint`` in a subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.fingerprint import fingerprint_text
from pipeline.fingerprint.extract import extract

ROOT = Path(__file__).resolve().parents[2]


def _heal(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())",
         *args],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
        env={"HEAL_HOME": str(home), "PATH": "/usr/bin:/bin", "HOME": str(home)})


def _diagnosed(text: str, tmp_path: Path, name: str) -> dict[str, object]:
    src = tmp_path / f"{name}.txt"
    src.write_text(text, encoding="utf-8")
    done = _heal("diagnose", "--offline", "--no-semantic", "--json", str(src),
                 home=tmp_path / "home")
    assert done.stdout, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


# -- s16c #2: node:test ---------------------------------------------------------------------------

_TAP = """TAP version 13
# Subtest: {name}
not ok 1 - {name}
  ---
  duration_ms: 3.1{n}
  location: '/home/runner/work/shop/shop/test/{file}:{line}:1'
  failureType: 'testCodeFailure'
  error: |-
    {message}

    {actual} !== {expected}

  code: 'ERR_ASSERTION'
  name: 'AssertionError'
  expected: {expected}
  actual: {actual}
  operator: 'strictEqual'
  stack: |-
    TestContext.<anonymous> (/home/runner/work/shop/shop/test/{file}:{line}:40)
    Test.runInAsyncScope (node:async_hooks:206:9)
    Test.run (node:internal/test_runner/test:796:25)
    node:internal/process/task_queues:140:7
  ...
1..1
# tests 1
# pass 0
# fail 1
"""

_SPEC = """\u2716 {name} (2.{n}ms)
  AssertionError [ERR_ASSERTION]: {message}

  {actual} !== {expected}

      at TestContext.<anonymous> (/home/runner/work/shop/shop/test/{file}:{line}:40)
      at Test.runInAsyncScope (node:async_hooks:206:9)
      at node:internal/process/task_queues:140:7 {{
    generatedMessage: true,
    code: 'ERR_ASSERTION',
    actual: {actual},
    expected: {expected},
    operator: 'strictEqual'
  }}

\u2139 tests 1
\u2139 fail 1

\u2716 failing tests:

test at test/{file}:{line}:1
\u2716 {name} (2.{n}ms)
  AssertionError [ERR_ASSERTION]: {message}

  {actual} !== {expected}

      at TestContext.<anonymous> (/home/runner/work/shop/shop/test/{file}:{line}:40)
      at Test.runInAsyncScope (node:async_hooks:206:9)
      at node:internal/process/task_queues:140:7 {{
    generatedMessage: true,
    code: 'ERR_ASSERTION',
    actual: {actual},
    expected: {expected},
    operator: 'strictEqual'
  }}
"""

_TOTAL = {"name": "totals the basket", "file": "basket.test.js", "line": 12,
          "message": "Expected values to be strictly equal:", "actual": 41, "expected": 40}
_LOGIN = {"name": "rejects a wrong password", "file": "login.test.js", "line": 30,
          "message": "Expected values to be strictly equal:", "actual": "true",
          "expected": "false"}


def test_a_node_test_failure_is_its_test_and_its_error() -> None:
    found = extract(_TAP.format(n=1, **_TOTAL))
    assert (found.kind, found.tool) == ("test", "node")
    assert found.error_type == "AssertionError[ERR_ASSERTION]"
    assert found.message == "Expected values to be strictly equal:"
    test = found.frames[-1]
    assert (test.file, test.function) == ("test/basket.test.js", "totals the basket")
    # the runtime's frames are no project frames
    assert [f.function for f in found.project_frames()] == ["TestContext.<anonymous>",
                                                           "totals the basket"]


def test_two_node_test_failures_are_two_fingerprints_and_one_each_however_reported() -> None:
    total = {fingerprint_text(form.format(n=n, **_TOTAL)).fine
             for form in (_TAP, _SPEC) for n in (1, 7)}
    login = {fingerprint_text(form.format(n=n, **_LOGIN)).fine
             for form in (_TAP, _SPEC) for n in (1, 7)}
    assert len(total) == 1
    assert len(login) == 1
    assert total != login


def test_a_node_test_error_thrown_by_the_code_keeps_its_class() -> None:
    tap = """TAP version 13
not ok 1 - parses the header
  ---
  location: '/srv/api/test/header.test.js:8:3'
  failureType: 'testCodeFailure'
  error: "Cannot read properties of undefined (reading 'split')"
  code: 'ERR_TEST_FAILURE'
  name: 'TypeError'
  stack: |-
    parseHeader (/srv/api/lib/header.js:4:20)
    TestContext.<anonymous> (/srv/api/test/header.test.js:9:5)
  ...
"""
    found = extract(tap)
    assert found.error_type == "TypeError"
    assert found.message == "Cannot read properties of undefined (reading 'split')"
    assert [f.function for f in found.project_frames()] == [
        "TestContext.<anonymous>", "parseHeader", "parses the header"]


def test_a_failed_node_test_suite_defers_to_its_failing_test_and_the_order_is_stable() -> None:
    second = """# Subtest: b
    not ok 1 - drops empty lines
      ---
      location: '/srv/api/test/b.test.js:4:3'
      failureType: 'testCodeFailure'
      error: 'boom b'
      code: 'ERR_TEST_FAILURE'
      name: 'Error'
      ...
not ok 1 - b
  ---
  type: 'suite'
  location: '/srv/api/test/b.test.js:2:1'
  failureType: 'subtestsFailed'
  error: '1 subtests failed'
  ...
"""
    first = """not ok 2 - counts words
  ---
  location: '/srv/api/test/a.test.js:9:1'
  failureType: 'testCodeFailure'
  error: 'boom a'
  code: 'ERR_TEST_FAILURE'
  name: 'Error'
  ...
"""
    # test files finish in any order: the first failing test by file and line decides
    one, other = extract(second + first), extract(first + second)
    assert one == other
    assert (one.message, one.frames[-1].function) == ("boom a", "counts words")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_heal_diagnose_tells_real_node_test_failures_apart(tmp_path: Path) -> None:
    tests = {"cart": "test('applies the discount', () => assert.strictEqual(90 * 0.9, 80));",
             "user": "test('keeps the name', () => assert.strictEqual('a'.toUpperCase(), 'a'));"}
    fines: dict[str, set[str]] = {}
    for name, body in tests.items():
        project = tmp_path / name
        (project / "test").mkdir(parents=True)
        (project / "test" / f"{name}.test.js").write_text(
            "const { test } = require('node:test');\nconst assert = require('node:assert');\n"
            + body + "\n", encoding="utf-8")
        for reporter in ("tap", "spec"):
            ran = subprocess.run(["node", "--test", f"--test-reporter={reporter}"], cwd=project,
                                 capture_output=True, text=True, timeout=120)
            assert ran.returncode != 0
            result = _diagnosed(ran.stdout + ran.stderr, tmp_path, f"{name}-{reporter}")
            fingerprint = result["fingerprint"]
            assert isinstance(fingerprint, dict)
            fines.setdefault(name, set()).add(fingerprint["fine"])
            params = result["params"]
            assert isinstance(params, dict)
            assert params["error_type"] == "AssertionError[ERR_ASSERTION]"
    assert len(fines["cart"]) == 1
    assert len(fines["user"]) == 1
    assert fines["cart"] != fines["user"]


# -- s16c #4: cargo test with several failing tests ----------------------------------------------

def _cargo_block(test: str, tid: int) -> str:
    where, message = {
        "tests::sums_the_ledger": ("src/lib.rs:14:9", "assertion `left == right` failed\n"
                                   "  left: 1\n right: 0"),
        "tests::reads_past_the_end": ("src/lib.rs:6:5",
                                      "index out of bounds: the len is 2 but the index is 2"),
    }[test]
    return (f"---- {test} stdout ----\n\nthread '{test}' ({tid}) panicked at {where}:\n"
            f"{message}\nnote: run with `RUST_BACKTRACE=1` environment variable to display a "
            "backtrace\n\n")


def _cargo_run(order: tuple[str, str], tid: int) -> str:
    # libtest prints the captured blocks in the order the tests finished, its list sorted
    return ("\nrunning 2 tests\n" + "".join(f"test {t} ... FAILED\n" for t in order)
            + "\nfailures:\n\n" + "".join(_cargo_block(t, tid + i) for i, t in enumerate(order))
            + "\nfailures:\n" + "".join(f"    {t}\n" for t in sorted(order))
            + "\ntest result: FAILED. 0 passed; 2 failed; 0 ignored; 0 measured; 0 filtered"
            " out; finished in 0.01s\n\nerror: test failed, to rerun pass `--lib`\n")


_ORDERS = (("tests::sums_the_ledger", "tests::reads_past_the_end"),
           ("tests::reads_past_the_end", "tests::sums_the_ledger"))


def test_the_failing_cargo_test_in_the_key_does_not_depend_on_which_thread_finished_first(
        ) -> None:
    one, other = (fingerprint_text(_cargo_run(order, 2000 + 7 * n))
                  for n, order in enumerate(_ORDERS))
    assert (one.fine, one.coarse) == (other.fine, other.coarse)
    # the first of cargo's sorted list decides
    assert one.extraction.frames[-1].function == "reads_past_the_end"
    assert one.extraction.message.startswith("index out of bounds")


def test_a_cargo_panic_is_located_at_its_source_line_not_at_the_tests_module() -> None:
    one = _cargo_run(("tests::sums_the_ledger", "tests::sums_the_ledger"), 10)
    params = fingerprint_text(one).params
    assert (params["file"], params["line"]) == ("src/lib.rs", 14)
    # an uncaptured run (--nocapture) prints the panics only: the first by name decides
    live = ("thread 'tests::sums_the_ledger' panicked at src/lib.rs:14:9:\nleft != right\n"
            "thread 'tests::reads_past_the_end' panicked at src/lib.rs:6:5:\nindex out of "
            "bounds\n\ntest result: FAILED. 0 passed; 2 failed\n")
    swapped = "\n".join(live.splitlines()[2:4] + live.splitlines()[:2] + live.splitlines()[4:])
    assert fingerprint_text(live).fine == fingerprint_text(swapped).fine


def test_heal_diagnose_gives_a_cargo_run_one_fingerprint_whichever_test_panicked_first(
        tmp_path: Path) -> None:
    results = [_diagnosed(_cargo_run(order, 300 + n), tmp_path, f"run{n}")
               for n, order in enumerate(_ORDERS)]
    fingerprints = [r["fingerprint"] for r in results]
    assert fingerprints[0] == fingerprints[1]
    params = results[0]["params"]
    assert isinstance(params, dict)
    assert (params["file"], params["line"]) == ("src/lib.rs", 6)


# -- s16a D5: CI checkout roots -------------------------------------------------------------------

_GCC = "{root}/src/parse.c:41:7: error: 'cursor' undeclared (first use in this function)\n"
_DOTNET = ("Unhandled exception. System.InvalidOperationException: Sequence contains no elements\n"
           "   at Ledger.Books.Close(Int32 year) in {root}/src/Ledger/Books.cs:line 77\n"
           "   at Ledger.Program.Main(String[] args) in {root}/src/Ledger/Program.cs:line 9\n")
_CI_ROOTS = ("/home/runner/work/ledger/ledger", "/var/lib/jenkins/workspace/ledger-nightly",
             "/builds/books/ledger", "/__w/ledger/ledger", "/var/jenkins_home/workspace/ledger",
             "/home/vsts/work/1/s", "/Users/runner/work/ledger/ledger")
_WINDOWS_ROOTS = ("C:\\agent\\_work\\3\\s", "D:\\a\\ledger\\ledger",
                  "C:\\Jenkins\\workspace\\ledger-pr")


def test_a_file_reads_the_same_from_every_ci_checkout() -> None:
    assert len(_fines(*(_GCC.format(root=root) for root in _CI_ROOTS))) == 1
    windows = (_DOTNET.format(root=root).replace("/src/Ledger/", "\\src\\Ledger\\")
               for root in _WINDOWS_ROOTS)
    assert len(_fines(*windows, *(_DOTNET.format(root=r) for r in _CI_ROOTS))) == 1
    assert fingerprint_text(_GCC.format(root="/var/lib/jenkins/workspace/x")).params[
        "file"] == "src/parse.c"


def test_a_macos_volume_reads_like_a_runner_checkout() -> None:
    deep = "{root}/Sources/Ledger/Books/Close.swift:12:5: error: cannot find 'year' in scope\n"
    assert len(_fines(deep.format(root="/Volumes/ci/builds/Ledger"),
                      deep.format(root="/Users/runner/work/Ledger/Ledger"),
                      deep.format(root="/Users/ann/dev/Ledger"))) == 1


def _fines(*texts: str) -> set[str]:
    return {fingerprint_text(text).fine for text in texts}


def test_heal_fingerprint_reads_a_jenkins_and_a_github_checkout_as_one_file(
        tmp_path: Path) -> None:
    src = tmp_path / "errors.log"
    src.write_text("".join(_GCC.format(root=root) for root in _CI_ROOTS[:2]), encoding="utf-8")
    done = _heal("fingerprint", "--json", str(src), home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert len(records) == 2
    assert records[0]["fine"] == records[1]["fine"]


# -- s16a D6 (peers written name:port), D7 (host names), s16c #7 (a missing module's path) ------

def test_a_peer_written_name_port_after_on_or_in_parentheses_is_a_host() -> None:
    redis = "Redis::CannotConnectError: Error connecting to Redis on {peer} (Errno::ECONNREFUSED)"
    assert len(_fines(*(redis.format(peer=p) for p in ("cache:6380", "10.1.2.3:6380",
                                                       "cache.svc.local:6380")))) == 1
    ecto = "** (DBConnection.ConnectionError) tcp connect ({peer}): connection refused"
    assert len(_fines(*(ecto.format(peer=p) for p in ("pg:5433", "localhost:5433",
                                                      "10.9.8.7:5433")))) == 1


def test_a_source_files_line_is_no_host_and_no_port() -> None:
    gcc = fingerprint_text("net/sock.c:412:3: error: connect timed out waiting for peer\n")
    assert "host" not in gcc.params and "port" not in gcc.params
    ruby = fingerprint_text(
        "Errno::ECONNREFUSED: Connection refused - connect(2) for db.internal:5432\n"
        "  lib/store/pg_connection.rb:88:in `connect'\n")
    assert (ruby.params["host"], ruby.params["port"]) == ("db.internal", "5432")
    node = fingerprint_text(
        "Error: Cannot find module 'left-pad'\n"
        "    at Module._resolveFilename (node:internal/modules/cjs/loader:1144:15)\n"
        "    at Object.<anonymous> (/srv/web/index.js:2:1)\n")
    assert "port" not in node.params
    # a URL's host:port is one
    url = fingerprint_text("connect ECONNREFUSED while fetching http://search:9200/_bulk")
    assert url.params["port"] == "9200"


def test_a_syslog_lines_host_is_masked_whatever_its_shape() -> None:
    line = "{clock} {host} nginx[{pid}]: bind() to 0.0.0.0:80 failed (98: Address in use)"
    clocks = ("Jan  3 04:05:06", "Jun 30 23:59:59")
    assert len(_fines(*(line.format(clock=c, host=h, pid=p) for c in clocks
                        for h, p in (("edge-4", 11), ("lb-prod-eu-01", 902), ("gateway", 7))))) == 1
    # a level word after a clock is no host
    assert "ERROR" in fingerprint_text("04:05:06 ERROR worker[3]: queue full").normalized


def test_an_erlang_nodes_host_is_masked_whatever_its_shape() -> None:
    text = ("Error in process <0.{n}.0> on node 'billing@{host}' with exit value:\n"
            "{{badarg,[{{erlang,binary_to_atom,2,[]}}]}}\n")
    assert len(_fines(*(text.format(n=n, host=h) for n, h in
                        ((12, "app-3"), (907, "ip-172-31-0-9"), (4, "worker"))))) == 1


_MISSING = ("Error: Cannot find module '{module}'\nRequire stack:\n- /srv/web/index.js\n"
            "    at Module._resolveFilename (node:internal/modules/cjs/loader:1144:15)\n"
            "    at Object.<anonymous> (/srv/web/index.js:2:1)\n")


def test_a_missing_project_file_is_not_a_missing_package() -> None:
    packages = [fingerprint_text(_MISSING.format(module=m)) for m in ("left-pad", "@acme/ui")]
    files = [fingerprint_text(_MISSING.format(module=m))
             for m in ("./lib/format", "../shared/config", "/srv/web/gen/routes.mjs")]
    # two packages are two causes (fp-v6); every file of the project given by path is one
    assert len({fp.fine for fp in packages}) == 2
    assert len({fp.fine for fp in files}) == 1
    assert packages[0].fine != files[0].fine
    assert packages[0].params["package"] == "left-pad"
    assert all("package" not in fp.params for fp in files)


# -- s16a D10: small masking gaps -----------------------------------------------------------------

def test_a_daily_index_a_request_path_and_a_digit_short_sha_are_masked() -> None:
    es = ("[{day}T10:00:00,123][WARN ][o.e.i.m.MapperService] [node-1] failed to parse field"
          " [price] of type [long] in index [orders-{day}]")
    assert len(_fines(*(es.format(day=d) for d in ("2024.05.01", "2024.11.30")))) == 1
    assert "orders-<timestamp>" in fingerprint_text(es.format(day="2024.05.01")).normalized
    nginx = ('[error] 7#7: *31 connect() failed (111: Connection refused) while connecting to'
             ' upstream, client: 10.0.0.9, request: "{method} {path} HTTP/1.1"')
    assert len(_fines(*(nginx.format(method=m, path=p) for m, p in
                        (("GET", "/readyz"), ("GET", "/v2/users/7"), ("GET", "/"),
                         ("GET", "/search?q=x"))))) == 1
    pull = 'Failed to pull image "ghcr.io/acme/web:{tag}": not found'
    assert len(_fines(*(pull.format(tag=t) for t in ("4417723", "9c0ffee", "a1b2c3d4")))) == 1


def test_heal_diagnose_masks_peers_hosts_and_module_paths(tmp_path: Path) -> None:
    texts = {
        "a": "Error connecting to Redis on cache:6380 (Errno::ECONNREFUSED)\n",
        "b": "Error connecting to Redis on 10.1.2.3:6380 (Errno::ECONNREFUSED)\n",
        "c": "Jan  3 04:05:06 edge-4 nginx[11]: worker process exited on signal 9\n",
        "d": "Jan  3 04:05:06 gateway nginx[902]: worker process exited on signal 9\n",
        "e": _MISSING.format(module="./lib/format"),
        "f": _MISSING.format(module="left-pad"),
    }
    results = {k: _diagnosed(v, tmp_path, k) for k, v in texts.items()}
    fine = {k: r["fingerprint"]["fine"] for k, r in results.items()}  # type: ignore[index]
    assert fine["a"] == fine["b"]
    assert fine["c"] == fine["d"]
    assert fine["e"] != fine["f"]
    params = results["e"]["params"]
    assert isinstance(params, dict)
    assert "package" not in params and "port" not in params
