"""The headline of a text no structured parser reads, and rspec, vitest and .NET failures.

Before, a CI runner's or make's own last line (``make: *** [Makefile:12: release] Error 2``,
``Error: Process completed with exit code 1.``, ``##[error]...``) was the error of any text
that no structured parser recognised, so unrelated failures shared one fingerprint and a
step's own output and the job log's excerpt of it were two; and the fallback took the last
line, so every rspec failure was its ``Randomized with seed N``, every vitest failure its
``Duration`` line, every unhandled .NET exception its ``at Program.Main`` frame and every
``kubectl describe`` its ``Restart Count``. The texts are the tools' own output formats,
written for these tests.
"""

from __future__ import annotations

from pathlib import Path

import redis

from pipeline.config import Settings
from pipeline.events import ErrorEvent, FingerprintEvent
from pipeline.fingerprint import fingerprint_text
from pipeline.fingerprint.extract import extract, readable
from pipeline.fingerprint.model import Frame
from pipeline.fingerprint.parsers_lines import parse_text
from pipeline.runtime.drain import drain_inline

_MAKE = "make: *** [Makefile:12: release] Error 2\n"
_GHA = "Error: Process completed with exit code 1.\n"
_GHA_ANNOTATION = "##[error]Process completed with exit code 1.\n"
_GITLAB = "ERROR: Job failed: exit code 1\n"

_TAR = "tar: build/site.tgz: Cannot open: No such file or directory\n"
_RSYNC = "rsync: connection unexpectedly closed (0 bytes received so far) [sender]\n"
_GPG = "gpg: signing failed: Inappropriate ioctl for device\n"
_SCP = "scp: /var/www/releases/42: Permission denied (publickey).\n"

_RSPEC = """Randomized with seed {seed}

..F...

Failures:

  1) {test}
     Failure/Error: {code}

       expected: {expected}
            got: {got}

       (compared using ==)
     # ./spec/{spec}:{line}:in `block (2 levels) in <top (required)>'

Finished in {secs} seconds (files took 1.31 seconds to load)
6 examples, 1 failure

Failed examples:

rspec ./spec/{spec}:{start} # {test}

Randomized with seed {seed}
"""
_RSPEC_RAISED = """Failures:

  1) Shipment#label prints the carrier's code
     Failure/Error: carrier.code.upcase

     NoMethodError:
       undefined method `code' for nil
     # ./app/models/shipment.rb:{line}:in `label'
     # ./spec/models/shipment_spec.rb:8:in `block (2 levels) in <top (required)>'

Finished in 0.2 seconds (files took 1.1 seconds to load)
4 examples, 1 failure

Failed examples:

rspec ./spec/models/shipment_spec.rb:6 # Shipment#label prints the carrier's code

Randomized with seed {seed}
"""
_VITEST = """ RUN  v1.6.0 {root}

 \u276f src/{file}.test.ts  (5 tests | 1 failed) {ms}ms
   \u276f src/{file}.test.ts > {test}
     \u2192 {message}

\u23af\u23af\u23af\u23af\u23af\u23af\u23af Failed Tests 1 \u23af\u23af\u23af\u23af\u23af\u23af\u23af

 FAIL  src/{file}.test.ts > {test}
AssertionError: {message}
 \u276f src/{file}.test.ts:{line}:18
     {line}|     expect(result).toBe(expected)
       |                  ^

\u23af\u23af\u23af\u23af\u23af\u23af\u23af\u23af\u23af\u23af\u23af\u23af\u23af\u23af\u23af\u23af\u23af\u23af\u23af\u23af

 Test Files  1 failed | 7 passed (8)
      Tests  1 failed | 30 passed (31)
   Start at  {clock}
   Duration  {secs}s (transform 120ms, setup 0ms, collect 310ms, tests {ms}ms, environment 0ms)
"""
_DOTNET = """Unhandled exception. {type}: {message}
   at {lib}
   at Ledger.{cls}.{method}(String path) in {root}/src/Ledger/{cls}.cs:line {line}
   at Ledger.Program.Main(String[] args) in {root}/src/Ledger/Program.cs:line 11
"""
_DOTNET_INNER = """Unhandled exception. System.AggregateException: One or more errors occurred. \
(Timeout)
 ---> System.TimeoutException: The operation has timed out.
   at Ledger.Sync.Pull() in /src/Ledger/Sync.cs:line 40
   --- End of inner exception stack trace ---
   at System.Threading.Tasks.Task.Wait()
   at Ledger.Program.Main(String[] args) in /src/Ledger/Program.cs:line 11
"""
_KUBECTL = """Name:             billing-6b8f9c7d5-{pod}
Namespace:        prod
Containers:
  billing:
    State:          Running
      Started:      Mon, 04 Mar 2024 09:{mm}:00 +0000
    Last State:     Terminated
      Reason:       {reason}
      Exit Code:    {code}
    Ready:          True
    Restart Count:  {restarts}
"""


