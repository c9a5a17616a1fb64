"""One-line errors: compiler/linter diagnostics, shell errors, generic ERROR/FATAL log lines."""

from __future__ import annotations

import re

from pipeline.fingerprint.model import Extraction, Frame
from pipeline.fingerprint.parsers_beam import is_beam_frame
from pipeline.fingerprint.parsers_python import PYTEST_FRAME
from pipeline.fingerprint.paths import is_library, normalize_path
from pipeline.runnerlines import is_runner_line

# ruff/flake8/gcc/clang/mypy/go vet: path:line[:col]: [severity:] [CODE] message [code]
_DIAGNOSTIC = re.compile(
    r"^(?P<file>[^\s:()]+\.[\w+]+):(?P<line>\d+)(?::(?P<col>\d+))?:\s+"
    r"(?:(?P<sev>fatal error|error|warning|note)(?:\[(?P<code2>[\w-]+)\])?:\s+)?"
    r"(?:(?P<code>[A-Z]{1,4}\d{2,4})\s+(?:\[\*\]\s+)?)?"
    r"(?P<msg>.*?)(?:\s+\[(?P<code3>[a-z][\w-]*)\])?$"
)
_HAS_LOCATION = re.compile(r"\.[\w+]+(?::\d+[:\s]|\(\d+,\d+\))")
# tsc / msbuild: path(line,col): error CODE: message; and tsc's default (pretty, on a
# terminal) form of the same diagnostic, path:line:col - error CODE: message
_TSC = re.compile(
    r"^(?P<file>[^\s(]{1,1000})(?:\((?P<line>\d{1,9}),(?P<col>\d{1,9})\):"
    r"|:(?P<pline>\d{1,9}):(?P<pcol>\d{1,9}) -) (?P<sev>error|warning) "
    r"(?P<code>[A-Z]+\d+): (?P<msg>.*)$"
)
_SHELL = re.compile(
    r"^(?:(?P<shell>[\w/.-]*(?:sh|bash|zsh|dash)):\s+)?(?:line \d+:\s+|\d+:\s+)?"
    r"(?P<subject>[^:]+):\s+(?P<msg>command not found|not found|Permission denied"
    r"|No such file or directory|Is a directory|Not a directory|cannot execute binary file"
    r"|Operation not permitted|Text file busy)$"
)
_LEVEL = re.compile(
    r"(?:^|[\s\[<|:])(?P<level>FATAL|CRITICAL|CRIT|ERROR|ERR|SEVERE|PANIC|EMERG|ALERT|FAILED|"
    r"Error|Fatal|error|fatal"
    r"|(?<![\[<|:])E(?=: )"   # (apt's and dpkg's "E: Unable to locate package x")
    r"|(?:fail|crit)(?=: [\w.]{1,300}\[\d{1,9}\]))"  # (.NET ILogger: "fail: Category[id]")
    r"(?:[\]>|:]|\s|!(?=\s))"   # (npm 8's "npm ERR! code E404")
)
_LOG_HEADER_TAIL = re.compile(
    r"""^[\s\]>|:-]*(?:
        \d{4}-\d\d-\d\d(?:[T\s][\d:.,]+)?(?:Z|[+-]\d\d:?\d\d)?\s*   # ISO timestamp
        |\d\d:\d\d:\d\d[.,\d]*\s*                                  # clock time
        |\[(?!MY-\d{6}\])[^\]]*\]\s*|\(\w+\)\s*|\d+\s+               # [thread] (pid) 123
                                          # (a MySQL 8 error code [MY-012592], and the
                                          # [subsystem] after it, are the message's own)
        |(?=[\w.$-]*[A-Za-z_$])(?![\w.$-]*(?:Error|Exception|Failure|Fault)\ ?:)  # logger: /
         [\w.$-]+(?:\[\d+\])?(?:\ {1,80}(?=:))?:\s+|-{1,3}\s+               # sshd[12]:
                                          # (a bare number is a status code, not a logger;
                                          # ``openai.RateLimitError:`` is an exception's class;
                                          # Spring Boot pads its logger to 40 columns and
                                          # puts ``---`` before its ``[app] [thread]``)
        |[\w.$-]+\[\d+\]\s*$             # .NET ILogger's ``fail: Category[EventId]``
    )*""",
    re.VERBOSE,
)


#: a line that only points at a location, under the diagnostic it belongs to (rustc's and
#: ruff's default output: ``error[E0425]: cannot find value `y``` then ``--> src/main.rs:2:20``)
_POINTER = re.compile(r"^\s{0,20}-->\s+(?P<loc>[^\s:()]+\.[\w+]+:\d+(?::\d+)?)\s*$")


def _diagnostic_lines(text: str) -> list[str]:
    """Every line of ``text`` as a one-line diagnostic could read it: a pointer line becomes
    ``file:line:col: <the line above it>`` (the two-line form says what the one-line form
    says, so one grammar reads both; the line above is not read again on its own)."""
    out: list[str] = []
    header = ""
    for line in text.splitlines():
        stripped = line.strip()
        pointer = _POINTER.match(line) if stripped.startswith("-->") else None
        if pointer is not None and header:
            out[-1] = f"{pointer.group('loc')}: {header}"
            header = ""
            continue
        out.append(stripped)
        header = stripped if stripped and pointer is None else ""
    return out


#: kotlinc's ``e: file:///p/Main.kt:3:5 Unresolved reference: foo`` (and the older
#: ``e: /p/Main.kt: (3, 5): Unresolved reference: foo``)
KOTLIN_ERROR = re.compile(
    r"^e: (?:file://)?(?P<file>[^\s:]{1,500}\.kts?):(?: \()?(?P<line>\d{1,9})[:,] ?(?P<col>\d{1,9})"
    r"\)?:? (?P<msg>.*)$")
