"""Python tracebacks (with chained exceptions) and pytest failure blocks."""

from __future__ import annotations

import re

from pipeline.fingerprint.model import Extraction, Frame
from pipeline.fingerprint.paths import is_library, normalize_path
from pipeline.runnerlines import is_runner_line

_TRACEBACK = "Traceback (most recent call last):"
_CHAIN_MARKERS = ("The above exception", "During handling")
#: the header of an exception group's traceback (Python 3.11+), printed in a margin:
#: ``  + Exception Group Traceback (most recent call last):``
_GROUP_TRACEBACK = "Exception Group Traceback (most recent call last):"
#: a line of an exception group's margin: ``  | text`` (``+`` on the group's first line);
#: the text is what Python prints outside a group (frames indented by two)
_MARGIN = re.compile(r"^ {0,200}[|+](?: (?P<text>.*))?$")
#: the rules between a group's sub-exceptions: ``+-+---------------- 1 ----------------``
#: before the first, ``+---------------- 2 ----------------`` before each next one (``...``
#: past the group's width) and ``+------------------------------------`` after the last
_GROUP_RULE = re.compile(
    r"^ {0,200}\+(?P<first>-\+)?-{4,40}(?: (?:\d{1,9}|\.\.\.) -{4,40})?$")
_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>.+))?$')
_EXC_LINE = re.compile(
    r"^(?:[+|]\s*)?(?P<type>[A-Za-z_][\w.]*(?:Error|Exception|Warning|Exit|Interrupt|Failure"
    r"|Fault|Iteration|Timeout|Refused|NotFound|Denied)\w*|[A-Z]\w*Error)(?::\s?(?P<msg>.*))?$"
)
#: the exception line that ends a traceback's frames, whatever the class is called
#: (``psycopg2.errors.UniqueViolation: ...``, ``Http404``, ``app.models.User.DoesNotExist``):
#: a dotted name, then its message after ``: `` or nothing
_EXC_ANY = re.compile(
    r"^(?P<type>[A-Za-z_]\w{0,150}(?:\.[A-Za-z_]\w{0,150}){0,30})(?:: ?(?P<msg>.*))?$")
#: names that head a log or runner line, never an exception class on its own (``Warning``
#: is Python's own class: not one of them)
_LEVEL_WORDS = frozenset((
    "FATAL", "CRITICAL", "ERROR", "ERR", "WARN", "WARNING", "INFO", "DEBUG", "PANIC", "FAILED",
    "FAIL", "error", "fatal", "warning", "panic", "info", "debug", "Fatal", "Info", "Debug",
    "Panic", "Failed"))
#: the context a database driver prints after an exception's message (libpq through
#: psycopg: ``LINE 1: SELECT ...`` with its ``^`` caret under it, ``DETAIL:  Key (email)=...``,
#: ``HINT:``, ``CONTEXT:``, ``QUERY:``): the statement and the row's values, not the error
_SQL_CONTEXT = re.compile(r"^(?:LINE \d{1,9}|DETAIL|HINT|CONTEXT|QUERY|STATEMENT|WHERE):|^\^+$")
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
#: a message line that announces the lines under it: one ending with a colon (``row count
#: differs:``), or a count of errors for a named thing (pydantic's ``1 validation error for
#: Settings``, whose field names follow unindented)
_OPENS_BLOCK = re.compile(r":$|\b\d{1,9} (?:[a-z]{1,20} ){0,2}errors? (?:for|in) \S{1,200}$")


def _left_open(message: list[str]) -> bool:
    """Whether the message read so far goes on: its first line announces a block below it,
    or a bracket or a double quote it opened is not closed yet (a value printed over several
    lines)."""
    if _OPENS_BLOCK.search(message[0].rstrip()):
        return True
    text = "\n".join(message)
    if text.count('"') % 2:
        return True
    return sum(map(text.count, "([{")) > sum(map(text.count, ")]}"))


