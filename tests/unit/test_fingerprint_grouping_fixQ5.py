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


# -- defect 3: a Python exception's message does not absorb its runner's lines -------------

RUNNER_TRAILERS = (
    "make: *** [Makefile:14: migrate] Error 1",
    "make[2]: *** [tools/Makefile:3: all] Error 2",
    "Error: Process completed with exit code 1.",
    "##[error]Process completed with exit code 1.",
    "exit status 1",
    "section_end:1741944360:step_script\r\x1b[0Ksection_start:1741944360:cleanup_file",
    "ERROR: Job failed: exit code 1",
    "error: Recipe `migrate` failed on line 6 with exit code 1",
    "npm ERR! Lifecycle script `migrate` failed with error:",
    "/bin/sh: 1: python: not found",
    "FAILED (errors=1)",
    "2025-03-14 09:26:01,332 ERROR worker stopped",
)


def test_runner_and_tool_lines_after_a_traceback_are_not_the_message() -> None:
    plain = fingerprint_text(PY_TB)
    assert plain.normalized == "KeyError: 'WORKER_QUEUE'"
    for trailer in RUNNER_TRAILERS:
        text = PY_TB + trailer + "\nCleaning up project directory\n"
        assert fingerprint_text(text).fine == plain.fine, trailer


def test_genuine_multi_line_messages_are_kept() -> None:
    pydantic = """\
Traceback (most recent call last):
  File "/home/ci/svc/settings.py", line 22, in <module>
    SETTINGS = Settings()
pydantic_core._pydantic_core.ValidationError: 1 validation error for Settings
broker_url
  Field required [type=missing, input_value={}, input_type=dict]
"""
    found = fingerprint_text(pydantic + "make: *** [run] Error 1\n")
    assert found.extraction is not None
    assert found.extraction.message.splitlines() == [
        "1 validation error for Settings", "broker_url",
        "  Field required [type=missing, input_value={}, input_type=dict]"]
    assertion = """\
Traceback (most recent call last):
  File "/home/ci/svc/check.py", line 9, in <module>
    assert rows == want, f"row count differs:\\n{len(rows)} != {len(want)}"
AssertionError: row count differs:
3 != 4
"""
    found = fingerprint_text(assertion + "Error: Process completed with exit code 1.\n")
    assert found.extraction is not None
    assert found.extraction.message == "row count differs:\n3 != 4"
    syntax = """\
Traceback (most recent call last):
  File "/home/ci/svc/run.py", line 2, in <module>
    import jobs
  File "/home/ci/svc/jobs.py", line 7
    print("queued"
         ^
SyntaxError: '(' was never closed
"""
    assert fingerprint_text(syntax + "exit status 1\n").fine == fingerprint_text(syntax).fine


def test_make_run_and_direct_run_share_a_fingerprint_end_to_end(tmp_path: Path) -> None:
    """``heal fingerprint --json`` on the output of ``python worker.py`` and of ``make run``
    (the same traceback and make's trailer): one fingerprint, the exception's message."""
    outputs = [PY_TB, PY_TB + "make: *** [Makefile:3: run] Error 1\n",
               _stamped(PY_TB + "Error: Process completed with exit code 1.\n")]
    src = tmp_path / "runs.txt"
    src.write_text("\n".join(outputs), encoding="utf-8")
    done = _heal("fingerprint", "--multiline", "--json", str(src))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    pythons = [r for r in rows if r["extraction"]["kind"] == "python"]
    assert len(pythons) == 3
    assert {r["fine"] for r in pythons} == {fingerprint_text(PY_TB).fine}
    assert {r["extraction"]["message"] for r in pythons} == {"'WORKER_QUEUE'"}


# -- defect 5: npm and apt failures name their package -------------------------------------