_KOTLIN_HINT = re.compile(r"^\s{0,8}e: (?:file://)?[^\s:]{1,1000}\.kts?:", re.MULTILINE)
#: a failed Gradle build's own markers: there, a kotlinc error is read with its task
_GRADLE_FAILED = re.compile(r"^\* What went wrong:$|^> Task :\S{1,300} FAILED$", re.MULTILINE)


def _kotlin_lines(lines: list[str]) -> list[str]:
    """``lines`` with kotlinc's errors written as the one-line diagnostic they are
    (``/p/Main.kt:3:5: error: Unresolved reference: foo``): one grammar reads both."""
    out = []
    for line in lines:
        found = KOTLIN_ERROR.match(line.strip()) if line.lstrip().startswith("e: ") else None
        out.append(f"{found.group('file')}:{found.group('line')}:{found.group('col')}: error: "
                   f"{found.group('msg')}" if found else line)
    return out


def parse_diagnostic(text: str, repo: str = "") -> Extraction | None:
    """The first error-severity diagnostic line (else the first diagnostic at all); an
    Elixir/Erlang stack frame (``lib/x.ex:12: X.run/1``, a severity-less ``file:line: text``
    too) is none. A kotlinc ``e:`` error is one too, outside a failed Gradle build (whose
    parser reads it with its task)."""
    kotlin = ("e: " in text and _KOTLIN_HINT.search(text) is not None
              and not _GRADLE_FAILED.search(text))
    if not (_HAS_LOCATION.search(text) or kotlin):
        return None
    matches = []
    lines = _diagnostic_lines(text) if "-->" in text else text.splitlines()
    if kotlin:
        lines = _kotlin_lines(lines)
    for index, line in enumerate(lines):
        line = line.strip()
        match = _DIAGNOSTIC.match(line) or _TSC.match(line)
        if (match and match.group("msg") and not PYTEST_FRAME.match(line)
                and not (match.group("sev") is None and is_beam_frame(line))):
            matches.append((match, index))
    if not matches:
        return None
    errors = [m for m in matches if (m[0].group("sev") or "error") in ("error", "fatal error")]
    match, at = (errors or matches)[0]
    groups = match.groupdict()
    code = groups.get("code") or groups.get("code2") or groups.get("code3") or ""
    raw = match.group("file")
    severity = match.group("sev") or "error"
    line = groups.get("line") or groups.get("pline") or "0"
    frame = Frame(normalize_path(raw, repo), "", int(line), not is_library(raw))
    msg = match.group("msg").strip()
    head = _BARE_HEADER.match(msg)
    if head:  # GHC: ``file:l:c: error: [GHC-83865]`` (or ``error:``), the message below
        severity = head.group("sev") or severity
        code = head.group("code") or code
        msg = _message_below(lines[at + 1:at + 1 + _BELOW])
    return Extraction("compiler", code or severity, msg, (frame,),
                      tool=_guess_tool(raw, code, match.group("sev") or "", msg))


#: a diagnostic's header whose message is on the indented lines below it (GHC's
#: ``error: [GHC-83865]`` with the code, or ``error:`` before GHC 9.6, read by
#: :data:`_DIAGNOSTIC` as the message ``error:`` when nothing follows the colon)
_BARE_HEADER = re.compile(
    r"^(?:(?P<sev>error|warning):)?\s{0,4}(?:\[(?P<code>[A-Za-z]{1,10}-\d{1,9})\])?$")


def _message_below(below: list[str]) -> str:
    """The first line of the indented message under a bare diagnostic header (its bullet
    ``•`` left out), "" when none follows."""
    for line in below:
        if not line[:1].isspace():
            break
        stripped = line.strip().lstrip("\u2022*").strip()
        if stripped:
            return stripped
    return ""


#: ``tests/test_x.py:5: AssertionError``: pytest's location line, not a type checker's
_EXCEPTION_NAME = re.compile(r"^[A-Za-z_][\w.]{0,200}(?:Error|Exception|Failure|Failed|Exit)$")


def _guess_tool(path: str, code: str, severity: str = "", msg: str = "") -> str:
    if path.endswith((".ts", ".tsx")) and code.startswith("TS"):
        return "tsc"
    if path.endswith((".c", ".h", ".cc", ".cpp", ".hpp", ".cxx")):
        return "cc"
    if path.endswith((".kt", ".kts")):
        return "kotlinc"
    if path.endswith(".py"):
        if code and not code.islower() and "-" not in code:
            return "ruff"
        if severity:  # mypy always names one: error, note, warning
            return "mypy"
        return "pytest" if _EXCEPTION_NAME.match(msg) else ""
    return ""


def parse_shell(text: str, repo: str = "") -> Extraction | None:
    if not _SHELL_HINT.search(text):
        return None
    for line in text.splitlines():
        match = _SHELL.match(line.strip())
        if match:
            subject = match.group("subject").strip()
            kind = match.group("msg")
            return Extraction("shell", kind, subject, tool=match.group("shell") or "")
    return None


_SHELL_HINT = re.compile(
    r"not found|Permission denied|No such file|Is a directory|Not a directory|cannot execute"
    r"|not permitted|Text file busy"
)


#: an exception's class as a line names it before its message (``openai.RateLimitError``,
#: ``ValueError``, ``Mistral::APIError``): dotted or ``::`` names whose last part is
#: CamelCase, or one name ending like an exception class's
_CLASS_NAME = re.compile(
    r"(?:[A-Za-z_][\w$]{0,100}(?:\.|::)){1,20}[A-Z][\w$]{0,100}"
    r"|[A-Z][\w$]{0,100}(?:Error|Exception|Failure|Fault)")