def _continues_message(line: str, message: list[str]) -> bool:
    """True when ``line``, after an exception line and the ``message`` lines read so far, is
    more of its message. Python prints a message's own lines as they are, so a line
    continues it when it is what continuation lines are: indented (a pydantic field's
    details, a driver's hint), or inside what the message left open (a block it announced:
    an assertion's text after its colon, pydantic's field names after ``1 validation error
    for X``; an open bracket or quote). Any other unindented line is the next program's
    output: the CI runner's (a fold, an exit report, its verdict, its artifact and cleanup
    steps), a log line, a shell's message. A blank line, a chain marker, a frame, a
    database driver's context and a runner's or log line never continue it."""
    stripped = line.strip()
    if not stripped or line.startswith(_CHAIN_MARKERS) or _FRAME.match(line):
        return False
    if _SQL_CONTEXT.match(stripped):
        return False  # the driver's statement, caret and row values: not the message
    if line[0] in " \t":
        return True  # indented: a detail of the message (no runner line is indented)
    if _FOREIGN.match(stripped) or is_runner_line(stripped):
        return False
    return _left_open(message)


def _exception_line(line: str) -> re.Match[str] | None:
    """``line`` as an exception line (``module.Class: message`` or a bare ``Class``), or
    None when it is a log or runner line (``ERROR: Job failed``, ``make: *** ...``)."""
    exc = _EXC_ANY.match(line)
    if exc is None or exc.group("type") in _LEVEL_WORDS or is_runner_line(line):
        return None
    return exc


def _parse_block(lines: list[str], repo: str, bare: bool = False
                 ) -> tuple[list[Frame], str, str]:
    """Frames, exception type and message of one traceback block (lines after the header);
    ``bare``: an exception printed without traceback (its first line is the exception)."""
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
        # after the frames, the first line Python did not indent is the exception, whatever
        # its class is called; before any frame (or when that line is a log or runner
        # line: the traceback was cut) only a name that reads as an exception class counts
        exc = _exception_line(line.strip()) if frames or bare else None
        exc = exc or _EXC_LINE.match(line.strip())
        if exc:
            message = [exc.group("msg") or ""]
            # a message may continue on the next lines: indented ones, or what its first
            # line announced or left open (see _continues_message)
            for follow in lines[index + 1:index + 1 + _MESSAGE_LINES]:
                if not _continues_message(follow, message):
                    break
                message.append(follow)
            return frames, exc.group("type"), "\n".join(message).strip()
    return frames, "", ""


def _parse_chain(text: str, repo: str) -> list[tuple[list[Frame], str, str]]:
    """Each traceback block of ``text`` that names its exception, in the order printed
    (causes first); an exception printed without a traceback (a group's sub-exception that
    was never raised) is its own block."""
    if _TRACEBACK not in text:
        block = _parse_block(text.splitlines(), repo, bare=True)
        return [block] if block[1] else []
    blocks = text.split(_TRACEBACK)[1:]
    parsed = [_parse_block(block.splitlines()[1:], repo) for block in blocks]
    return [p for p in parsed if p[1]]


def _parse_group(lines: list[str], repo: str
                 ) -> tuple[tuple[list[Frame], str, str, tuple[tuple[str, str], ...]] | None, int]:
    """An exception group's traceback (``lines`` from its header on): its root cause, the
    first sub-exception (a nested group's first one, the innermost raised of a chained
    one), whose frames follow the frames of the groups around it; ``chain`` holds the
    sub-exception's own causes, then each group (outermost first), then the other
    sub-exceptions. A TaskGroup's ``ExceptionGroup: unhandled errors in a TaskGroup (1
    sub-exception)`` says nothing of what failed: its sub-exception is the error.

    The margins are stripped and the group's parts cut at its rules: the part before the
    first rule is the group's own traceback, each part after one a sub-exception's (a
    nested group's parts are cut at its own rules the same way); the margin ends at the
    first line outside it, whose index is returned too."""
    parts: list[list[str]] = [[]]
    groups: list[int] = []  # the parts that are groups: a ``+-+`` rule follows them
    end = len(lines)
    for index, line in enumerate(lines):
        rule = _GROUP_RULE.match(line)
        if rule:
            if rule.group("first"):
                groups.append(len(parts) - 1)
            parts.append([])
            continue
        margin = _MARGIN.match(line)
        if margin is None:
            end = index
            break
        parts[-1].append((margin.group("text") or "").replace(_GROUP_TRACEBACK, _TRACEBACK))
    frames: list[Frame] = []
    outer: list[tuple[str, str]] = []
    found: tuple[list[Frame], str, str, tuple[tuple[str, str], ...]] | None = None
    others: list[tuple[str, str]] = []
    for index, part in enumerate(parts):
        parsed = _parse_chain("\n".join(part), repo)
        if not parsed:
            continue  # ``and 3 more exceptions``, an empty part between two rules
        own_frames, error_type, message = parsed[-1]
        if found is not None:
            others.append((error_type, message))
        elif index in groups:  # a group around the root cause: its frames lead to it
            frames.extend(own_frames)
            outer.append((error_type, message))
        else:
            causes = tuple((t, m) for _, t, m in parsed[:-1])
            found = ([*frames, *own_frames], error_type, message, (*causes, *outer))
    if found is None:
        if not outer:
            return None, end
        # (no sub-exception could be read: the outermost group is the error)
        return (frames, outer[0][0], outer[0][1], tuple(outer[1:])), end
    return (found[0], found[1], found[2], (*found[3], *others)), end


