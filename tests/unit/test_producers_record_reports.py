"""Record assembly keeps one tool's multi-line report together (QA s16a D11) by shapes any
tool shares (frames, gutters, carets, notes, boxes, headings that end in ``:``, runner
sections), while an ordinary log keeps one record per line.

The texts under ``tests/fixtures/reports/`` are real output captured with node 20, cargo,
rustc and gcc; the others are written here in each tool's shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from producers.records import Record, RecordAssembler

REPORTS = Path(__file__).resolve().parents[1] / "fixtures" / "reports"
HEAL = str(Path(sys.executable).parent / "heal")


def assemble(text: str) -> list[Record]:
    assembler = RecordAssembler()
    out: list[Record] = []
    offset = 0
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        out += assembler.feed(line, offset, offset + len(line), number)
        offset += len(line)
    return out + assembler.flush()


def texts(text: str) -> list[str]:
    return [r.text for r in assemble(text)]


RSPEC = """\
Failures:

  1) Cart#total adds the shipping fee
     Failure/Error: expect(cart.total).to eq(12)

       expected: 12
            got: 10

       (compared using ==)
     # ./spec/models/cart_spec.rb:9:in `block (2 levels) in <top (required)>'

Finished in 0.41 seconds (files took 0.2 seconds to load)
"""

JEST = """\
FAIL src/cart.test.js
  \u25cf cart \u203a adds the shipping fee

    expect(received).toBe(expected) // Object.is equality

    Expected: 12
    Received: 10

       7 |   it('adds the shipping fee', () => {
    >  8 |     expect(total(cart)).toBe(12);
         |                         ^
       9 |   });

      at Object.<anonymous> (src/cart.test.js:8:25)

Tests:       1 failed, 4 passed, 5 total
"""

TERRAFORM = """\
\u2577
\u2502 Error: Unsupported attribute
\u2502
\u2502   on outputs.tf line 3, in output "url":
\u2502    3:   value = aws_lb.web.dns
\u2502
\u2502 This object has no argument, nested block, or exported attribute named "dns".
\u2575
"""

PHP = """\
PHP Fatal error:  Uncaught Error: Call to undefined function mb_strlen() in /srv/app/src/Text.php:12
Stack trace:
#0 /srv/app/src/Page.php(40): App\\Text::length('abc')
#1 {main}
  thrown in /srv/app/src/Text.php on line 12
