"""Record assembly of interleaved sources and of summary lines.

- Two services relayed by one tool (``docker compose``'s ``api-1  | ``, ``kubectl logs
  --prefix``'s ``[pod/x/app] ``, parallel ``docker build`` steps) interleave their lines: each
  source's traceback stays whole, in a record of its own, records come out in the order of
  their first line, and a follower resuming at ``pending_offset`` re-reads no record it
  returned and cuts none (checked at every line of the log).
- A line that only tallies or sums up the errors before it (``1 error generated.``, ``Found 2
  errors in 2 files``, cargo's ``... due to 2 previous errors``, sbt's ``Total time``) joins
  the error record it follows; alone it is no error. ``make: *** ... Error 2`` joins the
  compiler's record, and alone (a recipe that failed with no compiler output) is an error.

The texts are written here in each tool's shape."""

from __future__ import annotations

from producers import records as records_module
from producers.records import Record, RecordAssembler

#: (read this way so that this file also runs, and fails, on the assembler before it)
MAX_SOURCES: int = getattr(records_module, "MAX_SOURCES", 32)


def assemble(text: str) -> list[Record]:
    assembler = RecordAssembler()
    return _feed(assembler, text, 0, 0) + assembler.flush()


def _feed(assembler: RecordAssembler, text: str, offset: int, number: int) -> list[Record]:
    out: list[Record] = []
    for line in text.splitlines(keepends=True):
        size = len(line.encode())
        number += 1
        out.extend(assembler.feed(line, offset, offset + size, number))
        offset += size
    return out


def errors(text: str) -> list[str]:
    return [r.text for r in assemble(text) if r.is_error]


COMPOSE = """\
api-1     | INFO:     Started server process [1]
api-1     | Traceback (most recent call last):
worker-1  | Traceback (most recent call last):
api-1     |   File "/app/main.py", line 12, in <module>
worker-1  |   File "/app/worker.py", line 30, in run
api-1     |     db.connect()
worker-1  |     job = queue.pop()
api-1     |   File "/app/db.py", line 4, in connect
worker-1  |   File "/app/queue.py", line 9, in pop
api-1     |     raise ConnectionError("db down")
worker-1  |     return self.items.pop(0)
api-1     | ConnectionError: db down
worker-1  | IndexError: pop from empty list
api-1     | INFO:     Shutting down
worker-1  | INFO worker stopped
"""

KUBECTL = """\
[pod/web-7d9/app] Traceback (most recent call last):
[pod/web-7d9/sidecar] 2024-05-01T10:00:00Z proxy ready
[pod/web-7d9/app]   File "/srv/app.py", line 3, in <module>
[pod/web-7d9/sidecar] 2024-05-01T10:00:01Z proxy ready
[pod/web-7d9/app]     import yaml
[pod/web-7d9/app] ModuleNotFoundError: No module named 'yaml'
"""

BUILDKIT = """\
#5 [build 3/3] RUN gcc -o app main.c
#6 [web 2/2] RUN npm ci
#5 0.215 main.c:3:12: error: 'x' undeclared (first use in this function)
#6 0.301 added 120 packages in 2s
#5 0.215     3 |     return x;
#6 0.302 found 0 vulnerabilities
#5 0.215       |            ^
#5 ERROR: process "/bin/sh -c gcc -o app main.c" did not complete successfully: exit code: 1
#6 DONE 2.1s
"""

GDB = """\
Program received signal SIGSEGV, Segmentation fault.
#0  0x000055555555513d in crash () at main.c:4
#1  0x0000555555555150 in main () at main.c:8
"""

CLANG = """\
cc -O2 -c main.c -o main.o
main.c:3:5: error: use of undeclared identifier 'x'
    3 |     x = 1;
      |     ^
1 error generated.
make: *** [Makefile:12: main.o] Error 1
"""