def _headless_group(text: str, repo: str) -> Extraction | None:
    """An exception group printed without its traceback's header: ``traceback.print_exception
    (group, limit=0)``, a log handler's, or a log cut above it (``  | ExceptionGroup: config
    errors (2 sub-exceptions)`` in its margin, then its ``+-+---- 1 ----`` rule): read from
    the margin's first line above its first rule, as ``_parse_group`` reads a group."""
    if "+-+" not in text:
        return None
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines)
                  if line.lstrip().startswith("+-+") and _GROUP_RULE.match(line)), None)
    if first is None:
        return None
    start = first
    while start > 0 and _MARGIN.match(lines[start - 1]) and not _GROUP_RULE.match(
            lines[start - 1]):
        start -= 1
    if start == first:
        return None
    group, _ = _parse_group(lines[start:], repo)
    if group is None:
        return None
    frames, error_type, message, chain = group
    return Extraction("python", error_type, message, tuple(frames), chain, tool="python")


def parse_python(text: str, repo: str = "") -> Extraction | None:
    """The last (outermost-raised) exception, its frames, and its causes as ``chain``; of
    an exception group (Python 3.11+), its first sub-exception (see ``_parse_group``), also
    when the group's traceback header is not in ``text`` (see ``_headless_group``)."""
    if _GROUP_TRACEBACK not in text:
        headless = _headless_group(text, repo)
        if headless is not None:
            return headless
    if _TRACEBACK not in text:
        return None
    if _GROUP_TRACEBACK in text:
        lines = text.splitlines()
        start = next(i for i, line in enumerate(lines) if _GROUP_TRACEBACK in line)
        group, end = _parse_group(lines[start:], repo)
        if group is not None:
            frames, error_type, message, chain = group
            # an exception raised while handling the group is the one that ended the program
            rest = "\n".join(lines[start + end:])
            later = _parse_chain(rest, repo) if _TRACEBACK in rest else []
            if later:
                chain = (*chain, (error_type, message),
                         *((t, m) for _, t, m in later[:-1]))
                frames, error_type, message = later[-1]
            return Extraction("python", error_type, message, tuple(frames), chain,
                              tool="python")
    parsed = _parse_chain(text, repo)
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
    group = _pytest_group(text, repo) if not error_type else None
    if group is not None:
        error_type, message = group.error_type, group.message
    if not error_type and failed and failed[0].group("rest"):
        head, _, rest = failed[0].group("rest").partition(": ")
        error_type, message = head.strip(), rest
    frames = group.frames if group is not None else tuple(
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
    return Extraction("pytest", error_type or "TestFailure", message.strip(), frames,
                      group.chain if group is not None else (), tool="pytest")


def _pytest_group(text: str, repo: str) -> Extraction | None:
    """The exception group a failing test raised (pytest prints its traceback as Python
    does, without ``E`` lines): its first sub-exception, with the groups around it and the
    other sub-exceptions as its chain; None when the text holds no group."""
    if "+-+" not in text:
        return None
    group = parse_python(text, repo)
    return group if group is not None and group.chain else None
