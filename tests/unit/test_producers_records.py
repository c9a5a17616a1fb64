"""Record assembly on real report texts (Python, Java, Node, pytest, Go, logging)."""

from __future__ import annotations

from collections.abc import Iterator

from producers.records import (
    LineSplitter,
    Record,
    RecordAssembler,
    is_error_text,
)


def assemble(text: str) -> list[Record]:
    """All records of a complete text, through the line splitter backfill and watch use,
    fed to one assembler line by line and flushed at the end (as ``LogScanner`` does)."""
    assembler = RecordAssembler()
    records: list[Record] = []
    for number, (line, start, end, cut) in enumerate(_whole(LineSplitter(), text.encode()), 1):
        records += assembler.feed(line, start, end, number, cut)
    return records + assembler.flush()

PYTHON_CHAINED = """\
2024-01-01 10:00:00 INFO starting
2024-01-01 10:00:01 ERROR request failed
Traceback (most recent call last):
  File "app.py", line 3, in <module>
    main()
  File "app.py", line 2, in main
    raise KeyError('x')
KeyError: 'x'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "app.py", line 5, in <module>
    raise ValueError("bad")
ValueError: bad
2024-01-01 10:00:02 INFO next
"""

BARE_TRACEBACK = """\
Traceback (most recent call last):
  File "/srv/x.py", line 1, in <module>
    import yaml
ModuleNotFoundError: No module named 'yaml'
"""

JAVA = """\
12:00:00.123 [main] ERROR com.acme.App - boom
java.lang.IllegalStateException: boom
\tat com.acme.App.run(App.java:10)
\tat com.acme.App.main(App.java:5)
Caused by: java.io.IOException: disk full
\tat com.acme.Io.read(Io.java:3)
\t... 2 more
12:00:01.000 [main] INFO com.acme.App - ok
"""

JAVA_MAIN = """\
Exception in thread "main" java.lang.NullPointerException: name is null
\tat Main.main(Main.java:4)
"""

NODE = """\
/app/index.js:3
    throw new Error('boom');
    ^

Error: boom
    at Object.<anonymous> (/app/index.js:3:11)
    at node:internal/main/run_main_module:23:47

Node.js v20.11.0
server listening on 3000
"""

NODE_LOGGED = """\
TypeError: Cannot read properties of undefined (reading 'id')
    at handler (/app/routes.js:12:20)
    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)
GET /health 200
"""

PYTEST = """\
============================= test session starts ==============================
collected 3 items

tests/test_a.py F.F                                                      [100%]

=================================== FAILURES ===================================
___________________________________ test_one ___________________________________

    def test_one():
>       assert 1 == 2
E       assert 1 == 2

tests/test_a.py:2: AssertionError
___________________________________ test_two ___________________________________

    def test_two():
>       import yaml
E       ModuleNotFoundError: No module named 'yaml'

tests/test_a.py:6: ModuleNotFoundError
=========================== short test summary info ============================
FAILED tests/test_a.py::test_one - assert 1 == 2
FAILED tests/test_a.py::test_two - ModuleNotFoundError: No module named 'yaml'
========================= 2 failed, 1 passed in 0.05s ==========================
"""

PYTEST_TB_NO = """\
=========================== short test summary info ============================
FAILED tests/test_a.py::test_one - assert 1 == 2
========================= 1 failed, 1 passed in 0.05s ==========================
"""

GO = """\
panic: runtime error: index out of range [5] with length 3

goroutine 1 [running]:
main.main()
\t/tmp/x.go:8 +0x1d
exit status 2
done
"""


def errors(text: str) -> list[str]:
    return [r.text for r in assemble(text) if r.is_error]


def test_python_chained_traceback_joins_its_log_line_and_both_exceptions() -> None:
    records = assemble(PYTHON_CHAINED)
    assert [r.kind for r in records] == ["line", "python", "line"]
    tb = records[1]
    assert tb.text.startswith("2024-01-01 10:00:01 ERROR request failed\nTraceback")
    assert tb.text.endswith("ValueError: bad")
    assert "During handling of the above exception" in tb.text
    assert tb.line == 2
    assert tb.offset == len(PYTHON_CHAINED.splitlines(keepends=True)[0])
    assert errors(PYTHON_CHAINED) == [tb.text]


def test_bare_traceback_is_one_error_record() -> None:
    (record,) = assemble(BARE_TRACEBACK)
    assert record.kind == "python" and record.is_error
    assert record.text == BARE_TRACEBACK.rstrip("\n")
    assert record.end == len(BARE_TRACEBACK)


def test_java_stack_with_caused_by_and_more() -> None:
    records = assemble(JAVA)
    assert [r.kind for r in records] == ["java", "line"]
    assert records[0].text.splitlines()[-1] == "\t... 2 more"
    assert "Caused by: java.io.IOException: disk full" in records[0].text
    (main,) = assemble(JAVA_MAIN)
    assert main.kind == "java" and main.is_error and main.text.count("\n") == 1


def test_node_crash_report_runs_to_the_version_footer() -> None:
    records = assemble(NODE)
    assert [r.kind for r in records] == ["node", "line"]
    assert records[0].text.startswith("/app/index.js:3")
    assert records[0].text.endswith("Node.js v20.11.0")
    assert not records[1].is_error
    logged = assemble(NODE_LOGGED)
    assert [r.kind for r in logged] == ["node", "line"]
    assert logged[0].text.count("    at ") == 2


