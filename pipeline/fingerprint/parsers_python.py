"""Python tracebacks (with chained exceptions) and pytest failure blocks."""

from __future__ import annotations

import re

from pipeline.fingerprint.model import Extraction, Frame
from pipeline.fingerprint.paths import is_library, normalize_path
from pipeline.runnerlines import is_runner_line

_TRACEBACK = "Traceback (most recent call last):"
_CHAIN_MARKERS = ("The above exception", "During handling")
_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>.+))?$')
_EXC_LINE = re.compile(
    r"^(?:[+|]\s*)?(?P<type>[A-Za-z_][\w.]*(?:Error|Exception|Warning|Exit|Interrupt|Failure"
    r"|Fault|Iteration|Timeout|Refused|NotFound|Denied)\w*|[A-Z]\w*Error)(?::\s?(?P<msg>.*))?$"
)
_PYTEST_E = re.compile(r"^E\s{1,}(?P<text>.*)$")
_PYTEST_LOC = re.compile(r"^(?P<file>[^\s:]+\.py):(?P<line>\d+): (?P<type>[\w.]+)$")
#: a frame of pytest's long traceback above the failing line (``test_m.py:2: in <module>``,
#: ``app/db.py:40: in connect``): collection errors print only these
PYTEST_FRAME = re.compile(r"^(?P<file>[^\s:]+\.py):(?P<line>\d+): in (?P<func>[\w<>.]+)$")
#: pytest's "ERROR tests/x.py - Error: msg" (a collection or fixture error in the summary)
_PYTEST_ERROR = re.compile(r"^ERROR (?P<test>[^\s(]\S*?\.py\S*)(?: - (?P<rest>.*))?$")
#: what pytest's section header says before the test id of an error (not a failure)
_ERROR_HEADER = ("ERROR collecting ", "ERROR at setup of ", "ERROR at teardown of ")
#: pytest's "FAILED tests/x.py::test_y - Error: msg"; unittest's "FAILED (errors=1)" is a
#: tally, not a test id (the traceback above it says what failed)
_PYTEST_FAILED = re.compile(r"^FAILED (?P<test>[^\s(]\S*?)(?: - (?P<rest>.*))?$")
_PYTEST_HEADER = re.compile(r"^_{3,} (?P<test>\S.*?) _{3,}$")
#: lines printed after a traceback by whatever ran the program, never by the exception: a
#: log or runner line led by a level word, alone or after the program's name (``ERROR: Job
#: failed``, ``error: Recipe `test` failed``, ``collect2: error: ...``, ``npm ERR! code 1``,
#: ``[ERROR] ...``, ``FAILED (errors=1)``, after the line's timestamp or not), or a shell's
#: own error (``/bin/sh: 1: ...``)
_FOREIGN = re.compile(
    r"^(?:\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d[.,\d]{0,10}Z?\s{1,4})?"   # (a log line's time)
    r"(?:[\w.+/-]{1,64}(?:\[\d{1,9}\])?: )?\[?\s?(?:FATAL|CRITICAL|ERROR|ERR!?|WARN(?:ING)?"
    r"|INFO|DEBUG|PANIC|FAILED|FAIL|Error|error|fatal|warning|panic)(?:[:\]!]|\s|$)"
    r"|^[\w.+/-]{1,64} (?:FATAL|CRITICAL|ERROR|ERR!?|PANIC)(?:[:\]!]|\s|$)"
    r"|^(?:/[\w.-]{1,64}){0,4}/?(?:ba|da|z|k)?sh: (?:line )?\d{1,9}: "
)
#: following lines a message may take at most (more is another program's output)
_MESSAGE_LINES = 2


def _continues_message(line: str) -> bool:
    """True when ``line``, after an exception line, is more of its message. Python prints
    a message's own lines as they are (an assertion's text, a pydantic ValidationError's
    field names and indented details), so any line continues it except a blank line, a
    chain marker or frame, and a line another program printed: the CI runner's (a fold,
    an exit report, ``##[error]``, ``make: *** ...``) or a log line led by a level word."""
    stripped = line.strip()
    if not stripped or line.startswith(_CHAIN_MARKERS) or _FRAME.match(line):
        return False
    if line[0] in " \t":
        return True  # indented: a detail of the message (no runner line is indented)
    return not (_FOREIGN.match(stripped) or is_runner_line(stripped))


