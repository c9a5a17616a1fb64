"""A log's per-line columns around an error (QA s19d D1, D4, D5, D6): an exception that
names an ANR, a logcat dump with another process's ANR and other tags' lines around the
crash, and ``docker compose logs`` with other services' lines cutting the error are keyed as
the error's plain text. Each text through `heal diagnose --json` in a subprocess."""

from __future__ import annotations

from pathlib import Path

from tests._diagnose import diagnose_fingerprints


def _fines(tmp_path: Path, texts: dict[str, str]) -> dict[str, str]:
    return {name: fp["fine"] for name, fp in diagnose_fingerprints(tmp_path, texts).items()}


_GALLERY_CRASH = [
    "FATAL EXCEPTION: main", "Process: org.example.gallery, PID: 6120",
    "java.lang.ArithmeticException: divide by zero",
    "\tat org.example.gallery.grid.ColumnMath.span(ColumnMath.kt:23)",
    "\tat org.example.gallery.grid.GridFragment.onResume(GridFragment.kt:64)",
    "\tat android.app.Fragment.performResume(Fragment.java:2512)",
    "\tat android.os.Handler.handleCallback(Handler.java:942)"]
_GALLERY_OTHER = [*_GALLERY_CRASH[:2],
                  "java.lang.UnsupportedOperationException: remove() on a read-only list",
                  "\tat org.example.gallery.grid.Selection.clear(Selection.kt:88)",
                  *_GALLERY_CRASH[4:]]


def _line(stamp: str, pid: int, level: str, tag: str, text: str) -> str:
    return f"{stamp} {pid:5d} {pid:5d} {level} {tag}: {text}\n"


def _crash(lines: list[str], stamp: str = "09-14 21:03:44.517") -> list[str]:
    return [_line(stamp, 6120, "E", "AndroidRuntime", x) for x in lines]


def _plain(lines: list[str]) -> str:
    return "\n".join(lines[2:]) + "\n"


def test_anr_is_a_report_not_a_word_and_a_crash_trace_wins(tmp_path: Path) -> None:
    # before: any "ANR in " keyed the text as an ANR, so an exception naming one, and an app's
    # crash after another process's ANR in the same dump, were keyed on that ANR
    def watchdog(message: str) -> str:
        return (f'Exception in thread "ui-watch" java.util.concurrent.TimeoutException: '
                f"{message}\n\tat org.example.watch.UiWatch.poll(UiWatch.java:71)\n"
                "\tat org.example.watch.UiWatch.run(UiWatch.java:30)\n")

    other_anr = [_line("09-14 21:03:40.002", 912, "E", "ActivityManager", x) for x in (
        "ANR in com.android.systemui", "PID: 1377",
        "Reason: Input dispatching timed out (Waiting to send non-key event)",
        "Load: 11.2 / 9.8 / 7.1")]
    fines = _fines(tmp_path, {
        "watch_a": watchdog("main looper stalled: ANR in org.example.gallery likely"),
        "watch_b": watchdog("render thread stalled: ANR in org.example.gallery likely"),
        "dump_a": "".join(other_anr + _crash(_GALLERY_CRASH)),
        "dump_b": "".join(other_anr + _crash(_GALLERY_OTHER)),
        "plain_a": _plain(_GALLERY_CRASH),
        "plain_b": _plain(_GALLERY_OTHER),
        "anr": "".join(other_anr),
    })
    assert fines["watch_a"] != fines["watch_b"]
    assert fines["dump_a"] == fines["plain_a"] != fines["anr"]
    assert fines["dump_b"] == fines["plain_b"] != fines["dump_a"]