def _eresolve(pkg: str, npm: str = "npm ERR!") -> str:
    return "\n".join(f"{npm} {line}".rstrip() for line in f"""\
code ERESOLVE
ERESOLVE unable to resolve dependency tree

While resolving: storefront@2.4.0
Found: {pkg}@18.3.1
node_modules/{pkg}
  {pkg}@"^18.3.1" from the root project

Could not resolve dependency:
peer {pkg}@"^17.0.2" from chart-kit@4.0.0
node_modules/chart-kit
  chart-kit@"^4.0.0" from the root project

Fix the upstream dependency conflict, or retry
this command with --force or --legacy-peer-deps""".splitlines()) + "\n"


def _e404(pkg: str) -> str:
    url = pkg.replace("/", "%2f")
    return f"""\
npm ERR! code E404
npm ERR! 404 Not Found - GET https://registry.npmjs.org/{url} - Not found
npm ERR! 404
npm ERR! 404  '{pkg}@^2.1.0' is not in this registry.
npm ERR! 404
npm ERR! 404 Note that you can also install from a
npm ERR! 404 tarball, folder, http url, or git url.

npm ERR! A complete log of this run can be found in: /root/.npm/_logs/debug-0.log
"""


def _buildkit(pkg: str, plain: bool) -> str:
    """``docker build`` failing in an apt step: ``--progress=plain`` (CI's default) or the
    report the tty display leaves (its progress lines cleared)."""
    run = f"RUN apt-get update && apt-get install -y --no-install-recommends {pkg}"
    proc = f'process "/bin/sh -c apt-get update && apt-get install -y {pkg}"'
    if plain:
        return f"""\
#8 [build 2/5] {run}
#8 1.904 Reading package lists...
#8 2.611 Building dependency tree...
#8 2.612 Reading state information...
#8 2.640 E: Unable to locate package {pkg}
#8 ERROR: {proc} did not complete successfully: exit code: 100
------
 > [build 2/5] {run}:
2.640 E: Unable to locate package {pkg}
------
ERROR: failed to solve: {proc} did not complete successfully: exit code: 100
"""
    return f"""\
------
 > [build 2/5] {run}:
1.310 Reading package lists...
2.045 Building dependency tree...
2.046 Reading state information...
2.071 E: Unable to locate package {pkg}
------
Dockerfile:4
--------------------
   3 |     WORKDIR /src
   4 | >>> {run}
   5 |     COPY . .
--------------------
ERROR: failed to solve: {proc} did not complete successfully: exit code: 100
"""


def test_npm_eresolve_and_e404_name_their_package() -> None:
    for make, packages in ((_eresolve, ("react", "@types/node")),
                           (_e404, ("lefty-pad", "@corp/ui-kit"))):
        for pkg in packages:
            found = fingerprint_text(make(pkg))
            assert found.params["package"] == pkg, make(pkg)
            assert pkg not in found.normalized
    assert fingerprint_text(_eresolve("vue", "npm error")).params["package"] == "vue"


def test_apt_failure_under_buildkit_is_the_headline() -> None:
    bare = fingerprint_text(
        "Reading package lists...\nBuilding dependency tree...\n"
        "E: Unable to locate package libgdal-dev\n")
    assert bare.normalized == "E: Unable to locate package <package>"
    assert bare.params["package"] == "libgdal-dev"
    for plain in (True, False):
        for pkg in ("libgdal-dev", "python3.9-venv"):
            found = fingerprint_text(_buildkit(pkg, plain))
            assert found.params["package"] == pkg
            assert found.normalized == bare.normalized, (plain, pkg)
    lone = fingerprint_text("E: Package 'mta-client' has no installation candidate")
    assert lone.params["package"] == "mta-client"


def test_npm_and_apt_packages_end_to_end(tmp_path: Path) -> None:
    src = tmp_path / "deps.txt"
    src.write_text(_e404("@corp/ui-kit") + "\n" + _buildkit("libgdal-dev", False),
                   encoding="utf-8")
    done = _heal("fingerprint", "--multiline", "--json", str(src))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    packages = [r["params"].get("package") for r in rows]
    assert "@corp/ui-kit" in packages and "libgdal-dev" in packages
