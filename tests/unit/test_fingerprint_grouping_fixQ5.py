"""Fingerprint grouping fixes (QA s15b defects 3, 5, 6 and 14): a Python exception does not
absorb the runner's or the build tool's next lines; the CI runner's per-line timestamps and
a byte order mark are not part of the error; npm and apt failures name their package; and
``heal fingerprint --multiline`` keeps multi-paragraph reports whole, as the stage does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pipeline.fingerprint import fingerprint_text
from pipeline.runnerlines import strip_stamps

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]


def _heal(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*HEAL, *args], input=stdin, capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120, check=False)


def _stamped(text: str, start: int = 0) -> str:
    """``text`` as a downloaded GitHub Actions job log has it: a timestamp on every line."""
    return "".join(f"2025-03-14T09:26:{(start + i) % 60:02d}.{4321000 + i:07d}Z {line}\n"
                   for i, line in enumerate(text.splitlines()))


GO_PANIC = """\
panic: assignment to entry in nil map

goroutine 7 [running]:
example.org/billing/ledger.(*Book).Post(0xc0001a2000, {0xc00001c0f0, 0x9})
\t/home/ci/src/billing/ledger/book.go:57 +0x6a
main.main()
\t/home/ci/src/billing/main.go:31 +0x1c5
exit status 2
"""
PY_TB = """\
Traceback (most recent call last):
  File "/home/ci/svc/worker.py", line 88, in <module>
    main()
  File "/home/ci/svc/worker.py", line 41, in main
    cfg = load(os.environ["WORKER_QUEUE"])
  File "/usr/lib/python3.12/os.py", line 714, in __getitem__
    raise KeyError(key) from None
KeyError: 'WORKER_QUEUE'
"""
NODE = """\
/home/ci/web/src/render.js:19
  return tpl.body.trim();
                  ^

TypeError: Cannot read properties of null (reading 'trim')
    at render (/home/ci/web/src/render.js:19:19)
    at Object.<anonymous> (/home/ci/web/src/index.js:4:1)

Node.js v20.12.2
"""


# -- defect 6: the CI runner's per-line timestamps and a byte order mark -------------------

def test_stamped_job_log_excerpt_fingerprints_like_the_plain_output() -> None:
    for text in (PY_TB, GO_PANIC, NODE, "ERROR: relation \"orders\" does not exist\n"):
        plain = fingerprint_text(text)
        stamped = fingerprint_text(_stamped(text, 7))
        assert (stamped.fine, stamped.normalized) == (plain.fine, plain.normalized), text
        crlf = fingerprint_text(_stamped(text, 31).replace("\n", "\r\n"))
        assert crlf.fine == plain.fine


def test_byte_order_mark_is_not_part_of_the_error() -> None:
    assert fingerprint_text("\ufeffERROR: disk quota exceeded").fine == \
        fingerprint_text("ERROR: disk quota exceeded").fine
    assert fingerprint_text("\ufeff" + _stamped(PY_TB)).fine == fingerprint_text(PY_TB).fine


def test_a_timestamp_inside_a_line_is_left_alone() -> None:
    line = "job 2025-03-14T09:26:00.1234567Z ERROR: quota"
    assert strip_stamps(line) == line


def test_stamp_stripping_is_linear_on_hostile_text() -> None:
    import time
    hostile = ("2025-03-14T09:26:00." + "1" * 5000 + "Z \ufeff\n") * 50 + "Z " * 100_000
    started = time.perf_counter()
    strip_stamps(hostile)
    fingerprint_text(hostile)
    assert time.perf_counter() - started < 2.0


def test_stage_path_strips_stamps_end_to_end(tmp_path: Path) -> None:
    """Through ``heal fingerprint --multiline --json`` (the stage's Fingerprinter): a stamped
    excerpt and the plain output get one fingerprint."""
    src = tmp_path / "excerpt.txt"
    src.write_text(_stamped(PY_TB, 3) + "\n" + PY_TB, encoding="utf-8")
    done = _heal("fingerprint", "--multiline", "--json", str(src))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 2
    assert rows[0]["fine"] == rows[1]["fine"] == fingerprint_text(PY_TB).fine


# -- defect 14: ``heal fingerprint --multiline`` splits as the stage's producers do --------

JAVA = """\
java.lang.IllegalStateException: ledger closed
\tat org.example.ledger.Book.post(Book.java:57)
\tat org.example.Main.main(Main.java:12)
Caused by: java.io.IOException: stream closed
\tat org.example.io.Sink.write(Sink.java:30)
\t... 2 more
"""


def test_multiline_keeps_go_panics_and_node_reports_whole(tmp_path: Path) -> None:
    """A Go panic and a Node crash report span blank lines; each is one record, with the
    fingerprint the stage gives the whole report, and the records after them stay apart."""
    second = PY_TB.replace("WORKER_QUEUE", "WORKER_TOPIC")
    src = tmp_path / "reports.txt"
    src.write_text("\n".join([GO_PANIC, NODE, PY_TB, second, JAVA,
                              "bash: deploy.sh: command not found\n"]), encoding="utf-8")
    done = _heal("fingerprint", "--multiline", "--json", str(src))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    expected = [fingerprint_text(t).fine for t in (GO_PANIC, NODE, PY_TB, second, JAVA)]
    assert [r["fine"] for r in rows[:5]] == expected
    assert [r["extraction"]["kind"] for r in rows] == [
        "go", "node", "python", "python", "java", "shell"]


def test_multiline_chained_traceback_stays_one_record(tmp_path: Path) -> None:
    chained = (PY_TB + "\nThe above exception was the direct cause of the following "
               "exception:\n\n" + PY_TB.replace("KeyError: 'WORKER_QUEUE'",
                                                "RuntimeError: worker misconfigured"))
    src = tmp_path / "chained.txt"
    src.write_text(chained + "\n" + PY_TB, encoding="utf-8")
    done = _heal("fingerprint", "--multiline", "--json", str(src))
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["extraction"]["error_type"] for r in rows] == ["RuntimeError", "KeyError"]
    assert rows[0]["extraction"]["chain"] == [["KeyError", "'WORKER_QUEUE'"]]