#: the characters of a line read before its level word for the exception class it follows
_CLASS_CHARS = 400


def exception_class_before(line: str, at: int) -> str:
    """The exception class ``line`` names just before position ``at`` (``openai.RateLimitError:
    Error code: 429``: the word ``Error`` at ``at`` is its message's, not a log level), or
    ``""``. Reads the one token before ``at``: linear, whatever the line."""
    before = line[max(0, at - _CLASS_CHARS):at].rstrip()
    if not before.endswith(":"):
        return ""
    parts = before[:-1].rsplit(None, 1)
    name = parts[-1].lstrip("[(") if parts else ""
    return name if _CLASS_NAME.fullmatch(name) else ""


def strip_log_header(line: str) -> str:
    """The message of a log line without timestamp, level, pid and logger prefixes."""
    level = _LEVEL.search(line)
    rest = line[level.end():] if level else line
    return rest[_LOG_HEADER_TAIL.match(rest).end():].strip()  # type: ignore[union-attr]


#: an error line that only reports that a child process failed (the linker driver's
#: "ld returned 1 exit status", "exited with code 2"): the cause is what the child printed
#: just before it, on a line that often carries no level word of its own
_TRAILER = re.compile(r"\breturned \d{1,3} exit status|\bexited with (?:exit )?(?:code|status) "
                      r"\d{1,3}\b")
#: lines above a trailer searched for the child's own last words
_TRAILER_LOOKBACK = 3


#: npm's report that a package script failed (``npm ERR! code 1``, ``npm error code 1``,
#: its ``errno``, ``path``, ``command failed``, ``command sh -c ...``, ``Lifecycle script``,
#: ``Failed at the``, the debug log's place) and its echo of the script (``> app@1.0.0
#: build``, ``> tsc -p .``): like a runner's line, it says *that* the script failed, where
#: and how; what failed is what the script printed. (``npm ERR! code E404`` is npm's own
#: error: not one of these.)
_NPM_REPORT = re.compile(
    r"^npm (?:ERR!|error)(?:\s*$| (?:code (?:\d{1,3}|ELIFECYCLE)\s*$|errno -?\d{1,4}\s*$"
    r"|path |command (?:failed|sh -c|cmd)|Lifecycle script|Failed at the|This is probably not"
    r"|A complete log of this run|\s*/\S{0,500}-debug(?:-\d{1,4})?\.log\s*$|workspace |location "
    r"|signal ))|^> \S")


#: docker build's report that a ``RUN`` step failed (the classic builder's ``The command
#: '/bin/sh -c make' returned a non-zero code: 2``, BuildKit's ``ERROR: failed to solve:
#: process "/bin/sh -c make" did not complete successfully: exit code: 2``): like npm's, it
#: says *that* the step's command failed; what failed is what the command printed
_BUILD_STEP_REPORT = re.compile(
    r"^The command '[^'\n]{0,1000}' returned a non-zero code: -?\d{1,4}\s*$"
    r"|^(?:ERROR: )?failed to solve: process \"[^\"\n]{0,1000}\" did not complete successfully:"
    r" exit code: -?\d{1,4}\s*$")


def is_tool_report(line: str) -> bool:
    """Whether ``line`` (stripped) is a runner's or a build tool's own line
    (:func:`pipeline.runnerlines.is_runner_line`), npm's report of a failed script or docker
    build's of a failed step."""
    return (is_runner_line(line) or _NPM_REPORT.match(line) is not None
            or _BUILD_STEP_REPORT.match(line) is not None)


def _has_own_output(lines: list[str]) -> bool:
    """True when some line of ``lines`` is neither blank nor the CI runner's or a build
    tool's own (:func:`is_tool_report`): then no such line heads."""
    return any(line.strip() and not is_tool_report(line.strip()) for line in lines)


#: level words that are also words of prose (``terminating with error status``, ``an
#: unexpected error occurred``): the line they are in is a log line's only if it says more
_PROSE_LEVELS = frozenset(("Error", "error", "Fatal", "fatal"))


def _outranked(line: str, lines: list[str], ranks: list[tuple[int, bool, bool]]) -> bool:
    """Whether ``line``, whose level word reads as prose, only reports a failure
    (:func:`is_report`, or never heads: a tally, a verdict) while another line of ``lines``
    says more (:func:`_rank`); ``ranks`` caches the best rank of ``lines``."""
    stripped = line.strip()
    own = _rank(stripped)
    if own[0] >= 2 and own[1]:  # (it names a cause)
        return False
    if not ranks:
        ranks.append(_best_rank(lines))
    return ranks[0] > own


