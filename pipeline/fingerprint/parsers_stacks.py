"""Stack traces of the JVM (Java/Kotlin, with ``Caused by``), Node.js and Go panics."""

from __future__ import annotations

import re

from pipeline.fingerprint.line_columns import strip_columns
from pipeline.fingerprint.model import Extraction, Frame
from pipeline.fingerprint.paths import is_library, normalize_path

_JAVA_HEAD = re.compile(
    r"^(?:Exception in thread \"[^\"]*\" |Caused by: |\s*)"
    r"(?P<type>(?:[a-z_$][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error|Throwable)\w*)"
    r"(?::\s?(?P<msg>.*))?$"
)
#: ``at com.x.Y.m(Y.java:5)``; Java 9+ prefixes the class loader and module (with its
#: version): ``at java.base/java.net.SocketInputStream.read(...)``, ``at app//com.x.Y.m(...)``,
#: ``at com.foo@1.2/com.foo.Bar.m(...)`` (each prefix part a bounded run without "/")
_JAVA_FRAME = re.compile(
    r"^\s+at (?:[\w$.@-]{0,200}/){0,2}(?P<cls>[\w$.]+)\.(?P<func>[\w$<>]+)"
    r"\((?P<file>[^:)]*)(?::(?P<line>\d+))?\)"
)
#: (Android's own packages too: ``android.os.Handler``, ``androidx.fragment``, ``dalvik``,
#: ``com.android.internal`` are the platform's, not the app's)
_JVM_LIBRARY = re.compile(r"^(?:java|javax|jdk|sun|com\.sun|kotlin|kotlinx|scala|org\.junit"
                          r"|org\.gradle|org\.apache\.maven|org\.springframework"
                          r"|android|androidx|dalvik|com\.android)\.")
_NODE_HEAD = re.compile(r"^(?:Uncaught )?(?P<type>[A-Z]\w*(?:Error|Exception)|Error)"
                        r"(?: \[(?P<code>[A-Z_]+)\])?: (?P<msg>.*)$")
_NODE_FRAME = re.compile(r"^\s+at (?:(?P<func>.+?) \()?(?P<file>[^()\s]+?):(?P<line>\d+):\d+\)?$")
#: (for the test runners' parsers, which read Node errors inside a test's block)
NODE_FRAME = _NODE_FRAME
_GO_PANIC = re.compile(r"^(?:panic|fatal error): (?P<msg>.*)$")
#: a Go frame's function line, ``pkg.(*T).Method(0x1, 0x2)``: the leading run of name
#: characters, cut at its last "(" (as ``^(?P<func>[\w./*()-]+)\(.*\)$`` would, but linear:
#: that regex was quadratic on "a()()()..." lines)
_GO_NAME_RUN = re.compile(r"[\w./*()-]+")


def _go_func(line: str) -> str | None:
    """The function of a Go frame line (ending in ``)``), or None."""
    if not line.endswith(")"):
        return None
    run = _GO_NAME_RUN.match(line)
    cut = run.group(0).rfind("(") if run else -1
    return run.group(0)[:cut] if run and cut >= 1 else None
_GO_LOC = re.compile(r"^\s+(?P<file>\S+\.go):(?P<line>\d+)")


def parse_java(text: str, repo: str = "") -> Extraction | None:
    """The root cause (last ``Caused by``) with the frames printed under it; in a trace
    whose lines carry a log's columns (Android's logcat: ``11-12 19:56:48.313 37053 37053 E
    AndroidRuntime: java.lang.NullPointerException: ...``) the trace under them
    (:func:`pipeline.fingerprint.line_columns.strip_columns`). There an exception's line
    is one without frames too (a coroutine's ``JobCancellationException``): the log's
    columns already say it is a record of its own, not a stray line that looked like one."""
    found = _parse_java(text) if "at " in text else None  # (no frames, no JVM stack trace)
    if found is None and ("Exception" in text or "Error" in text):
        bare = strip_columns(text)
        found = _parse_java(bare, frameless=True) if bare is not None else None
    return found