def test_pytest_failure_sections_are_one_record_each_and_the_summary_is_not_repeated() -> None:
    errs = [r for r in assemble(PYTEST) if r.is_error]
    assert [e.kind for e in errs] == ["pytest", "pytest"]
    assert errs[0].text.startswith("___") and "test_one" in errs[0].text
    assert errs[0].text.endswith("tests/test_a.py:2: AssertionError")
    assert "No module named 'yaml'" in errs[1].text
    assert "short test summary" not in errs[1].text
    # with --tb=no the summary is the only report, so it is published
    (summary,) = [r for r in assemble(PYTEST_TB_NO) if r.is_error]
    assert summary.text.endswith("1 failed, 1 passed in 0.05s " + "=" * 26)


def test_go_panic_with_goroutine_dump() -> None:
    records = assemble(GO)
    assert [r.kind for r in records] == ["go", "line"]
    assert records[0].text.endswith("exit status 2")


def test_error_markers_ignore_lowercase_prose_and_info_lines() -> None:
    assert is_error_text("2024 ERROR db down")
    assert is_error_text('{"level":"error","msg":"x"}')
    assert is_error_text("ts=1 level=fatal msg=boom")
    assert is_error_text("npm ERR! code ENOENT")
    assert is_error_text("ValueError: bad input")
    assert not is_error_text("2024 INFO retrying after an error in the cache")
    assert not is_error_text("0 failed, 3 passed")


def test_pending_offset_points_at_the_incomplete_record() -> None:
    assembler = RecordAssembler()
    assert assembler.pending_offset is None
    lines = BARE_TRACEBACK.splitlines(keepends=True)
    offset = 0
    for number, line in enumerate(lines[:2], 1):
        assert assembler.feed(line, offset, offset + len(line), number) == []
        offset += len(line)
    assert assembler.pending_offset == 0
    (record,) = assembler.flush()
    assert record.text.startswith("Traceback") and assembler.pending_offset is None


def test_runaway_record_is_cut_to_bound_memory() -> None:
    text = "Traceback (most recent call last):\n" + "  frame\n" * 6000
    records = assemble(text)
    assert len(records) >= 2
    assert all(r.text.count("\n") <= 5001 for r in records)


def test_ansi_colours_are_stripped() -> None:
    (record,) = assemble("\x1b[31mERROR\x1b[0m disk full\n")
    assert record.text == "ERROR disk full" and record.is_error


def test_an_overlong_line_keeps_its_head_and_tail_wherever_the_chunks_end() -> None:
    """LineSplitter: a line over the bound keeps its first and last halves (never held
    whole), the same text and offsets whatever the read sizes (watch and backfill read from
    different offsets, so they must agree on every cut)."""
    import random

    rnd = random.Random(3)
    for _ in range(200):
        parts = [bytes(rnd.choice(b"ab\xc3\xa9c") for _ in range(rnd.choice(
            [0, 1, 99, 100, 101, 150, 3000]))) for _ in range(rnd.randint(1, 10))]
        data = b"\n".join(parts) + (b"\n" if rnd.random() < 0.5 else b"")
        seen = []
        for chunk in (1, 7, 100, 4096):
            split = LineSplitter(1000, max_bytes=100)
            got = [x for i in range(0, len(data), chunk) for x in split.feed(data[i:i + chunk])]
            got.extend(split.finish())
            assert split.held == 0 and split.pos == 1000 + len(data)
            seen.append(got)
        assert all(s == seen[0] for s in seen)
        reference = list(_plain_lines(data, 1000))
        assert [(s, e) for _, s, e, _ in seen[0]] == [(s, e) for _, s, e in reference]
        for (text, s, e, cut), (whole, _, _) in zip(seen[0], reference, strict=True):
            body = data[s - 1000:e - 1000].rstrip(b"\n")
            if len(body) <= 100:
                assert (text, cut) == (whole, 0)
            else:
                assert cut == len(body) - 100
                assert text == (body[:50].decode("utf-8", "replace")
                                + f"…[heal: {cut} bytes truncated]…"
                                + body[-50:].decode("utf-8", "replace"))


def test_a_split_line_never_holds_more_than_its_bound() -> None:
    from producers.records import LineSplitter

    split = LineSplitter(0, max_bytes=1000)
    for _ in range(2000):
        assert list(split.feed(b"y" * 4096)) == []
        assert len(split._head) + len(split._tail) <= 1000
    ((text, start, end, cut),) = list(split.feed(b"z\n"))
    assert (start, end, cut) == (0, 2000 * 4096 + 2, 2000 * 4096 + 1 - 1000)
    assert text.endswith("y" * 499 + "z") and len(text) < 1100


def _plain_lines(data: bytes, base: int) -> list[tuple[str, int, int]]:
    """The reference the splitter is held to: every line whole (text, start, end)."""
    out, start = [], 0
    while start < len(data):
        nl = data.find(b"\n", start)
        end = len(data) if nl < 0 else nl + 1
        out.append((data[start:end].rstrip(b"\n").decode("utf-8", "replace"),
                    base + start, base + end))
        start = end
    return out


def _whole(splitter: LineSplitter, data: bytes) -> Iterator[tuple[str, int, int, int]]:
    """Every line of ``data`` as backfill reads a file: ``feed``, then ``finish``."""
    yield from splitter.feed(data)
    yield from splitter.finish()