def parse_log(text: str, repo: str = "") -> Extraction | None:
    """The first ERROR/FATAL-level line, header stripped; ``error_type`` is the level. When
    that line only reports a failed child process, the line the child printed before it.
    A runner's line (``make: *** [x] Error 1``, ``Error: Process completed with exit code
    1.``, ``##[error]...``) is never that line when the text holds anything else: the step
    failed because of what it printed above, which the runner's line only reports. Nor is a
    line whose level word reads as prose (``error``, ``Error``) and which only reports a
    failure (:func:`is_report`: ``terminating with error status``, ``Completed with 1 error``,
    ``(Background on this error at: <url>)``) when another line says more: then the next
    level line, else (none left) the text's :func:`headline`."""
    lines = text.splitlines()
    skip_runner: bool | None = None  # (known once a level line is a runner's)
    ranks: list[tuple[int, bool, bool]] = []  # (the text's best rank, once needed)
    for index, line in enumerate(lines):
        level = _LEVEL.search(line)
        if level and level.group("level").upper() not in ("FAILED",):
            name = exception_class_before(line, level.start("level"))
            if name:
                # an exception's own line whose message holds a level word (every OpenAI
                # and Anthropic SDK error: ``openai.RateLimitError: Error code: 429 - {...}``):
                # keyed on its class and message, never on ``Error`` as a log level
                return Extraction("log", name, line[level.start("level"):].strip())
            if _TRAILER.search(line, level.end()):
                cause = next((above.strip() for above in reversed(
                    lines[max(0, index - _TRAILER_LOOKBACK):index]) if above.strip()), "")
                if cause:
                    return Extraction("log", level.group("level").upper(), cause)
            if is_tool_report(line.strip()):
                if skip_runner is None:
                    skip_runner = _has_own_output(lines)
                if skip_runner:
                    continue
            if _gives_way(line, level.group("level"), lines, index, ranks):
                continue
            message = _level_message(line, level, lines[index + 1:])
            if message:
                return Extraction("log", level.group("level").upper(), message)
    return None


def _level_message(line: str, level: re.Match[str], below: list[str]) -> str:
    """The message of a level line (header stripped) with the detail it announces
    (:func:`_with_detail`); for a line that is only a header, the report printed under it
    (:func:`_announced`); "" when neither says anything."""
    message = _with_place(strip_log_header(line), below[:_BELOW])
    if message[:1].isdigit():
        # "HTTP Error 429: ...", "returned error: 401": the number after the level
        # word is a status, and the word is the context that keeps it (rules "code")
        message = line[level.start("level"):].strip()
    if message:
        return _with_detail(message, below[:_BELOW])
    return _announced(below[:_ANNOUNCED])


#: lines under a level line without a message of its own read for the report it announces
_ANNOUNCED = 16
#: a new record of a log: a line led by a time or date, or by .NET ILogger's level
_NEW_RECORD = re.compile(r"^(?:\d|(?:trce|dbug|info|warn|fail|crit): )")
#: a banner's rule (``***************************``, ``======``)
_RULE = re.compile(r"^[-=_*#~\u2500-\u257f]{3,}$")


def _announced(below: list[str]) -> str:
    """The report a level line with no message of its own (only its header: Spring Boot's
    ``ERROR ... LoggingFailureAnalysisReporter   :``, .NET ILogger's ``fail:
    Category[id]``) prints on the lines below it, up to the log's next record: the
    paragraph under its first heading (``Description:``; a later heading, ``Action:``,
    ends it), else its first line; a banner (a title between rules, ``APPLICATION FAILED TO
    START``) says only that it failed, so it is the message only when nothing else is."""
    filled = [(i, line.strip()) for i, line in enumerate(below) if line.strip()]
    banner = ""
    for at, (index, stripped) in enumerate(filled):
        line = below[index]
        if not line[:1].isspace() and _NEW_RECORD.match(line):
            break
        if _RULE.match(stripped):
            continue
        if stripped.endswith(":") and _HEADING.match(stripped):
            section = []
            for follow in below[index + 1:]:
                plain = follow.strip()
                if plain.endswith(":") and _HEADING.match(plain) and not follow[:1].isspace():
                    break
                section.append(follow)
            lead = next((k for k, follow in enumerate(section) if follow.strip()), None)
            if lead is not None:
                return _with_detail(section[lead].strip(), section[lead + 1:])
            continue
        near = [filled[k][1] for k in (at - 1, at + 1) if 0 <= k < len(filled)]
        if any(_RULE.match(n) for n in near):
            banner = banner or stripped
            continue
        return _with_detail(stripped, below[index + 1:])
    return banner


#: lines under a level line read for the detail it introduces or the exception it reports
_BELOW = 8
#: lines after a level line that only reports a failure searched for one naming its cause
_AHEAD = 12
#: a log line's message that only names a place (webpack's ``in ./src/x.tsx 12:0-52``)
_PLACE_ONLY = re.compile(r"^(?:in|at) \S{1,1000}(?: \d[\d:,()-]{0,40})?$")


def _with_place(message: str, below: list[str]) -> str:
    """``message``, and when it only names a place (webpack's ``ERROR in ./src/x.tsx
    12:0-52``: a heading), the first line under it that is not blank, the error itself,
    unless that line is a record of its own (:func:`_starts_record`: another event); a
    record that only names a place again (ts-loader's ``[tsl] ERROR in /p/x.ts(7,3)``)
    is passed over."""
    if not _PLACE_ONLY.match(message):
        return message
    for line in below:
        stripped = line.strip()
        if not stripped:
            continue
        if _starts_record(line):
            if _PLACE_ONLY.match(strip_log_header(stripped)):
                continue
            break
        return f"{message} {stripped}"
    return message


#: a log record's own timestamp at a line's start (``2024-05-02 10:00:00``, ``10:00:00``,
#: ``[2024-05-02T10:00:00Z]``)
_STAMPED = re.compile(r"^\[?(?:\d{4}-\d\d-\d\d[T ]\d\d:\d\d|\d\d:\d\d:\d\d)")
#: a log record's level as its header, after at most two bracketed tags (``INFO ...``,
#: ``[WARN] ...``, ts-loader's ``[tsl] ERROR in ...``); a level word inside the message
#: (``Module not found: Error: ...``) is no header
_LEVEL_HEADER = re.compile(
    r"^(?:\[[^\]\s]{1,20}\]\s{0,4}){0,2}\[?(?:TRACE|DEBUG|INFO|NOTICE|WARN(?:ING)?|ERROR|ERR"
    r"|FATAL|CRITICAL|SEVERE)\b")