def _parse_java(text: str, frameless: bool = False) -> Extraction | None:
    heads: list[tuple[str, str, list[Frame]]] = []
    causes: set[int] = set()  # the heads printed as "Caused by:"
    for line in text.splitlines():
        frame = _JAVA_FRAME.match(line)
        if frame and heads:
            cls = frame.group("cls")
            heads[-1][2].append(Frame(
                file=frame.group("file") or cls, function=f"{cls}.{frame.group('func')}",
                line=int(frame.group("line")) if frame.group("line") else None,
                in_project=not _JVM_LIBRARY.match(cls),
            ))
            continue
        head = _JAVA_HEAD.match(line)
        if head and (line.startswith(("Caused by:", "Exception in")) or not heads):
            if line.startswith("Caused by:"):
                causes.add(len(heads))
            heads.append((head.group("type"), (head.group("msg") or "").strip(), []))
    # a head without frames is a stray line that looked like one, unless it is a cause: a
    # cause printed with only "... N more" shares its wrapper's frames (and is often the
    # root cause)
    heads = [h for i, h in enumerate(heads) if h[2] or i in causes or len(heads) == 1]
    if not heads or not (frameless or any(h[2] for h in heads)):
        return None
    error_type, message, frames = heads[-1]
    if not frames:  # "... N more": the root cause shares the frames of its wrapper
        frames = next((h[2] for h in reversed(heads) if h[2]), [])
    chain = tuple((t, m) for t, m, _ in heads[:-1])
    # printed innermost first; an Extraction's frames run outermost to innermost (as a
    # Python traceback's), so the key's frames and its top function are the failing ones
    return Extraction("java", error_type, message, tuple(reversed(frames)), chain, tool="jvm")


def parse_node_head(line: str) -> tuple[str, str] | None:
    """The error type (with its code) and message of a Node error's first line, or None."""
    head = _NODE_HEAD.match(line.strip())
    if head is None:
        return None
    code = head.group("code")
    return (f"{head.group('type')}[{code}]" if code else head.group("type")), head.group("msg")


def parse_node(text: str, repo: str = "") -> Extraction | None:
    if "    at " not in text:
        return None
    lines = text.splitlines()
    for index, line in enumerate(lines):
        head = _NODE_HEAD.match(line.strip())
        if not head:
            continue
        frames: list[Frame] = []
        for follow in lines[index + 1:]:
            frame = _NODE_FRAME.match(follow)
            if not frame:
                if frames:
                    break
                continue
            raw = frame.group("file").removeprefix("file://")
            frames.append(Frame(normalize_path(raw, repo), (frame.group("func") or "").strip(),
                                int(frame.group("line")), not is_library(raw)))
        if frames:
            error_type = head.group("type")
            if head.group("code"):
                error_type = f"{error_type}[{head.group('code')}]"
            # printed innermost first: outermost to innermost, as every Extraction's
            return Extraction("node", error_type, head.group("msg"), tuple(reversed(frames)),
                              tool="node")
    return None


def parse_go(text: str, repo: str = "") -> Extraction | None:
    if "goroutine " not in text:
        return None
    lines = text.splitlines()
    panic = next((m for m in map(_GO_PANIC.match, lines) if m), None)
    if panic is None or "goroutine " not in text:
        return None
    frames: list[Frame] = []
    seen = 0  # goroutine headers: only the first (the panicking one) is the error's stack
    for index, line in enumerate(lines[:-1]):
        if line.startswith("goroutine "):
            seen += 1
            if seen > 1:
                break
            continue
        func = _go_func(line)
        loc = _GO_LOC.match(lines[index + 1]) if func else None
        if func and loc:
            raw = loc.group("file")
            in_project = not (is_library(raw) or func.startswith("runtime."))
            frames.append(Frame(normalize_path(raw, repo), func, int(loc.group("line")),
                                in_project))
    message = panic.group("msg")
    error_type = "panic"
    if message.startswith("runtime error: "):
        error_type, message = "runtime error", message.removeprefix("runtime error: ")
    # printed innermost first: outermost to innermost, as every Extraction's
    return Extraction("go", error_type, message, tuple(reversed(frames)), tool="go")