def _rspec(test: str, code: str, spec: str, seed: int = 4101, secs: str = "0.051",
           line: int = 14) -> str:
    return _RSPEC.format(test=test, code=code, spec=spec, seed=seed, secs=secs, line=line,
                         start=line - 3, expected='"EUR 10.00"', got='"EUR 10.0"')


def _vitest(file: str, test: str, message: str, *, root: str = "/home/dev/shop",
            ms: int = 14, secs: str = "1.21", clock: str = "10:02:03", line: int = 21) -> str:
    return _VITEST.format(file=file, test=test, message=message, root=root, ms=ms, secs=secs,
                          clock=clock, line=line)


def _dotnet(type_: str, message: str, lib: str, cls: str, method: str, *,
            root: str = "/home/runner/work/ledger/ledger", line: int = 27) -> str:
    return _DOTNET.format(type=type_, message=message, lib=lib, cls=cls, method=method,
                          root=root, line=line)


_ARG_NULL = ("System.ArgumentNullException", "Value cannot be null. (Parameter 'key')",
             "System.Collections.Generic.Dictionary`2.FindValue(TKey key)", "Rates", "For")
_NO_FILE = ("System.IO.FileNotFoundException", "Could not find file '/data/ledger.csv'.",
            "System.IO.FileStream.ValidateFileHandle(SafeFileHandle fileHandle)", "Import",
            "Load")

#: pairs of texts that are two different errors
DIFFERENT: dict[str, tuple[str, str]] = {
    "tar vs rsync, both ending in make's report": (_TAR + _MAKE, _RSYNC + _MAKE),
    "gpg vs scp, both ending in the GitHub step's report": (_GPG + _GHA, _SCP + _GHA),
    "tar vs gpg, both ending in GitHub's annotation": (_TAR + _GHA_ANNOTATION,
                                                       _GPG + _GHA_ANNOTATION),
    "rsync vs scp, both ending in GitLab's report": (_RSYNC + _GITLAB, _SCP + _GITLAB),
    "rspec: two failing examples": (
        _rspec("Money#to_s formats the cents", "expect(money.to_s).to eq(\"EUR 10.00\")",
               "models/money_spec.rb"),
        _rspec("Invoice#total adds the tax", "expect(invoice.total).to eq(\"EUR 10.00\")",
               "models/invoice_spec.rb")),
    "vitest: two failing tests": (
        _vitest("money", "format > pads the cents", "expected '10.0' to be '10.00'"),
        _vitest("cart", "total > adds the tax", "expected 10 to be 12")),
    ".NET: two unhandled exceptions": (_dotnet(*_ARG_NULL), _dotnet(*_NO_FILE)),
    "kubectl describe: OOMKilled vs Error": (
        _KUBECTL.format(pod="x7k2q", mm="10", reason="OOMKilled", code=137, restarts=4),
        _KUBECTL.format(pod="x7k2q", mm="10", reason="Error", code=1, restarts=4)),
}

#: pairs of texts that are one error seen twice (other noise, with or without a trailer)
SAME: dict[str, tuple[str, str]] = {
    "tar alone and after make's report": (_TAR, _TAR + _MAKE),
    "tar after make's and after GitHub's report": (_TAR + _MAKE, _TAR + _GHA),
    "gpg alone and in a job log with the annotation": (
        _GPG, "2025-01-09T08:00:01.1000000Z " + _GPG
        + "2025-01-09T08:00:01.2000000Z " + _GHA_ANNOTATION),
    "rspec: one example with another seed and timing": (
        _rspec("Money#to_s formats the cents", "expect(money.to_s).to eq(\"EUR 10.00\")",
               "models/money_spec.rb"),
        _rspec("Money#to_s formats the cents", "expect(money.to_s).to eq(\"EUR 10.00\")",
               "models/money_spec.rb", seed=77, secs="0.312")),
    "rspec: one exception with another seed and line": (
        _RSPEC_RAISED.format(line=31, seed=1), _RSPEC_RAISED.format(line=33, seed=99)),
    "vitest: one test with other timings and checkout": (
        _vitest("money", "format > pads the cents", "expected '10.0' to be '10.00'"),
        _vitest("money", "format > pads the cents", "expected '10.0' to be '10.00'",
                root="/builds/shop", ms=40, secs="3.02", clock="17:45:09", line=23)),
    ".NET: one exception in another checkout, then make's report": (
        _dotnet(*_ARG_NULL), _dotnet(*_ARG_NULL, root="/__w/ledger/ledger", line=29) + _MAKE),
    "kubectl describe: one OOM kill of another pod and restart count": (
        _KUBECTL.format(pod="x7k2q", mm="10", reason="OOMKilled", code=137, restarts=4),
        _KUBECTL.format(pod="p9w4m", mm="41", reason="OOMKilled", code=137, restarts=9)),
}