def _starts_record(line: str) -> bool:
    """Whether ``line`` is a log record of its own: led by a timestamp or a level header."""
    stripped = line.strip()
    return _STAMPED.match(stripped) is not None or _LEVEL_HEADER.match(stripped) is not None


def _gives_way(line: str, level: str, lines: list[str], index: int,
               ranks: list[tuple[int, bool, bool]]) -> bool:
    """Whether the level line ``line`` (``lines[index]``) only reports a failure that another
    line says more about: :func:`_outranked` for a level word that reads as prose,
    :func:`_cause_follows` for any."""
    return ((level in _PROSE_LEVELS and _outranked(line, lines, ranks))
            or _cause_follows(line, level, lines[index + 1:index + 1 + _AHEAD]))


def _cause_follows(line: str, level: str, ahead: list[str]) -> bool:
    """Whether ``line``, a log line at ``level``, only reports a failure (:func:`is_report`:
    Maven's ``[ERROR] Failed to execute goal ...: Compilation failure``) and a line of the
    same level within ``ahead`` names its cause (``[ERROR] /p/A.java:[5,9] cannot find
    symbol``) or says where it is (a source location): the report never heads over it. A
    line of another level, or one without a level, does not count (a log's own lines are
    events of their own)."""
    if not is_report(strip_log_header(line)):
        return False
    for later in ahead:
        found = _LEVEL.search(later)
        if found is None:
            continue
        if found.group("level").upper() != level.upper():
            break  # (a record of another level: the report's block has ended)
        if is_tool_report(later.strip()):
            continue
        rank = _rank(strip_log_header(later))
        if (rank[0] >= 2 and rank[1]) or (_LOCATED.search(later)
                                            and not _STAMPED.match(later.strip())):
            return True  # (a stamped line is an event of its own, not the report's place)
    return False


#: a source location in a log line (javac's under Maven ``A.java:[5,9]``, ``a.ts:3:4``,
#: ``A.cs(5,9)``): the line says where, and so what, the reported failure is
_LOCATED = re.compile(
    r"\.[A-Za-z]{1,10}(?::\[\d{1,9},\d{1,9}\]|:\d{1,9}:\d{1,9}|\(\d{1,9},\d{1,9}\))")
#: lines of an introduced message block taken in
_DETAIL_LINES = 2


def _with_detail(message: str, below: list[str]) -> str:
    """A level line's message with what it announces: the exception's own line printed
    under it (``[error] GenServer X terminating`` then ``** (KeyError) key :ttl not
    found``), or, when it ends with a colon, the indented block it introduces (``CMake Error
    at CMakeLists.txt:14 (find_package):`` then ``  Could not find a package ...``). Stops at
    the next level line; the line alone when neither follows."""
    block: list[str] = []
    open_block = message.endswith(":")  # (closed by the block's end: a blank line)
    for line in below:
        stripped = line.strip()
        # (the exception's line first: its message may hold a level word of its own, as
        # ``openai.InternalServerError: Error code: 500`` does)
        if _EXCEPTION_SHAPE.match(stripped):
            return f"{message} {stripped}"
        if _LEVEL.search(line) and not line[:1].isspace():
            break
        if not stripped:
            open_block = open_block and not block
        elif open_block and line[:1].isspace() and len(block) < _DETAIL_LINES:
            block.append(stripped)
    if block:
        return " ".join([message, *block])
    return message


#: the lines that never head a text holding anything else (score 0 in :func:`headline`):
#: a stack frame or source excerpt (``at X.m(...)``, ``File "..."``, Ruby's ``from x.rb:5:in``,
#: rspec's ``# ./x_spec.rb:8:in``, vitest's ``❯ x.test.ts:12:4``, GHC's call stack
#: ``errorEmptyList, called at libraries/base/GHC/List.hs:85:11 in base:GHC.List``, ``12|   code``)
_FRAME_LINE = re.compile(
    r"""^(?:at\ [^\s(]{1,500}(?:\ \(|\(|:\d)     # .NET, JVM, Node
        |File\ "                                # Python
        |(?:from|\#|\u276f|-->)\ [^\s:]{1,500}:\d  # Ruby, rspec, vitest, rustc
        |[^\s,]{1,200},\ called\ at\ [^\s:]{1,500}:\d  # Haskell (HasCallStack)
        |\d{0,9}\ {0,4}\|                        # a source excerpt's margin
        |At\ .{1,500}?:\d{1,9}\ char:\d          # PowerShell 5 (``At x.ps1:16 char:3``)
    )""",
    re.VERBOSE,
)
#: a test runner's tally (``4 examples, 1 failure``, ``Tests  1 failed | 3 passed (4)``,
#: ``Tests run: 5, Failures: 1``, ``FAILED (failures=1)``, ``Found 2 errors in 1 file``)
_TALLY = re.compile(
    r"""(?<![:.#/])(?<!port\ )\b\d{1,9}\ (?:failed|failures?|errors?|passed|examples?|tests?
                    |skipped|pending|warnings?|succeeded|broken|flaky)\b
      |\b(?:failures|errors|tests\ run|skipped|passed)\ ?[:=]\ ?\d""",
    re.VERBOSE | re.IGNORECASE,
)
#: what a runner says about the run, not about what failed: its timing, random seed, start
#: time, progress (``Finished in 0.01 seconds``, ``Duration  1.94s``, ``Randomized with seed
#: 1234``, ``Ran 3 tests in 0.002s``, ``..F.``, ``[ 45%]``)
_RUN_NOTE = re.compile(
    r"""^(?:(?:Finished|Done|Completed)\ in|Duration|Randomized\ with\ seed|Running\ with\ seed
        |Seed|Start(?:ed)?\ at|Elapsed|Took|Time(?:\ elapsed)?:|Ran\ \d{1,9}\ tests?)\b
      |^[.FEPS*]{2,}$
      |^\[\s{0,3}\d{1,3}%\]""",
    re.VERBOSE,
)
#: a heading or a rule (``Failures:``, ``Failed examples:``, ``Events:``, ``CallStack (from
#: HasCallStack):``, ``⎯⎯ Failed Tests 1 ⎯⎯``, ``-----``): it names the section below it
_HEADING = re.compile(
    r"^(?:[A-Za-z][\w ]{0,30}(?: \([\w ]{1,30}\))?:|[-=_*#~\u2500-\u257f\u23af]{3,}.*)$")
