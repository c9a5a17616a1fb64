"""Record assembly of reports the last pass still cut apart: a compiler's quoted source line
(javac), reports relayed under a per-line prefix (sbt's ``[error] ``, ``docker compose``'s
``api-1  | ``, ``docker build``'s ``#5 0.215 ``), Gradle's bulleted sections and a CI
runner's summary lines.

``tests/fixtures/reports/javac.txt`` is real output of javac 17; the other texts are written
here in each tool's shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from producers.records import RecordAssembler
from tests.unit.test_producers_record_reports import assemble, texts

REPORTS = Path(__file__).resolve().parents[1] / "fixtures" / "reports"
HEAL = str(Path(sys.executable).parent / "heal")




def _run(*args: str, home: Path) -> list[dict[str, object]]:
    env = {**os.environ, "HEAL_HOME": str(home)}
    done = subprocess.run([HEAL, *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


SBT = """\
[info] compiling 12 Scala sources to /home/ci/shop/target/scala-2.13/classes ...
[error] /home/ci/shop/src/main/scala/shop/Cart.scala:42:18: type mismatch;
[error]  found   : String
[error]  required: Int
[error]     val total: Int = items.map(_.price).mkString
[error]                  ^
[error] /home/ci/shop/src/main/scala/shop/Order.scala:7:8: not found: object cats
[error] import cats.implicits._
[error]        ^
[error] two errors found
"""

COMPOSE = """\
api-1  | Traceback (most recent call last):
api-1  |   File "/app/server.py", line 41, in <module>
api-1  |     app.run(port=int(os.environ["PORT"]))
api-1  |   File "<frozen os>", line 679, in __getitem__
api-1  | KeyError: 'PORT'
api-1 exited with code 1
worker-1  | java.lang.IllegalStateException: queue not configured
worker-1  | \tat com.acme.worker.Main.start(Main.java:27)
worker-1  | Caused by: java.lang.NullPointerException: url
worker-1  | \t... 1 more
"""

BUILDKIT = """\
#1 [internal] load build definition from Dockerfile
#1 transferring dockerfile: 156B done
#1 DONE 0.0s

#4 [2/3] COPY main.c .
#4 DONE 0.1s

#5 [3/3] RUN gcc -o app main.c
#5 0.215 main.c: In function 'main':
#5 0.215 main.c:3:12: error: 'x' undeclared (first use in this function)
#5 0.215     3 |     return x;
#5 0.215       |            ^
#5 ERROR: process "/bin/sh -c gcc -o app main.c" did not complete successfully: exit code: 1
------
 > [3/3] RUN gcc -o app main.c:
0.215 main.c:3:12: error: 'x' undeclared (first use in this function)
------
"""

GRADLE = """\
FAILURE: Build failed with an exception.

* What went wrong:
Could not determine the dependencies of task ':app:test'.
> Could not resolve all task dependencies for configuration ':app:testRuntimeClasspath'.
   > Could not find org.acme:widgets:2.1.0.

* Try:
> Run with --stacktrace option to get the stack trace.

* Get more help at https://help.gradle.org