#: .NET's report of an exception nobody caught: ``Unhandled exception. System.X: message``
#: (.NET 5+; ``Unhandled Exception: System.X: message`` before), and an inner exception
#: printed in it: `` ---> System.IO.IOException: message``; a native error code after the
#: class (``SqlException (0x80131904):``, ``SocketException (98):``) is not its type
_DOTNET_HEAD = re.compile(
    r"^(?:Unhandled [Ee]xception[.:] |\s{0,8}---> )(?P<type>[A-Za-z_][\w.`]{0,300})"
    r"(?: \((?:0x)?[0-9A-Fa-f]{1,16}\))?: ?(?P<msg>.*)$")
#: .NET's ILogger (ASP.NET Core's console log): ``fail: Category[EventId]`` (or ``crit:``),
#: its message and the exception it logs indented under it
_ILOGGER = re.compile(r"^(?:fail|crit): [\w.]{1,300}\[\d{1,9}\]\s*$", re.MULTILINE)
#: the exception an ILogger record logs: an indented ``Namespace.TypeException: message``
_ILOGGER_HEAD = re.compile(
    r"^\s{1,16}(?P<type>(?:[A-Za-z_]\w{0,100}\.){1,20}[A-Za-z_]\w{0,100}(?:Exception|Error))"
    r"(?: \((?:0x)?[0-9A-Fa-f]{1,16}\))?: ?(?P<msg>.*)$")
#: ``   at Billing.TaxTable.RateFor(String region) in /src/TaxTable.cs:line 22`` (the
#: location only with debug symbols)
_DOTNET_FRAME = re.compile(
    r"^\s{1,16}at (?P<func>[^\s(]{1,500})\([^)]{0,1000}\)"
    r"(?: in (?P<file>[^:\n]{0,1000}(?::[\\/][^:\n]{0,1000})?):line (?P<line>\d{1,9}))?\s*$")
_DOTNET_LIBRARY = ("System.", "Microsoft.")

#: one exception report: its exceptions (outermost first) and the frames printed under it
_Report = tuple[list[tuple[str, str]], list[Frame]]


def parse_dotnet(text: str, repo: str = "") -> Extraction | None:
    """An unhandled .NET exception, or one an ILogger record logs (``fail:``/``crit:``
    then the exception indented under the record's message): the innermost exception (the
    last ``--->``, the root cause: a ``DbUpdateException`` says only to see its inner
    exception) with its type and message, its wrappers as the chain, and the frames printed
    under the report (innermost first, so reversed: outermost to innermost). Of several
    reports (a logged exception, then the process's own report of it) the one with the
    longest chain: it holds the root cause the others may leave out."""
    ilogger = "fail: " in text or "crit: " in text
    if not ("nhandled " in text and "   at " in text) and not (
            ilogger and _ILOGGER.search(text)):
        return None
    reports: list[_Report] = []
    in_record = False  # (inside an ILogger record: its first indented exception line heads)
    for line in text.splitlines():
        if ilogger and line[:1] not in (" ", "\t", ""):
            in_record = _ILOGGER.match(line) is not None
        head = _DOTNET_HEAD.match(line)
        if head and line.startswith(" ") and not (reports and reports[-1][0]):
            head = None  # an inner exception's line needs its report
        if head and not line.startswith(" "):
            reports.append(([], []))
        elif head is None and in_record:
            head = _ILOGGER_HEAD.match(line)
            if head:
                in_record = False  # (the record's exception; its inner ones are ``--->``)
                reports.append(([], []))
        if head:
            reports[-1][0].append((head.group("type"), head.group("msg").strip()))
            continue
        frame = _DOTNET_FRAME.match(line) if reports else None
        if frame:
            func, raw = frame.group("func"), frame.group("file") or ""
            reports[-1][1].append(Frame(
                normalize_path(raw, repo) if raw else "", func,
                int(frame.group("line")) if frame.group("line") else None,
                not func.startswith(_DOTNET_LIBRARY) and not (raw and is_library(raw))
                and "." in func))  # (``lambda_method45``: a method compiled at run time)
    if not reports:
        return None
    heads, frames = max(reports, key=lambda report: len(report[0]))
    error_type, message = heads[-1]
    return Extraction("dotnet", error_type, message, tuple(reversed(frames)),
                      tuple(heads[:-1]), tool="dotnet")