def test_logcat_crash_among_other_tags_lines(tmp_path: Path) -> None:
    # before: one line of another tag before, inside or after the crash left every line's
    # "E AndroidRuntime: " on it, and the crash was keyed on "FATAL: main"
    crash = _crash(_GALLERY_CRASH)
    start = _line("09-14 21:03:44.101", 912, "I", "ActivityManager",
                  "Start proc 6120:org.example.gallery/u0a88 for top-activity")
    inside = _line("09-14 21:03:44.520", 912, "W", "ActivityTaskManager",
                   "  Force finishing activity org.example.gallery/.GridActivity")
    died = _line("09-14 21:03:44.610", 912, "I", "ActivityManager",
                 "Process org.example.gallery (pid 6120) has died: fg  TOP")
    brief = [f"E/AndroidRuntime( 6120): {x}\n" for x in _GALLERY_CRASH]
    fines = _fines(tmp_path, {
        "plain": _plain(_GALLERY_CRASH),
        "before": "".join([start, *crash]),
        "inside": "".join([*crash[:4], inside, *crash[4:]]),
        "after": "".join([*crash, died]),
        "brief": "".join([*brief[:3], "I/ActivityManager(  912): Killing 6120\n", *brief[3:]]),
        "other": _plain(_GALLERY_OTHER),
    })
    assert fines["before"] == fines["inside"] == fines["after"] == fines["plain"]
    assert fines["brief"] == fines["plain"] != fines["other"]


def test_compose_services_interleaved_and_every_parser_under_the_prefix(
        tmp_path: Path) -> None:
    # before: another service's line cutting a trace split one error into several keys, and
    # the parsers other than the JVM's saw "worker-1 | " on every line
    trace = ["2026-03-02 07:15:09,114 ERROR [pool-2-thread-1] o.e.billing.Invoicer - run failed",
             "java.lang.IllegalArgumentException: currency XYZ is not supported",
             "\tat org.example.billing.Money.of(Money.java:48)",
             "\tat org.example.billing.Invoicer.total(Invoicer.java:112)",
             "\tat org.example.billing.Invoicer.run(Invoicer.java:60)"]
    noise = "cache-1    | 1:M 02 Mar 2026 07:15:09.120 * Background saving started by pid 41"

    def compose(lines: list[str], at: int | None = None) -> str:
        out = [f"billing-1  | {x}" for x in lines]
        if at is not None:
            out.insert(at, noise)
        return "\n".join(out) + "\n"

    python = ["Traceback (most recent call last):",
              '  File "/srv/jobs/sync.py", line 14, in <module>', "    run(cfg)",
              '  File "/srv/jobs/sync.py", line 9, in run', '    return cfg["region"]',
              "KeyError: 'region'"]
    analysis = ["", "***************************", "APPLICATION FAILED TO START",
                "***************************", "", "Description:", "",
                "Failed to bind properties under 'billing.rate' to java.math.BigDecimal:",
                "", "Action:", "", "Update your application's configuration", ""]
    fines = _fines(tmp_path, {
        "plain": "\n".join(trace) + "\n",
        "whole": compose(trace),
        "cut_1": compose(trace, 1),
        "cut_2": compose(trace, 2),
        "cut_4": compose(trace, 4),
        "py_plain": "\n".join(python) + "\n",
        "py_compose": "".join(f"sync_worker_1 | {x}\n" for x in python),
        "boot_plain": "\n".join(analysis) + "\n",
        "boot_compose": "".join(f"billing-1  | {x}\n" for x in analysis),
    })
    assert fines["whole"] == fines["cut_1"] == fines["cut_2"] == fines["cut_4"] == fines["plain"]
    assert fines["py_compose"] == fines["py_plain"]
    assert fines["boot_compose"] == fines["boot_plain"]


def test_parse_anr_needs_the_report_under_its_line() -> None:
    # (fast unit check) a report cut before its Reason keeps its process; a line that only
    # names an ANR, or an ANR in a message's middle, is no report
    from pipeline.fingerprint.parsers_android import parse_anr

    cut = parse_anr("I ActivityManager: ANR in org.example.gallery\nPID: 6120\nLoad: 2.0\n")
    assert cut is not None and cut.message == "ANR in org.example.gallery"
    assert parse_anr("ANR in org.example.gallery\nretrying\n") is None
    assert parse_anr("E Watch: main thread: saw ANR in org.example.gallery\nReason: x\n") is None
