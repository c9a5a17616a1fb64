"""A line that only reports a failure (a verdict with a subject, a wrapper's exit report, a
pointer elsewhere, a tally) never heads a text whose other line names the cause; of several
reports the first heads it; a tool's warning heads a text a wrapper's narration follows.
Texts of our own (other tools, other wording than any corpus); through ``heal diagnose
--offline --json`` in a subprocess, and in-process for the line ranking."""

from __future__ import annotations

from pathlib import Path

from pipeline.fingerprint import fingerprint_text
from pipeline.fingerprint.parsers_lines import headline, is_report
from tests._diagnose import diagnose_fingerprints

#: a library's one-line error whose message ends with a pointer to its docs
POINTER = "(Read more about this error at https://docs.example.org/errors/q42)\n"
#: a wrapper's report of how it exits, after the tool's own line
EXIT_REPORT = "giving up with error status 3\n"
#: a supervisor's verdict after the program's own line (journal-style prefixes)
VERDICT = "Dec 01 10:00:02 box supervisor[1]: Failed to launch api-worker (exit 1)\n"
PAIRS = {
    # the error word in a reference to docs: the exception line above names the cause
    "pointer": ("kombu.exceptions.OperationalError: [Errno 111] Connection refused\n" + POINTER,
                "kombu.exceptions.OperationalError: timed out reading from broker\n" + POINTER),
    # the error word in a wrapper's exit report: the line above names the cause
    "exit_report": ("Target directory /mnt/vault/daily does not exist.\n" + EXIT_REPORT,
                    "Unable to acquire lock /mnt/vault/daily/.lock\n" + EXIT_REPORT),
    # a verdict with a subject after the line naming the cause
    "verdict": ("Dec 01 10:00:01 box api-worker[88]: could not bind 0.0.0.0:8080: address in use\n"
                + VERDICT,
                "Dec 01 10:00:01 box api-worker[88]: cannot open /etc/api/app.toml: "
                "permission denied\n" + VERDICT),
}


def test_report_lines_give_way_to_the_cause_through_the_cli(tmp_path: Path) -> None:
    texts = {f"{name}_{side}": text for name, pair in PAIRS.items()
             for side, text in zip("ab", pair, strict=True)}
    # a tool's warning, then (or not) a cron wrapper's narration: one error
    warning = "restic warning: 2 files changed while reading, snapshot incomplete\n"
    texts["warn_alone"] = warning
    texts["warn_wrapped"] = ("nightly snapshot of /home\n" + warning
                             + "posting summary to #backups\n")
    found = diagnose_fingerprints(tmp_path, texts)
    for name in PAIRS:
        assert found[f"{name}_a"]["fine"] != found[f"{name}_b"]["fine"], name
    assert found["warn_alone"]["fine"] == found["warn_wrapped"]["fine"]


def test_a_verdict_alone_still_keys_on_its_subject() -> None:
    one = fingerprint_text(VERDICT).fine
    other = fingerprint_text(VERDICT.replace("api-worker", "mailer")).fine
    assert one != other


def test_report_line_kinds() -> None:
    for line in ("Failed to launch api-worker (exit 1)", "giving up with error status 3",
                 "(Read more about this error at https://docs.example.org/errors/q42)",
                 "Sync aborted--see previous errors", "mirror: Error is fatal, stopping"):
        assert is_report(line), line
    for line in ("cannot open /etc/api/app.toml: permission denied",
                 "Target directory /mnt/x does not exist.", "Unable to acquire lock",
                 "kombu.exceptions.OperationalError: Error 111", "deploy finished"):
        assert not is_report(line), line


def test_of_several_reports_the_first_heads_and_a_cause_beats_all() -> None:
    reports = ["step upload failed for bucket media", "Failed to publish release 2.1"]
    assert headline(reports) == reports[0]
    cause = "upload: permission denied for bucket media"
    assert headline([*reports, cause, "Failed to publish release 2.1"]) == cause
    # a line without failure words never outranks a report; a warning outranks plain lines
    assert headline(["Failed to publish release 2.1", "notifying #ops"]) == (
        "Failed to publish release 2.1")
    assert headline(["rclone warning: 1 object skipped", "notifying #ops"]) == (
        "rclone warning: 1 object skipped")


def test_a_port_number_is_not_a_tally() -> None:
    text = ("psycopg.OperationalError: connection to server at \"pg\" (10.1.2.3), port 6432 "
            "failed: server closed the connection unexpectedly\n" + POINTER)
    extraction = fingerprint_text(text).extraction
    assert extraction is not None and "port 6432 failed" in extraction.message