#: a line that says something went wrong: an error or failure word anywhere in it
_FAILURE_WORD = re.compile(
    r"error|fail|fatal|exception|panic|abort|denied|refused|killed|cannot|can't|could not"
    r"|couldn't|unable|not found|no such|invalid|timed out|crash|unhandled|violation"
    r"|forbidden|unauthori[sz]ed|expired|missing|not allowed|(?:not|n't) exist",
    re.IGNORECASE,
)
#: the failure words that say only *that* something failed (an outcome), never what:
#: a line whose failure words are all of these (``Failed to start x.service``, ``terminating
#: with error status``, ``see previous errors``) reports a failure; the other words of
#: :data:`_FAILURE_WORD` (denied, not found, timed out, ...) name its cause
_OUTCOME_WORD = re.compile(r"error|fail|fatal|exception|panic|abort|crash|unhandled",
                           re.IGNORECASE)
#: a word of a line that marks it a warning: something went wrong, though nothing failed
_WARNING_WORD = re.compile(r"\bwarn(?:ing)?\b", re.IGNORECASE)
#: an exception's own line: ``pkg.mod.Name: message`` or ``Name: message`` whose name ends
#: like an exception class's (``psycopg2.errors.UniqueViolation: ...``, ``NameError:``)
_EXCEPTION_SHAPE = re.compile(
    r"^(?:(?:[A-Za-z_][\w$]{0,100}(?:\.|::)){1,20}[A-Z][\w$]{0,100}"
    r"|[A-Z][\w$]{0,100}(?:Error|Exception|Failure|Fault|Panic))(?::\s|:?$)"
    r"|^\*\* \([A-Z][\w.]{0,200}\) "   # Elixir's ``** (KeyError) key :ttl not found``
)
#: a program's own diagnostic, ``prog: message`` (``curl: (6) Could not resolve host``,
#: ``tar: x: Cannot open``), or a line led by an error code (``ERR_PNPM_OUTDATED_LOCKFILE
#: ...``, ``[ERR_INVALID_ARG] ...``): with a failure word (or curl's numbered code), the
#: line that says what failed; ``hint:``, ``note:`` and their like give advice instead
_PROGRAM_SAYS = re.compile(r"^(?P<prog>[\w.+/-]{1,64}): (?P<code>\(\d{1,4}\) )?")
_ADVICE = frozenset({"hint", "note", "help", "tip", "info", "warning", "warn", "notice",
                     "debug", "see", "suggestion", "usage"})
_ERROR_CODE = re.compile(r"^\[?[A-Z][A-Z0-9]{0,30}(?:_[A-Z0-9]{1,30}){1,8}\]?:?\s")
#: the error code's own evidence that it is one: an ``ERR`` prefix (``ERR_PNPM_...``); else
#: the line needs a failure word (``[ERR_INVALID_ARG_TYPE]``, ``E_TIMEOUT: ... timed out``)
#: or a message after the code (:data:`_PROSE`: gRPC's ``RESOURCE_EXHAUSTED: Quota
#: exceeded ...``, OpenSSL's ``DEPTH_ZERO_SELF_SIGNED_CERT: self signed certificate``)
_ERR_PREFIX = re.compile(r"^\[?ERR")
#: a variable's setting, ``NAME: value`` or ``NAME=value`` (GitHub Actions' ``env:`` block
#: under a step's ``##[group]Run``, a script's echo of its environment): a value, not a
#: message (one token: ``production``, a URL, a number, a path), without a failure word, it
#: is configuration, not an error code, and never heads a text holding anything else
_SETTING = re.compile(r"^[A-Z][A-Z0-9]{0,30}(?:_[A-Z0-9]{1,30}){1,8}(?::\s|=)")
#: a value that is a message, not a setting's or a field's value: two words of letters
#: (``Quota exceeded``, ``self signed``, ``The node was low``); a token, a number, a date,
#: a path or a URL is none
_PROSE = re.compile(r"[A-Za-z][a-z']{1,40}[,;]?\s{1,4}[A-Za-z][a-z']{1,40}(?![\w./:-])")
#: a record's field, ``Label: value`` (Windows Event Viewer's ``Level: Error``, ``kubectl
#: describe``'s ``Status: Failed``): when its value is a bare verdict (:func:`is_verdict`)
#: it says *that* the record is a failure, and the record's other fields say what
_FIELD = re.compile(r"^(?P<label>[A-Z][A-Za-z]{0,30}(?: [A-Za-z]{1,30}){0,3}):\s+(?P<value>\S.*)$")
#: a box's side before a line (Terraform's ``│ Error: ...``, ``┃``, ``║``): the line is what
#: it frames
_BOX_SIDE = re.compile("^[\u2502\u2503\u2551]\\s{0,4}")
#: PowerShell 7's ConciseView prints the error's message in the excerpt's gutter, unnumbered,
#: under the carets (``     | Response status code does not indicate success: 401``): a
#: gutter without a number that holds prose (a letter first, no further ``|``: no table row)
_GUTTER_PROSE = re.compile(r"^\|\s{1,20}(?=[A-Za-z])(?![^|]{0,2000}\|)")


