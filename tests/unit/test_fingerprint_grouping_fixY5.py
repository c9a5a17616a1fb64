"""Fingerprint grouping fixes (QA s15e D2, D3, D10): a Python traceback is read by its
structure, not by its exception's class name (psycopg2's ``UniqueViolation``, Django's
``DoesNotExist``, ``Http404``, ``KeyboardInterrupt``), and a database driver's ``LINE n:``,
caret and ``DETAIL:`` lines are not its message; a Python 3.11 exception group is read
through its margins (its first sub-exception is the error); a javac error glued to Gradle's
``> Task :app:compileJava`` header reads as javac's own line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pipeline.fingerprint import fingerprint_text

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]


def _heal_json(text: str, *args: str) -> list[dict[str, object]]:
    """``heal fingerprint --json`` of ``text`` (one object per message)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([*HEAL, "fingerprint", "--json", *args], input=text,
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _traceback(module: str, function: str, exception: str) -> str:
    return (
        "Traceback (most recent call last):\n"
        '  File "/opt/venv/lib/python3.12/site-packages/django/core/handlers/base.py", '
        "line 197, in _get_response\n"
        "    response = wrapped_callback(request, *callback_args, **callback_kwargs)\n"
        f'  File "/srv/billing/invoices/{module}.py", line 58, in {function}\n'
        "    invoice = Invoice.objects.get(number=number)\n"
        f"{exception}\n")


# -- D2: any exception class, by the traceback's structure --------------------------------

def test_an_exception_class_without_an_error_suffix_keeps_its_type_and_frames() -> None:
    for exception, error_type in [
        ("invoices.models.Invoice.DoesNotExist: Invoice matching query does not exist.",
         "invoices.models.Invoice.DoesNotExist"),
        ("django.core.exceptions.ImproperlyConfigured: STATIC_ROOT is not set",
         "django.core.exceptions.ImproperlyConfigured"),
        ("django.http.response.Http404: No Invoice matches the given query.",
         "django.http.response.Http404"),
        ("KeyboardInterrupt", "KeyboardInterrupt"),
        ("StopIteration", "StopIteration"),
        ("SystemExit: 2", "SystemExit"),
        ("Warning: totals were rounded", "Warning"),
        ("celery.exceptions.Retry: Retry in 30s", "celery.exceptions.Retry"),
    ]:
        in_view = fingerprint_text(_traceback("views", "invoice_detail", exception))
        in_task = fingerprint_text(_traceback("tasks", "send_reminders", exception))
        assert in_view.extraction is not None
        assert (in_view.extraction.kind, in_view.extraction.error_type) == ("python", error_type)
        assert in_view.extraction.frames[-1].function == "invoice_detail"
        # raised in two places: two errors
        assert in_view.fine != in_task.fine, exception


def test_psycopg2_context_lines_are_not_the_message() -> None:
    column = _traceback("store", "save_invoice", (
        'psycopg2.errors.UndefinedColumn: column "totl" of relation "invoices" does not exist\n'
        "LINE 1: UPDATE invoices SET totl = 12 WHERE id = 7\n"
        "                            ^"))
    table = _traceback("store", "save_invoice", (
        'psycopg2.errors.UndefinedTable: relation "invoice_lines" does not exist\n'
        "LINE 1: SELECT * FROM invoice_lines WHERE invoice_id = 7\n"
        "                      ^"))
    unique = [_traceback("store", "save_invoice", (
        'psycopg2.errors.UniqueViolation: duplicate key value violates unique constraint '
        '"invoices_number_key"\n'
        f"DETAIL:  Key (number)=(INV-{n}) already exists.")) for n in (1001, 2002)]
    a, b = fingerprint_text(column), fingerprint_text(table)
    assert a.extraction is not None and b.extraction is not None
    assert a.extraction.message == 'column "totl" of relation "invoices" does not exist'
    assert b.extraction.error_type == "psycopg2.errors.UndefinedTable"
    assert a.fine != b.fine
    first, second = (fingerprint_text(t) for t in unique)
    assert first.extraction is not None
    assert first.extraction.error_type == "psycopg2.errors.UniqueViolation"
    assert "DETAIL" not in first.extraction.message
    assert first.fine == second.fine  # the row's values are not the error


def test_a_runner_line_after_a_cut_traceback_is_not_taken_for_its_exception() -> None:
    cut = ("Traceback (most recent call last):\n"
           '  File "/srv/billing/run.py", line 3, in <module>\n'
           "    main()\n"
           "ERROR: Job failed: exit code 1\n")
    found = fingerprint_text(cut).extraction
    # (the traceback names no exception: no Python exception called ERROR)
    assert found is not None and found.kind != "python"


# -- D3: exception groups ------------------------------------------------------------------

def _group(sub_file: str, sub_function: str, sub_exception: str) -> str:
    return (
        "  + Exception Group Traceback (most recent call last):\n"
        '  |   File "/srv/feeds/fetch.py", line 61, in <module>\n'
        "  |     asyncio.run(refresh_all())\n"
        '  |   File "/usr/lib/python3.12/asyncio/runners.py", line 194, in run\n'
        "  |     return runner.run(main)\n"
        '  |   File "/srv/feeds/fetch.py", line 52, in refresh_all\n'
        "  |     async with asyncio.TaskGroup() as group:\n"
        "  | ExceptionGroup: unhandled errors in a TaskGroup (2 sub-exceptions)\n"
        "  +-+---------------- 1 ----------------\n"
        "    | Traceback (most recent call last):\n"
        f'    |   File "/srv/feeds/{sub_file}.py", line 23, in {sub_function}\n'
        "    |     await step(feed)\n"
        f"    | {sub_exception}\n"
        "    +---------------- 2 ----------------\n"
        "    | Traceback (most recent call last):\n"
        '    |   File "/srv/feeds/fetch.py", line 31, in refresh_one\n'
        "    |     body = await client.get(feed.url)\n"
        "    | TimeoutError\n"
        "    +------------------------------------\n")


def test_an_exception_group_is_its_first_sub_exception_with_its_frames() -> None:
    store = _group("store", "save_entries",
                   'asyncpg.exceptions.UndefinedTableError: relation "entries" does not exist')
    parse = _group("parse", "parse_entry", "KeyError: 'published'")
    # through heal fingerprint --multiline: the group is one record, read as the stage reads it
    (got_store,) = _heal_json(store, "--multiline")
    (got_parse,) = _heal_json(parse, "--multiline")
    extraction = got_store["extraction"]
    assert isinstance(extraction, dict)
    assert extraction["kind"] == "python"
    assert extraction["error_type"] == "asyncpg.exceptions.UndefinedTableError"
    assert extraction["message"] == 'relation "entries" does not exist'
    assert [f["function"] for f in extraction["frames"]] == [
        "<module>", "run", "refresh_all", "save_entries"]
    assert ["ExceptionGroup", "unhandled errors in a TaskGroup (2 sub-exceptions)"] \
        in extraction["chain"]
    assert ["TimeoutError", ""] in extraction["chain"]
    assert got_store["fine"] != got_parse["fine"]
    assert got_store["fine"] == fingerprint_text(store).fine


def test_nested_and_unraised_sub_exceptions_and_an_exception_after_the_group() -> None:
    nested = (
        "  + Exception Group Traceback (most recent call last):\n"
        '  |   File "/srv/feeds/sync.py", line 9, in <module>\n'
        "  |     sync()\n"
        "  | ExceptionGroup: sync failed (2 sub-exceptions)\n"
        "  +-+---------------- 1 ----------------\n"
        "    | ExceptionGroup: batch 1 (1 sub-exception)\n"
        "    +-+---------------- 1 ----------------\n"
        "      | feeds.errors.FeedGone: https://example.org/feed.xml\n"
        "      +------------------------------------\n"
        "    +---------------- 2 ----------------\n"
        "    | ValueError: bad date\n"
        "    +------------------------------------\n")
    found = fingerprint_text(nested).extraction
    assert found is not None
    assert (found.kind, found.error_type) == ("python", "feeds.errors.FeedGone")
    assert [f.function for f in found.frames] == ["<module>"]
    later = fingerprint_text(nested + (
        "\nDuring handling of the above exception, another exception occurred:\n\n"
        "Traceback (most recent call last):\n"
        '  File "/srv/feeds/sync.py", line 12, in <module>\n'
        "    report()\n"
        "RuntimeError: report failed\n")).extraction
    assert later is not None and later.error_type == "RuntimeError"
    assert ("feeds.errors.FeedGone", "https://example.org/feed.xml") in later.chain


# -- D10: Gradle's glued javac line ---------------------------------------------------------

JAVAC = ("/home/runner/work/ledger/ledger/app/src/main/java/org/ledger/Posting.java:41: error: "
         "incompatible types: String cannot be converted to int\n"
         "        int amount = row.get(\"amount\");\n"
         "                            ^\n"
         "1 error\n")
WRONG = ("\nFAILURE: Build failed with an exception.\n\n* What went wrong:\n"
         "Execution failed for task ':app:compileJava'.\n"
         "> Compilation failed; see the compiler error output for details.\n\n"
         "BUILD FAILED in 6s\n")


def test_a_javac_error_reads_the_same_in_every_gradle_form() -> None:
    forms = [
        JAVAC,
        "> Task :app:compileJava FAILED\n" + JAVAC + WRONG,
        "> Task :app:compileJava\n" + JAVAC + "\n> Task :app:compileJava FAILED\n" + WRONG,
        "> Task :app:compileJava" + JAVAC + "\n> Task :app:compileJava FAILED\n" + WRONG,
        ":app:compileJava" + JAVAC + WRONG,
    ]
    found = [fingerprint_text(text) for text in forms]
    assert {fp.fine for fp in found} == {found[0].fine}
    assert found[3].extraction is not None and found[3].extraction.kind == "compiler"
    other = fingerprint_text(forms[3].replace("Posting.java:41", "Journal.java:12"))
    assert other.fine != found[3].fine