"""

RUBY = """\
NoMethodError (undefined method `total' for nil:NilClass):
app/models/cart.rb:14:in `checkout'
app/controllers/carts_controller.rb:22:in `create'
"""

PSYCOPG = """\
Traceback (most recent call last):
  File "/srv/app/db.py", line 9, in load
    cur.execute("SELECT totl FROM carts WHERE id = %s", (7,))
psycopg2.errors.UndefinedColumn: column "totl" does not exist
LINE 1: SELECT totl FROM carts WHERE id = 7
               ^
2026-01-02 10:00:01 INFO retrying
"""

#: an ordinary log: every line has its time (or a level), so every line is its own record,
#: a heading that ends in ``:`` included
ORDINARY = """\
2026-01-02 10:00:00 INFO loaded settings:
2026-01-02 10:00:00 INFO listening on :8080
081109 203615 148 INFO dfs.DataNode: Receiving block blk_1
Jun 14 15:16:01 host sshd[1]: Accepted password for root:
Jun 14 15:16:02 host sshd[1]: session opened
[ERROR] disk full
[ERROR] disk full
"""


def test_test_runner_reports_stay_one_record() -> None:
    rspec = texts(RSPEC)
    assert rspec[0].startswith("Failures:") and "got: 10" in rspec[0]
    assert rspec[0].endswith("in <top (required)>'")
    assert rspec[1].startswith("Finished in")
    jest = texts(JEST)
    assert len(jest) == 2 and jest[0].startswith("FAIL src/cart.test.js")
    assert "adds the shipping fee" in jest[0] and "cart.test.js:8:25" in jest[0]
    (cargo_section,) = [t for t in texts((REPORTS / "cargo_test.txt").read_text())
                        if t.startswith("---- tests::parses_header stdout")]
    assert "assertion `left == right` failed" in cargo_section
    assert " right: 4" in cargo_section and "stack backtrace:" in cargo_section
    assert "test result" not in cargo_section  # the section ends where cargo ends it


def test_boxed_traced_and_compiler_reports_stay_one_record() -> None:
    assert texts(TERRAFORM) == [TERRAFORM.rstrip("\n")]
    assert texts(PHP) == [PHP.rstrip("\n")]
    assert texts(RUBY) == [RUBY.rstrip("\n")]
    rustc = texts((REPORTS / "rustc_e0382.txt").read_text())
    assert rustc[0].startswith("error[E0382]") and "clone this value" in rustc[0]
    # its summary lines join it (they only sum it up: see test_producers_record_interleaved)
    assert len(rustc) == 1 and rustc[0].endswith(
        "error: aborting due to 1 previous error\n\n"
        "For more information about this error, try `rustc --explain E0382`.")
    gcc = texts((REPORTS / "gcc.txt").read_text())
    assert len(gcc) == 1 and gcc[0].endswith("for each function it appears in")
    node = texts((REPORTS / "node_crash.txt").read_text())
    assert len(node) == 1 and node[0].endswith("Node.js v20.20.2")


def test_psycopg2_line_and_caret_stay_with_the_exception() -> None:
    records = assemble(PSYCOPG)
    assert [r.kind for r in records] == ["python", "line"]
    assert records[0].text.endswith("LINE 1: SELECT totl FROM carts WHERE id = 7\n"
                                    "               ^")


def test_an_ordinary_log_keeps_one_record_per_line() -> None:
    assert texts(ORDINARY) == ORDINARY.splitlines()


def test_a_compiler_error_line_is_an_error_record() -> None:
    """``error[E0382]:`` and ``error:`` at a line's start were read as the prose word
    ``error`` (the first alternative of the marker pattern won), so no rustc error was
    published; jest's ``FAIL`` verdict and Rust's ``panicked at`` count too."""
    for text in ("error[E0382]: borrow of moved value: `c`", "error: could not compile",
                 "FAIL src/cart.test.js", "thread 'main' panicked at src/main.rs:3:5:"):
        assert Record(text, 0, 0, 1).is_error, text
    for text in ("2026 INFO retrying after an error", "0 failed, 3 passed", "fail over"):
        assert not Record(text, 0, 0, 1).is_error, text


def _run(*args: str, home: Path) -> list[dict[str, object]]:
    env = {**os.environ, "HEAL_HOME": str(home)}
    done = subprocess.run([HEAL, *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_heal_fingerprint_multiline_and_backfill_keep_each_report_whole(tmp_path: Path
                                                                         ) -> None:
    """Through the real commands: ``heal fingerprint --multiline --json`` gives the jest
    report one record (two different failing tests two fingerprints, not the shared
    assertion line's), and ``heal backfill --dry-run --json`` publishes each report whole."""
    other = JEST.replace("adds the shipping fee", "applies the coupon")
    for name, text in (("a.log", JEST), ("b.log", other)):
        (tmp_path / name).write_text(text)
    fps = [_run("fingerprint", "--multiline", "--json", str(tmp_path / name),
                home=tmp_path / "home") for name in ("a.log", "b.log")]
    assert [len(f) for f in fps] == [2, 2]
    assert fps[0][0]["fine"] != fps[1][0]["fine"]
    log = tmp_path / "build.log"
    log.write_text(JEST + (REPORTS / "rustc_e0382.txt").read_text() + PSYCOPG)
    events = [e["text"] for e in _run("backfill", "--dry-run", "--json", str(log),
                                        home=tmp_path / "home")]
    assert isinstance(events[0], str) and events[0].startswith("FAIL src/cart.test.js")
    assert "cart.test.js:8:25" in events[0]
    (rustc,) = [e for e in events if isinstance(e, str) and e.startswith("error[E0382]")]
    assert "value borrowed here after move" in rustc
    (tb,) = [e for e in events if isinstance(e, str) and e.startswith("Traceback")]
    assert tb.endswith("LINE 1: SELECT totl FROM carts WHERE id = 7\n               ^")


#: unrelated errors, one a line, under headings and a bare rule (QA s16d R1): each is its
#: own record; a heading takes only the one report it introduces
HEADED_ERRORS = """\
Restarting workers:
TypeError: Cannot read properties of undefined (reading 'id')
IndexError: list index out of range
Collecting results:
OSError: [Errno 28] No space left on device
panic: assignment to entry in nil map
Cleanup:
npm ERR! code ENOENT
error[E0425]: cannot find value `cfg` in this scope
----------------------------------------
ValueError: invalid literal for int() with base 10: 'x'
fatal error: zlib.h: No such file or directory
"""

#: a step heading and the traceback it introduces (QA s16d R2)
HEADED_TRACEBACK = """\
Loading fixtures:
Traceback (most recent call last):
  File "/srv/app/load.py", line 12, in <module>
    main()
  File "/srv/app/load.py", line 9, in main
    rows[3]
IndexError: list index out of range
"""

#: an error log line and a jest report printed under it, its verdict indented one space
#: (QA s16d R7)
LOG_THEN_JEST = """\
2026-03-04 11:22:33 ERROR cache unavailable: ECONNREFUSED 10.1.2.3:6379
 FAIL  tests/price.test.js
  \u25cf price \u203a rounds half up

    expect(received).toBe(expected) // Object.is equality

      at Object.<anonymous> (tests/price.test.js:4:20)
"""

NPM = """\
npm ERR! code ERESOLVE
npm ERR! ERESOLVE could not resolve
npm ERR!
npm ERR! While resolving: shop@2.0.0
npm ERR! Could not resolve dependency:
npm ERR! peer vue@"^2.6.0" from vue-router@3.6.5
npm ERR! A complete log of this run can be found in:
npm ERR!     /home/ci/.npm/_logs/2026-03-04T11_22_33_000Z-debug-0.log
"""


def test_a_heading_or_rule_does_not_join_the_errors_after_it() -> None:
    assert texts(HEADED_ERRORS) == [
        "Restarting workers:\nTypeError: Cannot read properties of undefined (reading 'id')",
        "IndexError: list index out of range",
        "Collecting results:\nOSError: [Errno 28] No space left on device",
        "panic: assignment to entry in nil map",
        "Cleanup:\nnpm ERR! code ENOENT",
        "error[E0425]: cannot find value `cfg` in this scope",
        "----------------------------------------",
        "ValueError: invalid literal for int() with base 10: 'x'",
        "fatal error: zlib.h: No such file or directory",
    ]
    # a heading's paragraph still runs on over plain lines and frames
    assert texts("Summary:\nsome plain line\n  indented detail\n") == [
        "Summary:\nsome plain line\n  indented detail"]


def test_a_traceback_under_a_heading_keeps_its_exception() -> None:
    records = assemble(HEADED_TRACEBACK + "2026-03-04 11:22:34 INFO next\n")
    assert [r.kind for r in records] == ["python", "line"]
    assert records[0].text == HEADED_TRACEBACK.rstrip("\n")


def test_a_report_under_an_error_log_line_is_a_record_of_its_own() -> None:
    log_line, jest = assemble(LOG_THEN_JEST)
    assert log_line.text.startswith("2026-03-04 11:22:33 ERROR cache unavailable")
    assert "\n" not in log_line.text and log_line.is_error
    assert jest.text.startswith(" FAIL  tests/price.test.js") and jest.is_error
    assert jest.text.endswith("(tests/price.test.js:4:20)")


def test_one_tools_prefixed_report_stays_one_record() -> None:
    assert texts(NPM) == [NPM.rstrip("\n")]


def test_heal_backfill_and_fingerprint_split_headed_errors_as_the_assembler(tmp_path: Path
                                                                           ) -> None:
    """Through the real commands: every error of :data:`HEADED_ERRORS` is its own event, the
    traceback under a heading one event with its exception, and the log line and the jest
    report under it two events."""
    log = tmp_path / "ci.log"
    log.write_text(HEADED_ERRORS + HEADED_TRACEBACK + LOG_THEN_JEST)
    home = tmp_path / "home"
    events = [str(e["text"]) for e in _run("backfill", "--dry-run", "--json", str(log),
                                           home=home)]
    assert len(events) == 11, events
    (tb,) = [e for e in events if "Traceback" in e]
    assert tb.startswith("Loading fixtures:") and tb.endswith("IndexError: list index out of "
                                                               "range")
    assert events[-2].startswith("2026-03-04 11:22:33 ERROR cache unavailable")
    assert events[-1].startswith(" FAIL  tests/price.test.js")
    fps = _run("fingerprint", "--multiline", "--json", str(log), home=home)
    assert len(fps) == 12  # the bare rule is a record too (not an error: not published)