def own_text(line: str) -> str:
    """``line`` (stripped) without the box side or the message gutter that frames it."""
    if line[:1] in "\u2502\u2503\u2551":
        return _BOX_SIDE.sub("", line, count=1)
    if line[:1] == "|":
        return _GUTTER_PROSE.sub("", line, count=1)
    return line


def _is_error_code_line(line: str) -> bool:
    """Whether ``line`` is led by an error code (:data:`_ERROR_CODE`) with the evidence
    that it is one: an ``ERR`` prefix, a failure word, or a message after it (prose:
    :data:`_PROSE`), where a setting has a value."""
    code = _ERROR_CODE.match(line)
    return code is not None and (
        _ERR_PREFIX.match(line) is not None or _FAILURE_WORD.search(line) is not None
        or _PROSE.match(line, code.end()) is not None)


def _is_neutral_field(line: str) -> bool:
    """Whether ``line`` is a record's field whose value is a value, not a message
    (``Exit Code: 1``, ``Retries: 3``, ``Namespace: prod``: no prose, :data:`_PROSE`) and
    which holds no failure word: it describes the record, and a field whose value is prose
    (``Message: The node was low on resource``) says what happened."""
    field = _FIELD.match(line)
    return (field is not None and _PROSE.search(field.group("value")) is None
            and _FAILURE_WORD.search(line) is None)


def _is_exception_field(line: str) -> bool:
    """Whether ``line`` is a record's field whose value is an exception's own line (Event
    Viewer's ``Exception Info: System.IO.IOException: The process cannot ...``)."""
    field = _FIELD.match(line)
    return field is not None and _EXCEPTION_SHAPE.match(field.group("value")) is not None


def _is_status_field(line: str) -> bool:
    """Whether ``line`` is a record's field whose value is a bare verdict (``Level: Error``,
    ``Status: Failed``) under a label that is no failure word itself."""
    field = _FIELD.match(line)
    return (field is not None and is_verdict(field.group("value"))
            and _FAILURE_WORD.search(field.group("label")) is None)


#: the words of a verdict: a banner or summary that says *that* something failed, never
#: what (``==4242==ABORTING``, ``FAILURES!``, ``[INFO] BUILD FAILURE``, ``*** FAILED ***``,
#: ``Tests failed.``): a line made of these alone gives way to any line that says more
_VERDICT_WORDS = frozenset((
    "abort", "aborted", "aborting", "fail", "failed", "failure", "failures", "error",
    "errors", "fatal", "build", "test", "tests", "run", "job", "step", "info", "warning",
    "there", "were", "was", "with", "some", "the", "s"))
_WORD = re.compile(r"[A-Za-z]{1,40}")
#: a line of a diff (``+    println!("x");``, ``-    a*b``: a formatter's or a test's
#: comparison, whose ``Diff in FILE`` line says what it is about) or of a shell's trace
#: (``+ ./deploy.sh``)
_DIFF_LINE = re.compile(r"^[+-](?![+-])")


def is_verdict(line: str) -> bool:
    """Whether ``line`` only says that something failed: every word of it a verdict's."""
    words = _WORD.findall(line[:_VERDICT_CHARS])
    return bool(words) and len(line) <= _VERDICT_CHARS and all(
        w.lower() in _VERDICT_WORDS for w in words)


#: the longest line :func:`is_verdict` reads as a banner
_VERDICT_CHARS = 80


def _headline_score(line: str) -> int:
    """How well ``line`` (stripped, not blank) says what failed: 3 an exception's own line,
    a program's own diagnostic or a line led by an error code, 2 a line with an error or
    failure word, 1 any other line, 0 a line that never heads a
    text holding anything else (a runner's line, a stack frame or source excerpt, a tally,
    a note about the run, a heading, a verdict banner, a diff or shell trace line, a line
    without letters)."""
    line = own_text(line[:_SCORED_CHARS])
    if (not any(c.isalpha() for c in line) or is_tool_report(line) or _FRAME_LINE.match(line)
            or _RUN_NOTE.match(line) or _HEADING.match(line)):
        return 0
    if _EXCEPTION_SHAPE.match(line) or _is_error_code_line(line) or _is_exception_field(line):
        return 3  # (never a tally, whatever its numbers: ``... port 5432 failed: ...``)
    if (_TALLY.search(line) or is_verdict(line) or _is_status_field(line)
            or _SETTING.match(line) or _is_neutral_field(line)):
        return 0  # (a setting with a message or a failure word is an error code's: 3 above)
    if _DIFF_LINE.match(line):
        return 0
    failure = _FAILURE_WORD.search(line) is not None
    program = _PROGRAM_SAYS.match(line)
    if program and program.group("prog").lower() not in _ADVICE and (
            failure or program.group("code")):
        return 3
    return 2 if failure else 1


#: the longest line prefix the headline scores look at
_SCORED_CHARS = 2000


def headline_score(line: str) -> int:
    """:func:`_headline_score` of one stripped line (2 or more: it says what failed)."""
    return _headline_score(line)


