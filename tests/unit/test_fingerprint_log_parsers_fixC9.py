"""Errors a log format wraps (QA s19a D1, D2, D7): an Android logcat crash or ANR, Spring
Boot's failure analysis and .NET ILogger's logged exceptions are keyed on their cause, not on
the log's columns, thread name, logger header or wrapper sentence; a second cause of the same
tool gets another key. Each text through `heal diagnose --json` in a subprocess."""

from __future__ import annotations

from pathlib import Path

from pipeline.fingerprint.line_columns import strip_columns
from tests._diagnose import diagnose_fingerprints


def _fines(tmp_path: Path, texts: dict[str, str]) -> dict[str, str]:
    return {name: fp["fine"] for name, fp in diagnose_fingerprints(tmp_path, texts).items()}


def _logcat(stamp: str, pid: int, tid: int, tag: str, lines: list[str]) -> str:
    return "".join(f"{stamp} {pid:5d} {tid:5d} E {tag}: {line}\n" for line in lines)


_NOTES_IAE = ["FATAL EXCEPTION: main", "Process: org.example.notes, PID: {pid}",
              "java.lang.IllegalArgumentException: Unknown note type: 7",
              "\tat org.example.notes.data.NoteMapper.map(NoteMapper.java:41)",
              "\tat org.example.notes.ui.ListActivity.onResume(ListActivity.java:88)",
              "\tat android.app.Activity.performResume(Activity.java:8422)",
              "\tat android.os.Handler.dispatchMessage(Handler.java:106)"]
_NOTES_IOOBE = ["FATAL EXCEPTION: main", "Process: org.example.notes, PID: {pid}",
                "java.lang.IndexOutOfBoundsException: Index: 3, Size: 3",
                "\tat java.util.ArrayList.get(ArrayList.java:437)",
                "\tat org.example.notes.ui.NoteAdapter.onBindViewHolder(NoteAdapter.java:52)",
                "\tat androidx.recyclerview.widget.RecyclerView$Adapter.bindViewHolder"
                "(RecyclerView.java:7254)"]


def _notes(lines: list[str], stamp: str, pid: int, tid: int) -> str:
    return _logcat(stamp, pid, tid, "AndroidRuntime", [x.format(pid=pid) for x in lines])


def test_logcat_crash_is_keyed_on_its_exception(tmp_path: Path) -> None:
    # before: every logcat crash was "FATAL: main" (its thread's name)
    plain = "\n".join(x.format(pid=1) for x in _NOTES_IAE[2:]) + "\n"
    fines = _fines(tmp_path, {
        "iae_1": _notes(_NOTES_IAE, "03-14 08:01:02.345", 4120, 4120),
        "iae_2": "Starting emulator...\n" + _notes(_NOTES_IAE, "11-30 23:59:58.001", 987, 987),
        "ioobe": _notes(_NOTES_IOOBE, "03-14 08:01:02.345", 4120, 4120),
        # logcat's older "brief" columns, and the trace without columns
        "iae_brief": "".join(f"E/AndroidRuntime( 3735): {x.format(pid=3735)}\n"
                             for x in _NOTES_IAE),
        "iae_plain": plain,
    })
    assert fines["iae_1"] == fines["iae_2"] == fines["iae_plain"]
    assert fines["iae_brief"] == fines["iae_plain"]
    assert fines["iae_1"] != fines["ioobe"]