BUILD FAILED in 1s
"""

CI_SUMMARY = """\
=========================== short test summary info ============================
FAILED tests/test_cart.py::test_total - AssertionError: assert 9 == 10
========================= 1 failed, 2 passed in 0.12s ==========================
Error: Process completed with exit code 1.
##[error]Process completed with exit code 1.
"""


def test_javac_quoted_source_line_stays_with_its_error() -> None:
    """javac quotes an unindented source line (``import ...;`` at column 0) under its
    error, then a caret line: the three are one record; the tally ``2 errors`` joins the
    error before it (see test_producers_record_interleaved)."""
    javac = (REPORTS / "javac.txt").read_text()
    records = assemble(javac)
    assert [r.text.splitlines()[0] for r in records] == [
        "Baz.java:1: error: package foo.bar does not exist",
        "Baz.java:3: error: incompatible types: String cannot be converted to int",
        "Bar.java:3: error: incompatible types: String cannot be converted to int",
        "Bar.java:4: error: cannot find symbol",
    ]
    assert records[0].text.endswith("import foo.bar.Missing;\n              ^")
    assert records[1].text.endswith("^\n2 errors")
    assert records[3].text.endswith("  location: class Bar\n2 errors")
    assert all(r.is_error for r in records)


def test_a_line_after_a_located_error_without_a_caret_is_its_own_record() -> None:
    text = "Foo.java:3: error: boom\nplain next line\nanother\n"
    assert texts(text) == ["Foo.java:3: error: boom", "plain next line", "another"]
    # held at the end of the input: flush returns both
    assert texts("Foo.java:3: error: boom\nint x;\n") == ["Foo.java:3: error: boom",
                                                          "int x;"]
    assembler = RecordAssembler()
    assembler.feed("Foo.java:3: error: boom\n", 0, 24, 1)
    assert assembler.feed("int x;\n", 24, 31, 2) == []
    assert assembler.pending_offset == 0  # a restart re-reads both lines


def test_sbt_report_is_read_after_its_prefix() -> None:
    assert texts(SBT) == [
        SBT.splitlines()[0],
        "\n".join(SBT.splitlines()[1:6]),
        "\n".join(SBT.splitlines()[6:10]),  # the tally with the error before it
    ]
    assert all(r.is_error for r in assemble(SBT)[1:])


def test_compose_services_keep_their_reports_and_never_share_one() -> None:
    records = assemble(COMPOSE)
    assert [r.kind for r in records] == ["python", "line", "java"]
    assert records[0].text.endswith("api-1  | KeyError: 'PORT'")
    assert records[2].text.startswith("worker-1  | java.lang.IllegalStateException")
    assert records[2].text.endswith("\t... 1 more")
    # interleaved services: the other service's line is a record of its own
    assert len(texts("api-1  | Failures:\ndb-1  | ready to accept connections\n")) == 2


def test_docker_build_steps_are_records_of_their_own() -> None:
    records = texts(BUILDKIT)
    assert [r.splitlines()[0] for r in records] == [
        "#1 [internal] load build definition from Dockerfile",
        "#4 [2/3] COPY main.c .",
        "#5 [3/3] RUN gcc -o app main.c",
        "------",
    ]
    assert records[2].endswith("exit code: 1") and "#5 0.215       |            ^" in records[2]
    assert records[3].endswith(" > [3/3] RUN gcc -o app main.c:\n0.215 main.c:3:12: error: "
                               "'x' undeclared (first use in this function)\n------")


def test_gradle_bulleted_sections_stay_with_their_headline() -> None:
    records = assemble(GRADLE)
    assert [r.text for r in records] == [GRADLE.split("\n\nBUILD")[0], "BUILD FAILED in 1s"]
    assert records[0].is_error


def test_ci_summary_lines_are_records_of_their_own() -> None:
    records = assemble(CI_SUMMARY)
    assert [r.text for r in records] == [
        "\n".join(CI_SUMMARY.splitlines()[:3]),
        "Error: Process completed with exit code 1.",
        "##[error]Process completed with exit code 1.",
    ]
    assert all(r.is_error for r in records)


def test_a_level_in_brackets_stays_a_log_line() -> None:
    """Maven's ``[INFO]``/``[ERROR]`` are levels, not relay prefixes: one record a line."""
    maven = ("[INFO] ------------------------------------------------------------------------\n"
             "[INFO] BUILD FAILURE\n"
             "[INFO] ------------------------------------------------------------------------\n"
             "[ERROR] Failed to execute goal on project shop: Compilation failure\n"
             "[ERROR] -> [Help 1]\n")
    assert texts(maven) == maven.splitlines()


def test_heal_fingerprint_and_backfill_keep_relayed_reports_whole(tmp_path: Path) -> None:
    """Through the real commands: ``heal fingerprint --multiline`` gives javac's, sbt's,
    compose's and Gradle's reports one record each, and ``heal backfill`` publishes javac's
    and sbt's errors whole (they were not published at all: ``error:`` after a location, and
    ``[error]``, were read as the prose word)."""
    home = tmp_path / "home"
    log = tmp_path / "all.log"
    log.write_text((REPORTS / "javac.txt").read_text() + SBT + COMPOSE + GRADLE)
    fps = _run("fingerprint", "--multiline", "--json", str(log), home=home)
    assert len(fps) == 4 + 3 + 3 + 2
    build = tmp_path / "build.log"
    build.write_text((REPORTS / "javac.txt").read_text() + SBT)
    events = [str(e["text"]) for e in _run("backfill", "--dry-run", "--json", str(build),
                                           home=home)]
    assert events[0] == ("Baz.java:1: error: package foo.bar does not exist\n"
                         "import foo.bar.Missing;\n              ^")
    assert len([e for e in events if e.startswith(("Baz.java", "Bar.java"))]) == 4
    (cart,) = [e for e in events if e.startswith("[error] /home/ci/shop/src/main/scala/shop/"
                                                 "Cart.scala:42:18: type mismatch;")]
    assert cart.endswith("[error]                  ^")