def _parse_block(lines: list[str], repo: str) -> tuple[list[Frame], str, str]:
    """Frames, exception type and message of one traceback block (lines after the header)."""
    frames: list[Frame] = []
    for index, line in enumerate(lines):
        frame = _FRAME.match(line)
        if frame:
            raw = frame.group("file")
            frames.append(Frame(
                file=normalize_path(raw, repo),
                function=(frame.group("func") or "").strip(),
                line=int(frame.group("line")),
                in_project=not is_library(raw),
            ))
            continue
        if line.startswith((" ", "\t")) or not line.strip():
            continue
        exc = _EXC_LINE.match(line.strip())
        if exc:
            message = [exc.group("msg") or ""]
            # a message may continue on the next lines, up to a blank line, a chain marker
            # or what the program's runner printed after it
            for follow in lines[index + 1:index + 1 + _MESSAGE_LINES]:
                if not _continues_message(follow):
                    break
                message.append(follow)
            return frames, exc.group("type"), "\n".join(message).strip()
    return frames, "", ""


def parse_python(text: str, repo: str = "") -> Extraction | None:
    """The last (outermost-raised) exception, its frames, and its causes as ``chain``."""
    if _TRACEBACK not in text:
        return None
    blocks = text.split(_TRACEBACK)[1:]
    parsed = [_parse_block(block.splitlines()[1:], repo) for block in blocks]
    parsed = [p for p in parsed if p[1]]
    if not parsed:
        return None
    frames, error_type, message = parsed[-1]
    chain = tuple((t, m) for _, t, m in parsed[:-1])
    return Extraction("python", error_type, message, tuple(frames), chain, tool="python")


def parse_pytest(text: str, repo: str = "") -> Extraction | None:
    """A pytest failure: ``E`` lines, the ``file.py:N: Error`` location, the test id."""
    if "FAILED" not in text and "E   " not in text:
        return None  # cheap pre-check: most texts are not pytest output
    lines = text.splitlines()
    e_lines = [m.group("text") for m in map(_PYTEST_E.match, lines) if m]
    # the traceback's frames and its last location, in the order pytest prints them
    located = [m for m in (_PYTEST_LOC.match(line) or PYTEST_FRAME.match(line)
                           for line in lines) if m]
    locations = [m for m in located if "type" in m.re.groupindex]
    failed = [m for m in map(_PYTEST_FAILED.match, lines) if m]
    if not failed and e_lines:  # a collection error's summary line names the file
        failed = [m for m in map(_PYTEST_ERROR.match, lines) if m]
    if not (e_lines and located) and not failed:
        return None
    error_type, message = "", ""
    for candidate in e_lines:
        exc = _EXC_LINE.match(candidate.strip())
        if exc:
            error_type, message = exc.group("type"), exc.group("msg") or ""
            break
    if not error_type and locations:
        error_type = locations[-1].group("type")
        message = e_lines[0] if e_lines else ""
    if not error_type and failed and failed[0].group("rest"):
        head, _, rest = failed[0].group("rest").partition(": ")
        error_type, message = head.strip(), rest
    frames = tuple(
        Frame(normalize_path(m.group("file"), repo),
              m.group("func") if "func" in m.re.groupindex else "", int(m.group("line")),
              not is_library(m.group("file")))
        for m in located
    )
    test = failed[0].group("test") if failed else ""
    if not test:
        header = next((m for m in map(_PYTEST_HEADER.match, lines) if m), None)
        test = header.group("test") if header else ""
        for words in _ERROR_HEADER:
            test = test.removeprefix(words)
    if test:
        path, _, name = test.partition("::")
        frames = (*frames, Frame(path, name.rpartition("::")[2], None, True))
    return Extraction("pytest", error_type or "TestFailure", message.strip(), frames, tool="pytest")