def test_logcat_frameless_exception_and_anr(tmp_path: Path) -> None:
    # before: a coroutine crash was keyed on its worker thread's name, an ANR on the CPU
    # table's last line (every ANR of an app shared it)
    def coroutine(worker: int, exc: str) -> str:
        return _logcat("05-26 08:29:51.139", 8605, 30000 + worker, "AndroidRuntime", [
            f"FATAL EXCEPTION: DefaultDispatcher-worker-{worker}",
            "Process: org.example.notes, PID: 8605", exc])

    def anr(reason: str, stamp: str) -> str:
        return _logcat(stamp, 1502, 1533, "ActivityManager", [
            "ANR in org.example.notes (org.example.notes/.EditActivity)", "PID: 23114",
            f"Reason: {reason}", "Load: 9.1 / 8.7 / 8.2",
            "CPU usage from 12ms to 10044ms later (2026-01-05 10:11:12.000 to 10:11:22.032):",
            "  98% 23114/org.example.notes: 90% user + 8% kernel / faults: 310 minor"])

    fines = _fines(tmp_path, {
        "cancel_2": coroutine(2, "kotlinx.coroutines.JobCancellationException: "
                                 "Parent job is Cancelling"),
        "cancel_9": coroutine(9, "kotlinx.coroutines.JobCancellationException: "
                                 "Parent job is Cancelling"),
        "timeout": coroutine(2, "kotlinx.coroutines.TimeoutCancellationException: "
                                "Timed out waiting for 5000 ms"),
        "anr_service_1": anr("executing service org.example.notes/.sync.SyncService",
                             "01-05 10:11:22.040"),
        "anr_service_2": anr("executing service org.example.notes/.sync.SyncService",
                             "07-19 17:40:02.913"),
        "anr_provider": anr("ContentProvider not responding", "01-05 10:11:22.040"),
    })
    assert fines["cancel_2"] == fines["cancel_9"] != fines["timeout"]
    assert fines["anr_service_1"] == fines["anr_service_2"] != fines["anr_provider"]


def _spring(header: str, description: list[str], action: str) -> str:
    return "\n".join([
        f"{header} INFO 7 --- [main] com.example.billing.BillingApp : Starting BillingApp",
        f"{header} ERROR 7 --- [main] o.s.b.d.LoggingFailureAnalysisReporter   : ", "",
        "***************************", "APPLICATION FAILED TO START",
        "***************************", "", "Description:", "", *description, "", "Action:", "",
        action, ""])


def test_spring_boot_failure_analysis_is_keyed_on_its_description(tmp_path: Path) -> None:
    # before: every failure analysis was keyed on the reporter's log header (Boot 3), or on
    # its banner; its Description was never read
    no_bean = ["Parameter 0 of constructor in com.example.billing.InvoiceService required a "
               "bean of type 'com.example.billing.TaxClient' that could not be found."]
    fines = _fines(tmp_path, {
        "bean_boot2": _spring("2025-02-01 09:00:00.101", no_bean,
                              "Consider defining a bean of type 'TaxClient'."),
        "bean_boot2_other_action": _spring("2025-06-11 17:22:41.990", no_bean,
                                           "Define a TaxClient bean in your configuration."),
        "bean_boot3": _spring("2026-01-01T00:00:00.000+01:00", no_bean,
                              "Consider defining a bean of type 'TaxClient'."),
        "config": _spring("2026-01-01T00:00:00.000+01:00", [
            "Config data location 'file:/etc/billing/' does not exist"],
            "Check that the value 'file:/etc/billing/' at class path resource is correct."),
        "port": _spring("2026-01-01T00:00:00.000+01:00", [
            "Web server failed to start. Port 9443 was already in use."],
            "Identify and stop the process that's listening on port 9443."),
    })
    assert fines["bean_boot2"] == fines["bean_boot2_other_action"]
    assert len({fines["bean_boot3"], fines["config"], fines["port"]}) == 3


def _ilogger(category: str, sentence: str, exception: list[str], level: str = "fail") -> str:
    return "\n".join([
        "info: Microsoft.Hosting.Lifetime[14]", "      Now listening on: http://[::]:5080",
        f"{level}: {category}", f"      {sentence}",
        *(f"      {line}" for line in exception), ""])