#: advice: a line that tells the reader what to do (``Run `bundle install` to install
#: missing gems.``, ``Try 'npm ci'``, ``Please check ...``, ``To fix this, ...``, ``hint:
#: ...``, ``You may need to ...``) rather than what failed, which the line it follows says
#: (``Check failed: ...`` and ``You must be logged in`` say what failed: not advice)
_ADVICE_LINE = re.compile(
    r"^(?:(?:Run|Try|Use|Please|Consider|Make sure|Ensure|See|Refer to|Did you mean"
    r"|Check (?:the|that|your|if|whether)|Perhaps|Maybe|If you"
    r"|To (?:fix|resolve|solve|install|update|see|use)|You (?:may|might|can|could|should))\b"
    r"|(?:hint|note|help|tip|suggestion)s?:)",
    re.IGNORECASE,
)


def is_report(line: str) -> bool:
    """Whether ``line`` only reports that something failed: it has failure words, all of
    them outcome words (:data:`_OUTCOME_WORD`), and it is not an exception's own line, a
    line led by an error code or a field holding an exception's line. A verdict with a
    subject (``Failed to start x.service``,
    ``BEGIN failed--compilation aborted at x.pl line 8``), a wrapper's exit report
    (``terminating with error status, rc 2``, ``Exiting with failure status due to previous
    errors``) and a pointer elsewhere (``see previous errors``, ``Background on this error
    at: <url>``) are reports: the line that says what went wrong is another one."""
    line = line[:_SCORED_CHARS]
    return (_FAILURE_WORD.search(line) is not None
            and _FAILURE_WORD.search(_OUTCOME_WORD.sub(" ", line)) is None
            and not (_EXCEPTION_SHAPE.match(line) or _ERROR_CODE.match(line)
                     or _CODE_TOKEN.search(line) or _is_exception_field(line)))


#: an error code anywhere in a line (``npm error code E401``, ``ORA00942``,
#: ``ERR_SSL_PROTOCOL``): it names the kind of failure, so the line is not a mere report
_CODE_TOKEN = re.compile(r"\b(?:[A-Z]{1,5}\d{2,5}|[A-Z][A-Z0-9]{1,20}(?:_[A-Z0-9]{1,20}){1,6})\b")


def _rank(line: str) -> tuple[int, bool, bool]:
    """How well ``line`` heads a text: its :func:`_headline_score`, an advice line's at most
    1 (a line that names the failure outranks it); of equally scored lines one that says
    more first: a line that names a cause before one that only reports a failure
    (:func:`is_report`), a warning before any other line without failure words (a tool's
    ``x warning: some files vanished`` before a wrapper's ``sending alert``); then the one
    that is not advice."""
    line = own_text(line)
    score = _headline_score(line)
    if score == 0:  # (a record's verdict field before the fields that only describe it)
        return score, _is_status_field(line[:_SCORED_CHARS]), True
    if _ADVICE_LINE.match(line):
        return min(score, 1), False, False
    if score == 1:
        return score, _WARNING_WORD.search(line[:_SCORED_CHARS]) is not None, True
    return score, score >= 2 and not is_report(line), True


def _is_report_rank(rank: tuple[int, bool, bool]) -> bool:
    """Whether ``rank`` (:func:`_rank`) is a report's: failure words, none naming a cause."""
    return rank[0] >= 2 and not rank[1]


def headline(lines: list[str]) -> str:
    """The line of ``lines`` that best says what failed (:func:`_rank`); of equally good
    lines the last, as tools print their conclusion last -- except reports: of those the
    first, as each later one restates it more generally (``x.service: Failed with result
    'exit-code'`` then ``Failed to start x.service``)."""
    settings = _env_block_lines(lines)
    filled = [own_text(line.strip()) for line in lines if line.strip()]
    in_env = [number in settings for number, line in enumerate(lines) if line.strip()]
    if len(filled) == 1:  # one line (most log lines): it heads the text whatever its score
        return filled[0]
    best, best_rank, at = "", (-1, False, False), 0
    for index, stripped in enumerate(filled):
        rank = (0, False, True) if in_env[index] else _rank(stripped)
        if rank > best_rank or (rank == best_rank and not _is_report_rank(rank)):
            best, best_rank, at = stripped, rank, index
    if _is_report_rank(best_rank) and best.endswith(":") and at + 1 < len(filled):
        # a report that introduces its cause (Windows' ``The X service failed to start due
        # to the following error:`` then ``The service did not respond ...``): both
        following = filled[at + 1]
        if _headline_score(following) >= 1:
            return f"{best} {following}"
    return best


#: the heading of an environment block (GitHub Actions' ``env:`` under a step's ``Run``,
#: docker compose's ``environment:``): the indented lines under it are settings, whatever
#: their values say
_ENV_HEADING = re.compile(r"^\s{0,20}(?:env|environment|Environment(?: variables)?):\s*$")


def _env_block_lines(lines: list[str]) -> set[int]:
    """The indexes of the lines of ``lines`` inside an environment block
    (:data:`_ENV_HEADING`): indented deeper than its heading, up to the first line that
    is not."""
    inside: set[int] = set()
    depth = -1  # (the heading's indent while in a block)
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if depth >= 0 and indent > depth:
            inside.add(number)
            continue
        depth = indent if _ENV_HEADING.match(line) else -1
    return inside


def _best_rank(lines: list[str]) -> tuple[int, bool, bool]:
    """The :func:`_rank` of :func:`headline`'s choice among ``lines``."""
    return max((_rank(s) for s in map(str.strip, lines) if s), default=(-1, False, False))


def parse_text(text: str, repo: str = "") -> Extraction:
    """Fallback: the line that best says what failed (:func:`headline`), the last of them
    (tools print the conclusion last); never a runner's line, a frame, a tally or a note
    about the run when the text holds anything else."""
    return Extraction("text", "", headline(text.splitlines()))