def test_different_errors_get_different_fingerprints() -> None:
    same = [name for name, (a, b) in DIFFERENT.items()
            if fingerprint_text(a).fine == fingerprint_text(b).fine]
    assert not same, same


def test_one_error_seen_twice_gets_one_fingerprint() -> None:
    split = [name for name, (a, b) in SAME.items()
             if fingerprint_text(a).fine != fingerprint_text(b).fine]
    assert not split, split


def test_a_runner_line_never_heads_a_text_holding_anything_else() -> None:
    for trailer in (_MAKE, _GHA, _GHA_ANNOTATION, _GITLAB):
        for text in (_TAR + trailer, "$ ./deploy.sh\n" + _TAR + "\n" + trailer):
            assert extract(readable(text)).message == _TAR.strip()
    # a text of runner lines only still has a headline: its own last line
    assert extract(_MAKE).message
    assert parse_text(_GITLAB + _GHA).message == _GHA.strip()


def test_the_fallback_headline_is_the_line_that_says_what_failed() -> None:
    # never a frame, a tally, the run's timing or seed, a heading or a line without letters
    text = ("Failures:\nnull value in column \"sku\" violates not-null constraint\n"
            "   at Shop.Repo.Save() in /src/Repo.cs:line 4\n"
            "  from bin/import:5:in '<main>'\n3 examples, 1 failure\n"
            "Finished in 0.2 seconds\nRandomized with seed 12\n^\n")
    assert parse_text(text).message.startswith("null value in column")
    # an exception's own line over a line with an error word, the later of equals
    text = ("request failed\nshop.errors.StockMissing: sku 12 is gone\nretrying\n"
            "giving up: retry budget exhausted\n")
    assert parse_text(text).message == "shop.errors.StockMissing: sku 12 is gone"
    # of lines naming a cause the later; of lines only reporting a failure the first
    assert parse_text("disk missing\nhost not found\ndone\n").message == "host not found"
    assert parse_text("first failure\nsecond failure\ndone\n").message == "first failure"
    # a one-line text is its own headline, whatever it says
    assert parse_text("Randomized with seed 12").message == "Randomized with seed 12"


def test_rspec_vitest_and_dotnet_failures_name_what_failed() -> None:
    rspec = extract(readable(DIFFERENT["rspec: two failing examples"][0]))
    assert (rspec.kind, rspec.tool, rspec.error_type) == ("test", "rspec",
                                                          "ExpectationNotMetError")
    assert rspec.message == 'expect(money.to_s).to eq("EUR 10.00")'
    assert rspec.frames[-1] == Frame("spec/models/money_spec.rb", "Money#to_s formats the cents",
                                     None, True)
    raised = extract(_RSPEC_RAISED.format(line=31, seed=1))
    assert (raised.error_type, raised.message) == ("NoMethodError",
                                                   "undefined method `code' for nil")
    assert [f.function for f in raised.frames] == [
        "block (2 levels) in <top (required)>", "label", "Shipment#label prints the carrier's code"]
    vitest = extract(readable(DIFFERENT["vitest: two failing tests"][0]))
    assert (vitest.tool, vitest.error_type, vitest.message) == (
        "vitest", "AssertionError", "expected '10.0' to be '10.00'")
    assert vitest.frames[-1] == Frame("src/money.test.ts", "format > pads the cents", None, True)
    dotnet = extract(_dotnet(*_ARG_NULL))
    assert (dotnet.kind, dotnet.error_type) == ("dotnet", "System.ArgumentNullException")
    assert [f.function for f in dotnet.project_frames()] == ["Ledger.Program.Main",
                                                             "Ledger.Rates.For"]
    inner = extract(_DOTNET_INNER)
    assert (inner.error_type, inner.message) == ("System.TimeoutException",
                                                 "The operation has timed out.")
    assert inner.chain == (("System.AggregateException", "One or more errors occurred. (Timeout)"),)


def test_the_stage_splits_unrelated_failures_and_merges_one_failure_s_copies(
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
            event = ErrorEvent(id=f"x{i}s{side}", text=text)
            client.xadd(settings.stream("errors"), {"event": event.encode()})
    # When the real fingerprint stage drains them through the stream runtime
    assert drain_inline(settings, client, stages=["fingerprint"]) == 2 * len(names)
    fine = {}
    for _, fields in client.xrange(settings.stream("fingerprints")):
        event = FingerprintEvent.decode(fields[b"event"])
        fine[event.id.removesuffix(":fingerprint")] = event.fine
    # Then unrelated failures split (whatever the runner printed after them), and each
    # failure's two copies merge
    wrong = [name for i, name in enumerate(names)
             if (fine[f"x{i}s0"] == fine[f"x{i}s1"]) != name.startswith("merge ")]
    assert not wrong, wrong