_NPGSQL_TAIL = ["   at Npgsql.Internal.NpgsqlConnector.ReadMessageLong(Boolean async)",
                "   --- End of inner exception stack trace ---",
                "   at Microsoft.EntityFrameworkCore.Update.ReaderModificationCommandBatch."
                "ExecuteAsync(IRelationalConnection connection, CancellationToken ct)",
                "   at Shop.Users.Signup.RegisterAsync(SignupForm form) in "
                "/app/src/Shop.Users/Signup.cs:line {line}"]


def _ef(sqlstate: str, line: int) -> list[str]:
    return ["Microsoft.EntityFrameworkCore.DbUpdateException: An error occurred while saving "
            "the entity changes. See the inner exception for details.",
            f" ---> Npgsql.PostgresException (0x80004005): {sqlstate}",
            *(x.format(line=line) for x in _NPGSQL_TAIL)]


def test_ilogger_exception_is_keyed_on_its_inner_cause(tmp_path: Path) -> None:
    # before: "fail:" was no level; the wrapper's sentence ("An error occurred while
    # saving ...") or the record's category headed, and the inner exception was lost
    save = "An exception occurred in the database while saving changes for context type " \
           "'Shop.Users.UsersDb'."
    unique = "23505: duplicate key value violates unique constraint \"IX_users_email\""
    fk = "23503: insert or update on table \"orders\" violates foreign key constraint " \
         "\"FK_orders_users\""
    startup = "Application startup exception"
    fines = _fines(tmp_path, {
        "unique_1": _ilogger("Microsoft.EntityFrameworkCore.Update[10000]", save,
                             _ef(unique, 31)),
        "unique_2": _ilogger("Microsoft.EntityFrameworkCore.Update[10000]", save,
                             _ef(unique, 31)).replace("5080", "8080"),
        "fk": _ilogger("Microsoft.EntityFrameworkCore.Update[10000]", save, _ef(fk, 31)),
        "missing_file": _ilogger("Microsoft.AspNetCore.Hosting.Diagnostics[6]", startup, [
            "System.IO.FileNotFoundException: Could not find file '/app/certs/signing.pfx'.",
            "   at Shop.Web.Startup.ConfigureServices(IServiceCollection services) in "
            "/app/src/Shop.Web/Startup.cs:line 40"], level="crit"),
        "bad_option": _ilogger("Microsoft.AspNetCore.Hosting.Diagnostics[6]", startup, [
            "Microsoft.Extensions.Options.OptionsValidationException: DataAnnotation "
            "validation failed for 'JwtOptions' members: 'Issuer' with the error: 'The Issuer "
            "field is required.'.",
            "   at Shop.Web.Startup.ConfigureServices(IServiceCollection services) in "
            "/app/src/Shop.Web/Startup.cs:line 40"], level="crit"),
        # a record without an exception: its message, not its category
        "queue_missing": _ilogger("Shop.Worker.QueueConsumer[0]",
                                  "Queue 'billing' does not exist on broker rabbit-1", []),
        "queue_denied": _ilogger("Shop.Worker.QueueConsumer[0]",
                                 "Access refused to queue 'billing' for user 'worker'", []),
    })
    assert fines["unique_1"] == fines["unique_2"]
    assert len({fines["unique_1"], fines["fk"]}) == 2
    assert fines["missing_file"] != fines["bad_option"]
    assert fines["queue_missing"] != fines["queue_denied"]


def test_strip_columns_needs_a_run_of_log_columns() -> None:
    # a plain trace (frames share "\tat " but no number) and a single prefixed line keep theirs
    assert strip_columns("java.lang.X: boom\n\tat a.B.c(B.java:1)\n\tat a.B.d(B.java:2)\n") is None
    assert strip_columns("12:00:01 app: one line\nplain\n") is None
    text = ("web-1  | 2026-01-01 boom\nweb-1  | \tat a.B.c(B.java:1)\n"
            "web-1  | \tat a.B.d(B.java:2)\n")
    assert strip_columns(text) == "2026-01-01 boom\n\tat a.B.c(B.java:1)\n\tat a.B.d(B.java:2)"