CARGO = """\
   Compiling foo v0.1.0 (/home/ci/foo)
error[E0425]: cannot find value `x` in this scope
 --> src/main.rs:2:13
  |
2 |     let y = x;
  |             ^ not found in this scope

error[E0308]: mismatched types
 --> src/main.rs:3:18
  |
3 |     let z: u32 = "a";
  |            ---   ^^^ expected `u32`, found `&str`

Some errors have detailed explanations: E0308, E0425.
For more information about an error, try `rustc --explain E0308`.
error: could not compile `foo` (bin "foo") due to 2 previous errors
"""

MYPY = """\
src/app.py:3: error: Incompatible types in assignment  [assignment]
src/util.py:9: error: Name "foo" is not defined  [name-defined]
Found 2 errors in 2 files (checked 5 source files)
"""

SBT = """\
[info] compiling 1 Scala source to /home/ci/shop/target/scala-2.13/classes ...
[error] /home/ci/shop/src/main/scala/shop/Cart.scala:42:18: type mismatch;
[error]  found   : String
[error]  required: Int
[error] one error found
[error] (Compile / compileIncremental) Compilation failed
[error] Total time: 3 s, completed Jan 5, 2024 10:00:00 AM
"""


def _lines_of(prefix: str, text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_interleaved_compose_services_keep_each_traceback_whole() -> None:
    records = assemble(COMPOSE)
    tracebacks = [r for r in records if r.kind == "python"]
    assert [r.text for r in tracebacks] == [
        "\n".join(_lines_of("api-1", COMPOSE)[1:7]),
        "\n".join(_lines_of("worker-1", COMPOSE)[:6]),
    ]
    assert [r.line for r in tracebacks] == [2, 3]
    # by their first line, each with its own offsets
    assert [r.offset for r in records] == sorted(r.offset for r in records)
    assert COMPOSE.encode()[tracebacks[1].offset:].startswith(b"worker-1  | Traceback")
    assert len(errors(COMPOSE)) == 2


def test_kubectl_containers_and_parallel_build_steps_are_kept_apart() -> None:
    (app,) = [r for r in assemble(KUBECTL) if r.kind == "python"]
    assert app.text == "\n".join(_lines_of("[pod/web-7d9/app]", KUBECTL))
    records = assemble(BUILDKIT)
    (build,) = [r for r in records if r.text.startswith("#5")]
    assert build.text == "\n".join(_lines_of("#5", BUILDKIT))
    assert [r.text for r in records if r.is_error] == [build.text]


def test_a_stack_frames_number_is_no_build_step() -> None:
    """gdb's ``#0  0x...`` frames look like a build step's prefix: they stay with their
    report (no buildkit shape, no step open)."""
    assert [r.text for r in assemble(GDB)] == [GDB.rstrip("\n")]


def test_a_restart_at_any_line_re_reads_no_returned_record_and_cuts_none() -> None:
    """What ``heal watch`` does on a restart: it resumes at ``pending_offset`` (and
    ``pending_line``) with a new assembler. At every line of interleaved logs, the records
    returned before the stop plus those after the restart are the records of one run."""
    for text in (COMPOSE, KUBECTL, BUILDKIT, COMPOSE + CLANG + KUBECTL):
        whole = assemble(text)
        lines = text.splitlines(keepends=True)
        for stop in range(len(lines) + 1):
            first = RecordAssembler()
            before = _feed(first, "".join(lines[:stop]), 0, 0)
            offset = first.pending_offset
            if offset is None:
                offset, number = len("".join(lines[:stop]).encode()), stop
            else:
                number = first.pending_line or 0
                assert number == len(text.encode()[:offset].splitlines())
            assert all(r.end <= offset for r in before)
            second = RecordAssembler()
            after = _feed(second, text.encode()[offset:].decode(), offset, number)
            after += second.flush()
            assert before + after == whole, (stop, text[:40])


def test_a_flood_of_distinct_prefixes_holds_a_bounded_number_of_records() -> None:
    assembler = RecordAssembler()
    out: list[Record] = []
    offset = 0
    for n in range(20 * MAX_SOURCES):
        line = f"svc{n}-1  | Traceback (most recent call last):\n"
        out.extend(assembler.feed(line, offset, offset + len(line), n + 1))
        offset += len(line)
        opened = [s for s in assembler._streams.values() if s.pending_offset is not None]
        assert len(opened) <= MAX_SOURCES
    out.extend(assembler.flush())
    assert len(out) == 20 * MAX_SOURCES  # each closed, none lost
    assert [r.offset for r in out] == sorted(r.offset for r in out)


def test_a_tally_joins_the_error_it_sums_up() -> None:
    (clang,) = errors(CLANG)
    assert clang.startswith("main.c:3:5: error:")
    assert clang.endswith("1 error generated.\nmake: *** [Makefile:12: main.o] Error 1")
    (first, second) = errors(MYPY)
    assert second.endswith("Found 2 errors in 2 files (checked 5 source files)")
    rust = errors(CARGO)
    assert [e.splitlines()[0] for e in rust] == [
        "error[E0425]: cannot find value `x` in this scope",
        "error[E0308]: mismatched types"]
    assert rust[1].endswith("due to 2 previous errors")
    sbt = errors(SBT)
    assert sbt[0].endswith("[error] one error found")
    assert sbt[-1].endswith("[error] Total time: 3 s, completed Jan 5, 2024 10:00:00 AM")
    assert not any(e.startswith("[error] Total time") for e in sbt)


def test_a_tally_alone_is_no_error_and_a_make_failure_alone_is_one() -> None:
    assert errors("1 error generated.\n") == []
    assert errors("error: could not compile `foo` (bin \"foo\") due to 2 previous errors\n"
                  ) == []
    assert errors("INFO starting\nFound 3 errors in 2 files.\n") == []
    make = "./migrate.sh\nmake: *** [Makefile:20: migrate] Error 2\n"
    assert errors(make) == ["make: *** [Makefile:20: migrate] Error 2"]
    # a make failure after a tally with no error before it is still published
    assert errors("2 errors generated.\nmake: *** [all] Error 2\n") == [
        "make: *** [all] Error 2"]
    # a tally under another service joins nothing of this one
    assert len(errors("api-1  | ERROR boom\ndb-1  | 2 errors\n")) == 1


def test_a_flood_of_tallies_after_an_error_is_bounded_like_any_record() -> None:
    from producers.records import MAX_RECORD_LINES

    text = "main.c:1:1: error: x\n" + "1 error generated.\n" * (MAX_RECORD_LINES + 10)
    records = assemble(text)
    assert max(len(r.text.splitlines()) for r in records) <= MAX_RECORD_LINES + 1
    assert sum(len(r.text.splitlines()) for r in records) == MAX_RECORD_LINES + 11


#: a Go service's errors joined by hashicorp/go-multierror (its ``N errors occurred:`` heading
#: and one tab-indented bullet per cause) after an unrelated error of another task
MULTIERROR = """\
time=2026-03-01T08:00:00Z level=error msg="metrics push failed" err="i/o timeout"
3 errors occurred:
\t* read /srv/conf/limits.toml: permission denied
\t* lookup queue.internal on 10.1.0.2:53: no such host
\t* bucket "assets" not found

time=2026-03-01T08:00:01Z level=info msg="retrying in 5s"
"""


def test_a_count_that_heads_a_list_starts_a_record_and_is_no_tally() -> None:
    """A count ending in ``:`` introduces the errors listed under it: it starts a record
    with its list (an error) instead of joining the error before it as a tally."""
    first, listed = errors(MULTIERROR)
    assert first.startswith("time=") and len(first.splitlines()) == 1
    assert listed.splitlines()[0] == "3 errors occurred:"
    assert listed.endswith('\t* bucket "assets" not found')
    # relayed by docker compose, after another error of the same service
    relayed = "".join(f"sync-1  | {line}\n" for line in MULTIERROR.splitlines())
    first, listed = errors(relayed)
    assert len(first.splitlines()) == 1 and listed.startswith("sync-1  | 3 errors occurred:")
    assert len(listed.splitlines()) == 4
    # another wording and an indented list: the heading is the record's first line too
    text = "ERROR: lint failed\nFound 2 errors:\n  src/a.py:3: unused import\n  src/b.py:9: bad\n"
    assert [e.splitlines()[0] for e in errors(text)] == ["ERROR: lint failed", "Found 2 errors:"]
    # real tallies still join the error they count, and a tally alone is still none
    assert errors("x.c:1:1: error: y\n2 errors generated.\n") == [
        "x.c:1:1: error: y\n2 errors generated."]
    assert errors("Found 2 errors in 2 files.\n") == []
    assert errors("0 errors:\n") == []


def test_open_sources_holding_too_much_close_the_oldest_record_and_lose_no_line() -> None:
    """Six services each with an open traceback of ~900 KB (long frame lines), interleaved:
    past MAX_HELD_BYTES the record that began first is closed where it is; every line still
    comes out once, in records in the order of their first line."""
    from producers.records import MAX_HELD_BYTES

    frame = "  File \"/app/x.py\", line 1, in f " + "y" * 100_000
    lines = [f"s{i}-1  | Traceback (most recent call last):" for i in range(6)]
    for _ in range(9):
        lines += [f"s{i}-1  | {frame}" for i in range(6)]
    lines += [f"s{i}-1  | ValueError: {i}" for i in range(6)]
    assembler = RecordAssembler()
    out: list[Record] = []
    offset = 0
    for number, line in enumerate(lines, 1):
        out += assembler.feed(line, offset, offset + len(line) + 1, number)
        offset += len(line) + 1
        held = sum(len(r.text) for r in assembler._done) + sum(
            s.held_bytes for s in assembler._streams.values())
        assert held <= MAX_HELD_BYTES + len(line) + 1
    out += assembler.flush()
    assert sum(len(r.text.splitlines()) for r in out) == len(lines)
    assert [r.offset for r in out] == sorted(r.offset for r in out)
    assert len(out) > 6  # some services' tracebacks were closed early


#: a build step's lines, a bare traceback and an app's log lines without a prefix, mixed
MIXED = """\
#9 2.1 error: linking with `cc` failed due to 1 previous error
Traceback (most recent call last):
  File "/srv/job.py", line 8, in main
    run()
KeyError: 'token'
DEBUG retry scheduled
web-2  | error: could not bind due to 1 previous error
#9 2.1 ERROR: process "cc -o app main.o" did not complete successfully: exit code: 1
"""


def _one_pass_and_resumed(text: str, stop: int) -> tuple[list[tuple[int, str]],
                                                         list[tuple[int, str]]]:
    whole = [(r.offset, r.text) for r in assemble(text)]
    lines = text.splitlines(keepends=True)
    first = RecordAssembler()
    out = _feed(first, "".join(lines[:stop]), 0, 0)
    offset = first.pending_offset
    if offset is None:
        offset = len("".join(lines[:stop]).encode())
    head = text.encode()[:offset].decode()
    second = RecordAssembler()
    out += _feed(second, text.encode()[offset:].decode(), offset, head.count("\n"))
    out += second.flush()
    return whole, sorted((r.offset, r.text) for r in out)


def test_a_restart_groups_a_log_of_prefixed_and_unprefixed_lines_as_one_pass_does() -> None:
    """A line without a prefix that starts a record starts it in the plain assembler, not in
    the assembler of the prefixed line before it (which a restart at it never saw)."""
    for stop in range(1, len(MIXED.splitlines())):
        whole, resumed = _one_pass_and_resumed(MIXED, stop)
        assert resumed == whole, stop
