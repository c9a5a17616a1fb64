"""Assemble log lines into records: one record per log line, except multi-line reports
(Python/Java/Node tracebacks, Go panics, pytest failure sections, and any tool's report by
the shapes all tools share: see :data:`CONT_SHAPE`) which become one record. A report relayed
under a prefix on every line (sbt's ``[error] ``, ``docker compose``'s ``api-1  | ``, ``docker
build``'s ``#5 0.215 ``: see :func:`split_prefix`) is judged after that prefix, and each
source such a prefix names is assembled on its own (:class:`RecordAssembler`), so two
services' interleaved tracebacks stay whole. A line that only tallies the errors before it
(``1 error generated.``: :func:`is_summary`) or a build driver's trailer (``make: ***``:
:data:`TRAILER`) joins the error record it follows; a tally alone is no error.

Used by ``heal watch`` (live) and ``heal backfill`` (history). Feed lines with their byte
offsets; a record is returned once the next line proves it complete, or on :meth:`flush`
(end of file, or the follower's idle timeout). :attr:`RecordAssembler.pending_offset` is the
offset of the first line still held (no record returned has a line after it), which is what
a follower saves so that a restart re-reads an incomplete record instead of losing it, and
re-reads no record it returned.
"""

from __future__ import annotations

import re
from bisect import bisect_left, insort
from collections.abc import Iterator
from dataclasses import dataclass

from pipeline.ansi import strip_ansi
from pipeline.config import DEFAULT_MAX_TEXT_BYTES

#: a Python traceback header; its exception line is the first unindented line after it
PY_TRACEBACK = re.compile(r"^Traceback \(most recent call last\):")
#: lines joining chained Python exceptions
PY_CHAIN = re.compile(
    r"^(During handling of the above exception|The above exception was the direct cause)"
)
#: Java: an unindented exception header (``java.lang.IllegalStateException: boom``)
JAVA_EXCEPTION = re.compile(
    r"^(Exception in thread \"[^\"]*\" )?([a-zA-Z_$][\w$]*\.)+[\w$]*(Exception|Error|Throwable)\b"
)
#: Java/Kotlin continuation lines that are not indented (R's ``Caused by error:`` too)
JAVA_CONTINUATION = re.compile(r"^(Caused by\b|Suppressed: |\.\.\. \d+ more)")
#: Node's crash header: the file and line that threw (``/app/index.js:3``)
NODE_HEADER = re.compile(r"^(\S+\.(m?js|cjs|ts|mts)|node:internal/\S+):\d+$")
NODE_FOOTER = re.compile(r"^Node\.js v\d+")
#: ``Error: message`` style headers whose stack follows indented (Node, Deno, browsers)
JS_ERROR = re.compile(r"^(Uncaught )?([A-Z]\w*)?(Error|Exception)(\s*\[[^\]]*\])?: ")
GO_PANIC = re.compile(r"^(panic: |fatal error: )")
GO_CONTINUATION = re.compile(
    r"^(goroutine \d+ \[|\[signal |exit status \d+$|created by |[\w.\-/*()]+\(.*\)$)"
)
PYTEST_BANNER = re.compile(r"^={3,} ?(FAILURES|ERRORS) ?={3,}$")
PYTEST_SECTION = re.compile(r"^_{3,} .+ _{3,}$")
PYTEST_SUMMARY = re.compile(r"^={3,} ?short test summary info ?={3,}$")
PYTEST_RULE = re.compile(r"^={3,}")
PYTEST_START = re.compile(r"^={3,} ?test session starts ?={3,}$")

# -- report shapes of any tool (one mechanism, no rule per tool) ---------------------------
#: lines that continue a report and cannot start one: stack frames (``#0 0x55 in f``, ``#2
#: {main}``, a bare ``path:line`` or Ruby's ``path:line:in `m'``), a compiler's gutter,
#: caret and arrow lines (``3 | code``, ``|``, ``^~~~``, `` --> src/x.rs:3:5``), notes
#: attached to a diagnostic (``note:``, ``help:``, ``file:3:5: note:``), the sides of a boxed
#: report (``│ ...``, ``╵``), a closing bracket (``}``, ``"}``) and a trace's heading
#: (``Stack trace:``, ``Backtrace:``, ``[stacktrace]``)
CONT_SHAPE = re.compile(
    r"""^(?:
      \#\d{1,4}\s                                   # numbered frame
    | [^\s:]{1,400}:\d{1,9}(?::in\s.*)?$             # bare location, Ruby frame
    | \s*\d{0,9}\s*\|                                # gutter of a quoted source line
    | \s*-->\s | \s*[\^~]{1,}[\s^~]*$                # arrow, carets
    | (?:[^\s:]{1,400}:\d{1,9}(?::\d{1,9})?:\s)?(?:note|help):\s   # attached note
    | [│╵├└┃║]                                        # side of a boxed report
    | ["']?[}\])]                                     # closing bracket
    | (?:stack\s?trace|backtrace|call\s?stack|\[stacktrace\])\b[^:]{0,40}:?$
    )""",
    re.VERBOSE | re.IGNORECASE,
)
#: a detail line of an error message, labelled in capitals (libpq through psycopg2 and
#: Django: ``LINE 1: SELECT ...``, ``DETAIL:  Key (id)=(7) already exists.``, ``HINT:``);
#: a level word (``ERROR:``, ``WARNING:``) is a log line, not a label
DETAIL_LABEL = re.compile(r"^(?!(?:ERROR|FATAL|FAILURE|FAILED|FAIL|WARNING|WARN|INFO|DEBUG"
                          r"|TRACE|NOTICE|CRITICAL|PANIC|SEVERE|ALERT|EMERG)\b)"
                          r"[A-Z]{2,12}(?: \d{1,9})?:\s")
#: an exception named by its qualified class (``psycopg2.errors.UndefinedColumn: ...``)
QUALIFIED_EXC = re.compile(r"^[A-Za-z_]\w{0,100}(?:\.[A-Za-z_]\w{0,100}){1,20}: ")
#: a line of an ordinary log: a time or date near its start, or a level word among its
#: first words. Such a line starts a record of its own unless it is indented.
LOG_HEADER = re.compile(
    r"""^.{0,40}?(?:\d{2}:\d{2}:\d{2}|\d{4}[-/.]\d{2}[-/.]\d{2}|\d{2}/\d{2}/\d{2})
    | ^(?:\S{1,40}\s){0,4}\[?(?:INFO|WARN|WARNING|ERROR|DEBUG|TRACE|FATAL|NOTICE|CRITICAL
        |SEVERE)\b""",
    re.VERBOSE,
)
#: a line that starts an error report of its own: a traceback, a panic, ``npm ERR!``, a
#: compiler's ``error:``/``error[E0382]:``, an exception by its class (``KeyError: 'x'``,
#: ``Error: connect ...``) or a test runner's verdict (jest's ``FAIL src/x.test.js``,
#: ``●``). A heading's paragraph never runs across one (see
#: :meth:`StreamAssembler._block_continues`); a build driver's trailer (``collect2: error:``,
#: ``make: ***``) ends the compiler's report it follows, so it is none
REPORT_START = re.compile(
    r"""^(?:
      Traceback\ \(most\ recent\ call\ last\)
    | (?:panic|fatal\ error):\s
    | npm\ ERR!
    | error(?:\[[A-Z]{0,4}\d{1,6}\])?:\s
    | (?:Uncaught\ )?[\w.$]{0,200}(?:Error|Exception)(?:\s{0,4}\[[^\]]{0,100}\])?:\s
    | FAIL\s+\S | ●\s
    )""",
    re.VERBOSE,
)
#: a tool's prefix on every line of its report (``npm ERR! ``): its lines continue a record
#: whose first line has the same prefix
TOOL_PREFIX = re.compile(r"^(\S{1,40} ERR!)(?:\s|$)")
#: a prefix a tool writes before every line it relays (see :func:`split_prefix`): a tag in
#: brackets (sbt's ``[error] ``, ``kubectl logs --prefix``'s ``[pod/x/app] ``), a service
#: name and a bar (``docker compose``'s ``api-1  | ``), a numbered step and its elapsed time
#: (``docker build``'s ``#12 0.345 ``; the time is optional: ``#12 ERROR: ...``)
LINE_PREFIX = re.compile(
    r"""^(?:
      (?P<tag>\[[A-Za-z][\w./@-]{0,60}\])\x20?
    | (?P<service>[A-Za-z][\w.-]{0,60})\s{1,30}\|(?:\x20|$)
    | (?P<step>\#\d{1,4})\x20(?:\d{1,6}\.\d{1,3}\x20)?
    )""",
    re.VERBOSE,
)
#: a line of ``docker build``'s plain progress (buildkit) by its step's shape: an elapsed time
#: (``#6 1.2 ...``), a vertex name (``#6 [3/4] RUN npm ci``, ``#1 [internal] load ...``) or a
#: step's status (``#6 DONE 0.1s``, ``#6 CACHED``, ``#6 ERROR: ...``); no stack frame
#: (gdb's ``#1  0x00 in f``, PHP's ``#1 [internal function]: f()``) has one of these shapes
BUILDKIT_LINE = re.compile(
    r"^\#\d{1,4}\x20(?:\d{1,6}\.\d{1,3}\x20|\[[^\]\n]{1,200}\]\x20"
    r"|(?:DONE|CACHED|CANCELED|ERROR)\b)")
#: a relay tag that is a level (sbt's ``[error] ``, ``[info] ``, ``[warn] ``): one source's
#: lines at different levels, assembled together (a tag that names a source, ``kubectl logs
#: --prefix``'s ``[pod/x/app] ``, gets an assembler of its own: see :class:`RecordAssembler`)
LEVEL_TAG = re.compile(
    r"^\[(?:error|err|warn|warning|info|debug|trace|fatal|success|notice|critical|verbose)\]",
    re.IGNORECASE)
#: a count of errors, written as a number or a word (sbt: ``two errors found``)
_COUNT = r"(?:\d{1,9}|no|one|two|three|four|five|six|seven|eight|nine|ten)"
#: a line that only tallies or sums up the errors reported before it, by its grammar (no
#: tool's exact string): a count of them as the line's subject (``1 error generated.``,
#: ``2 errors``, ``Found 3 errors in 2 files``, ``two errors found``, ``1 error and 2
#: warnings generated.``), a quantifier or a reference to them (``Some errors have detailed
#: explanations: ...``, ``For more information about this error, try ...``) or the run's
#: timing (``Total time: 3 s, completed ...``). See :data:`BACK_REFERENCE` too.
TALLY = re.compile(
    rf"""^(?:
      (?:found\s{{1,4}})?{_COUNT}\s{{1,4}}(?:errors?|warnings?|problems?)\b
        (?:\s{{1,4}}and\s{{1,4}}{_COUNT}\s{{1,4}}(?:errors?|warnings?))?
        (?:\s{{1,4}}(?:generated|found|emitted|reported|detected|occurred|in)\b
          | \s{{0,4}}[(,;]
          | [\s.!]{{0,4}}$)
    | (?:some|all|these|both|the\s{{1,4}}above|the\s{{1,4}}previous)\s{{1,4}}errors?\s{{1,4}}
        (?:have|were|are|can)\b
    | (?:for\s{{1,4}}more\s{{1,4}}information|more\s{{1,4}}information|see)\s{{1,4}}
        (?:about|on|for)\s{{1,4}}(?:this|these|an|the\s{{1,4}}above|the\s{{1,4}}previous)
        \s{{1,4}}errors?\b
    | total\s{{1,4}}time\b
    )""",
    re.VERBOSE | re.IGNORECASE,
)
#: a line that refers back to the errors before it, anywhere in it (cargo's ``error: could not
#: compile `foo` (bin "foo") due to 2 previous errors``, rustc's ``error: aborting due to
#: previous error``): a summary of them, not an error of its own
BACK_REFERENCE = re.compile(
    r"\b(?:due\s{1,4}to|after|because\s{1,4}of)\s{1,4}(?:\d{1,9}\s{1,4})?"
    r"(?:previous|earlier|above|preceding)\s{1,4}errors?\b",
    re.IGNORECASE,
)
#: a build driver's line after a failed command (``make: *** [Makefile:12: all] Error 2``,
#: ``make[1]: *** ...``, ``ninja: build stopped: subcommand failed.``): it joins the error
#: record it follows; alone (a recipe that failed with no compiler output) it is an error
#: record of its own
TRAILER = re.compile(r"^[\w.+-]{1,40}(?:\[\d{1,6}\])?:\x20(?:\*\*\*\x20|build\x20stopped\b)")


def is_summary(text: str) -> bool:
    """A line that only sums up the errors before it (:data:`TALLY`, :data:`BACK_REFERENCE`).
    A count that ends in ``:`` introduces the errors listed after it (HashiCorp multierror's
    ``2 errors occurred:`` + ``\t* ...`` lines, ``Found 2 errors:``): a heading that starts a
    record of its own (:data:`ERROR_MARKERS` reads it as an error), no tally."""
    return _may_sum_up(text) and not text.rstrip().endswith(":") and bool(
        TALLY.match(text) or (("rror" in text or "RROR" in text)
                              and BACK_REFERENCE.search(text)))


def _may_sum_up(text: str) -> bool:
    """Whether a line has a word :func:`is_summary` or :data:`TRAILER` needs (a fast
    pre-filter: most log lines have none)."""
    return ("rror" in text or "RROR" in text or "arning" in text or "ARNING" in text
            or "roblem" in text or "ROBLEM" in text or "otal" in text or "OTAL" in text
            or "***" in text or "stopped" in text)


#: a line of carets (or tildes) alone: it points into the source line quoted above it
CARET_LINE = re.compile(r"^\s*[\^~][\s^~]{0,2000}$")
#: a diagnostic that names its place first (``Foo.java:12: error: ...``, sbt's
#: ``Cart.scala:42:18: type mismatch;``): the line after it may quote the source
LOCATED = re.compile(r"^[^\s:]{1,400}:\d{1,9}(?::\d{1,9})?:\s")
#: a bulleted line (``* What went wrong:``, ``* Try:``); one ending in ``:`` heads a section
BULLET = re.compile(r"^[*•]\x20\S")
#: rule characters runners draw lines with (``----``, ``====``, ``────``, ``════``)
_RULE_CHARS = "=-─━═~*"
#: a rule alone on its line (``=====...``, ``------``)
RULE_LINE = re.compile(r"^[=\-─━═~*]{4,}\s*$")
#: the start of a titled rule (``---- tests::x stdout ----``, ``── Failure (x.R:3:1) ──``);
#: its end is checked without a regex (see :func:`section_title`)
_TITLE_HEAD = re.compile(r"^[=\-─━═~*]{2,} ?\S")


def split_prefix(text: str) -> tuple[str, str]:
    """The relay prefix of a line (:data:`LINE_PREFIX`) as a key (``tag:[error]``,
    ``service:api-1``, ``step:#12``) and the line's text after it; ``("", text)`` without one.
    A level in brackets (``[ERROR]``, Maven's) is a log line's level, not a relay prefix."""
    match = LINE_PREFIX.match(text)
    if match is None:
        return "", text
    family = match.lastgroup or ""
    if family == "tag" and LOG_HEADER.match(match[0]):
        return "", text
    return f"{family}:{match[family]}", text[match.end():]


def section_title(text: str) -> bool:
    """A title drawn between rules (a runner's per-failure section header): at most 300
    characters, opening and closing with at least two rule characters."""
    if len(text) > 300 or not _TITLE_HEAD.match(text):
        return False
    end = text.rstrip()
    return len(end) >= 6 and end[-1] in _RULE_CHARS and end[-2] in _RULE_CHARS and bool(
        end.strip(_RULE_CHARS).strip())

#: what makes a record an error worth publishing (checked on the whole record)
ERROR_MARKERS = re.compile(
    # the line-start shapes come first: at one position the first alternative that matches
    # wins, and ``error:`` read as the bare word ``error`` would count as prose
    r"""
      ^(panic|fatal\ error):                                               # Go, gcc
    | ^npm\ ERR!|^error(\[E\d+\])?:                                        # npm, rustc, gcc
    | ^Traceback\ \(most\ recent\ call\ last\)                             # Python
    | ^\s*[\w.$]*(Exception|Error)(\s*\[[^\]]*\])?:\s                      # Exception: message
    | ^(\#\#)?\[(error|fatal)\]                                             # sbt, GitHub Actions
    | :\d{1,9}(:\d{1,9})?:\ (fatal\ )?error:                                # file:3: error: (javac)
    | ^[\w.$]*(Exception|Error)$                                           # bare exception name
    | \b(ERROR|FATAL|CRITICAL|SEVERE|PANIC|EMERG|ALERT|FAILED|FAILURE|FAIL)\b  # levels, runners
    | \b(level|severity|lvl)"?\s*[=:]\s*"?(error|fatal|critical|panic)\b  # logfmt / JSON logs
    | \bpanicked\ at\b                                                     # Rust
    | Segmentation\ fault|core\ dumped|Killed$|OOMKilled|Out\ of\ memory
    | ^(?:found\ )?(?:[1-9]\d{0,8}|one|two|three|four|five|six|seven|eight|nine|ten)
      \ errors?\b[^\n:]{0,100}:[\x20\t]*$                                  # a list's heading
    """,
    re.VERBOSE | re.MULTILINE | re.IGNORECASE,
)
#: case-sensitive words that only count in upper case (``error`` in prose is not an error)
_LOWER_OK = re.compile(r"\b(error|fatal|critical|failed|failure|fail|panic|alert|severe)\b")

#: every ERROR_MARKERS alternative contains one of these (a fast pre-filter)
_CHEAP_WORDS = ("err", "fatal", "critical", "severe", "panic", "emerg", "alert", "fail",
                "traceback", "exception", "segmentation", "core dumped", "killed",
                "out of memory")

#: record kinds that are error reports by construction
STRUCTURED_KINDS = frozenset({"python", "java", "node", "go", "pytest"})
#: modes of a report that is an error by construction (a summary after it joins it)
_REPORT_MODES = ("pytrace", "java", "node", "js", "go")
#: modes in which a blank line may sit inside a record (held until the next line decides)
_BLANK_MODES = frozenset({"pytrace", "pytrace-done", "node", "go", "pytest", "pytest-summary"})

MAX_RECORD_LINES = 5000
MAX_RECORD_BYTES = 1 << 20
#: a log line longer than this keeps its first and last half (the middle is dropped as it is
#: read, never held): 4x an event's text limit, so the 64 KiB an event keeps of a record
#: (head and tail) never reaches into the dropped middle
MAX_LINE_BYTES = 4 * DEFAULT_MAX_TEXT_BYTES
#: where a line's middle was dropped (no line break: the line stays one line)
LINE_CUT_MARKER = "…[heal: {n} bytes truncated]…"


@dataclass(frozen=True)
class Record:
    """One assembled record. ``offset``/``end`` are byte offsets in the source, ``line`` is the
    1-based number of its first line, ``kind`` says which rule assembled it."""

    text: str
    offset: int
    end: int
    line: int
    kind: str = "line"
    #: bytes dropped from the middle of its overlong lines as they were read
    cut: int = 0
    #: the text as judged: its lines after the relay prefix they share (``api-1  | ``,
    #: ``[app] ``, ``#12 0.345 ``: see :func:`split_prefix`); "" when no line had one
    judged: str = ""

    @property
    def is_error(self) -> bool:
        """Tracebacks, panics and failing tests are errors by construction; other records when
        their text carries an error marker, as read or after its relay prefix (the markers
        a line starts with, ``npm ERR!``, ``error[E0425]:``, are behind the prefix)."""
        if self.kind in ("pytest-noise", "summary"):
            return False
        return self.kind in STRUCTURED_KINDS or is_error_text(self.text) or bool(
            self.judged and is_error_text(self.judged))


def is_error_text(text: str) -> bool:
    """True when the text reports an error (level markers, tracebacks, panics ...)."""
    lower = text.lower()
    if not any(word in lower for word in _CHEAP_WORDS):
        return False  # most log lines: skip the regex scan
    for match in ERROR_MARKERS.finditer(text):
        word = match.group(0)
        # an upper-case level or any structural marker counts; lower-case prose words do not
        if not _LOWER_OK.fullmatch(word.strip()):
            return True
    return False


def clean(line: str) -> str:
    line = line.rstrip("\r\n")
    return strip_ansi(line)


class StreamAssembler:
    """Stateful line-to-record assembler of one source's lines (see the module docstring;
    :class:`RecordAssembler` gives each relayed source one of these)."""

    def __init__(self) -> None:
        #: the record's lines as judged: after the relay prefix they share (see
        #: :func:`split_prefix`); ``_raw`` holds them as read, which is the record's text
        self._lines: list[str] = []
        self._raw: list[str] = []
        self._prefix = ""  # the relay prefix of the record's first line ("" for none)
        self._blanks: list[tuple[str, int]] = []  # held blank lines (text, end offset)
        #: a line held until the next one says whether it is the source line a diagnostic
        #: quotes (a caret line follows it): raw, judged, prefix, offset, end, number, cut
        self._held: tuple[str, str, str, int, int, int, int] | None = None
        self._offset = 0
        self._end = 0
        self._line = 0
        self._mode = ""  # "", pytrace, pytrace-done, java, node, js, go, pytest, pytest-summary
        self._size = 0
        self._pytest_sections = 0
        self._cut = 0
        #: "" | "opener" (the last line opened a block: ``Failures:``, a bare rule) |
        #: "paragraph" (lines after an opener, continued until a blank line)
        self._block = ""
        #: whether a line of the record starts a report (a heading takes only one)
        self._reported = False
        #: whether the record has a bulleted section (``* What went wrong:``)
        self._bulleted = False
        self._box = ""
        self._erring = False
        self._checked = 0

    @property
    def pending_offset(self) -> int | None:
        """Offset of the first line not yet returned in a record (None when nothing is held)."""
        return self._offset if self._lines else None

    @property
    def pending(self) -> tuple[int, int] | None:
        """Offset and number of the first line not yet returned (None when nothing is held)."""
        return (self._offset, self._line) if self._lines else None

    @property
    def idle(self) -> bool:
        """Nothing held: no record, no line waiting for the next (see :meth:`flush`)."""
        return not self._lines and self._held is None

    @property
    def held_bytes(self) -> int:
        """Characters of the record being assembled."""
        return self._size if self._lines else 0

    def feed(self, line: str, offset: int, end: int, number: int, cut: int = 0
             ) -> list[Record]:
        """Add one line (without or with its newline) spanning bytes ``offset``..``end``;
        ``cut``: the bytes its reader dropped from its middle (see :class:`LineSplitter`)."""
        raw = clean(line)
        return self.feed_read(raw, *split_prefix(raw), offset, end, number, cut)

    def feed_read(self, raw: str, prefix: str, body: str, offset: int, end: int, number: int,
                  cut: int = 0) -> list[Record]:
        """:meth:`feed` of a line already cleaned and split (:func:`clean`,
        :func:`split_prefix`)."""
        out: list[Record] = []
        if self._held is not None and self._settle_held(raw, prefix, body, end, cut, out):
            return out
        if not body.strip():
            if self._lines and (self._mode in _BLANK_MODES or self._holds_blanks()):
                self._blanks.append((raw, end))
            elif self._lines:
                out.extend(self.flush())
            return out
        judged = self._judged(prefix, body, raw) if self._lines else body
        if self._lines and judged is not None and _may_sum_up(judged) and self._sums_up(judged):
            # a tally or a build driver's trailer joins the error report it sums up
            self._append_blanks()
            self._add(raw, judged, end)
            self._cut += cut
            if self._size > MAX_RECORD_BYTES or len(self._lines) > MAX_RECORD_LINES:
                out.extend(self.flush())  # (a flood of tallies is bounded like any record)
            return out
        same_step = prefix.startswith("step:") and prefix == self._prefix
        if self._lines and judged is not None and (same_step or self._continues(judged)):
            self._append_blanks()
            self._add(raw, judged, end)
            self._cut += cut
            if self._size > MAX_RECORD_BYTES or len(self._lines) > MAX_RECORD_LINES:
                out.extend(self.flush())  # bounded memory: cut a runaway record here
            return out
        if self._lines and judged is not None and self._quotes_source(judged):
            self._held = (raw, judged, prefix, offset, end, number, cut)
            return out
        out.extend(self.flush())
        self._start(raw, prefix, body, offset, end, number)
        self._cut = cut
        return out

    def flush(self) -> list[Record]:
        """Close the record being assembled (end of input or idle timeout)."""
        out = self._close()
        if self._held is not None:  # no caret line came: the held line is a record of its own
            raw, _, prefix, offset, end, number, cut = self._held
            self._held = None
            self._start(raw, prefix, split_prefix(raw)[1] if prefix else raw, offset, end,
                        number)
            self._cut = cut
            out.extend(self._close())
        return out

    def _close(self) -> list[Record]:
        self._blanks = []
        if not self._lines:
            return []
        kind = self._kind()
        text = "\n".join(self._raw)
        judged = "\n".join(self._lines) if self._prefix else ""
        record = Record(text, self._offset, self._end, self._line, kind, self._cut,
                        judged if judged != text else "")
        self._cut = 0
        self._lines = []
        self._raw = []
        self._mode = ""
        self._block = ""
        self._size = 0
        return [record]

    # -- relay prefixes and quoted source lines ------------------------------------------

    def _judged(self, prefix: str, body: str, raw: str) -> str | None:
        """The text a line is judged by: after the relay prefix the record's first line has
        too; the whole line when either has none. Two services' lines never share a record
        (None), nor do lines of different tags or steps across a blank line; the lines of one
        numbered step (``#5 ...``: one ``docker build`` step's output) are one record, and a
        line of another step (:data:`BUILDKIT_LINE`) starts one even with no blank line
        between them (piped or filtered logs): a later step's error is its own."""
        if prefix == self._prefix:
            return body
        if prefix and self._prefix and (
                prefix.startswith("service:") or self._prefix.startswith("service:")
                or self._blanks):
            return None
        if (prefix.startswith("step:") and self._prefix.startswith("step:")
                and BUILDKIT_LINE.match(raw)):
            return None
        return raw

    def _quotes_source(self, judged: str) -> bool:
        """Whether a line that does not continue the record may be the source line its
        located diagnostic quotes (``Foo.java:3: error: ...`` + ``import a.B;``): held until
        the next line, which joins both when it is a caret line."""
        return (not self._blanks and bool(LOCATED.match(self._lines[-1]))
                and not CARET_LINE.match(judged) and not LOG_HEADER.match(judged)
                and not REPORT_START.match(judged) and not LOCATED.match(judged))

    def _settle_held(self, raw: str, prefix: str, body: str, end: int, cut: int,
                     out: list[Record]) -> bool:
        """Join the held line and this one when this one is a caret line pointing into it
        (True); else make the held line a record of its own and go on with this line."""
        held_raw, held_judged, held_prefix, offset, held_end, number, held_cut = \
            self._held  # type: ignore[misc]
        self._held = None
        judged = body if prefix == held_prefix else raw
        if prefix == held_prefix and CARET_LINE.match(judged):
            self._add(held_raw, held_judged, held_end)
            self._add(raw, judged, end)
            self._cut += held_cut + cut
            self._block = ""
            return True
        out.extend(self._close())
        self._start(held_raw, held_prefix, split_prefix(held_raw)[1] if held_prefix
                    else held_raw, offset, held_end, number)
        self._cut = held_cut
        return False

    # -- rules -----------------------------------------------------------------------------

    def _start(self, raw: str, prefix: str, text: str, offset: int, end: int, number: int
               ) -> None:
        self._offset, self._line = offset, number
        self._lines = [text]
        self._raw = [raw]
        self._prefix = prefix
        self._size = len(raw)
        self._end = end
        self._mode = self._mode_for(text) or ("tally" if is_summary(text) else "")
        #: whether a line of the record reports an error, as far as ``_checked`` lines
        self._erring, self._checked = False, 0
        self._block = "opener" if self._opens(text) else ""
        self._reported = bool(self._mode or REPORT_START.match(text))
        self._bulleted = bool(BULLET.match(text)) and self._opens(text)
        #: the rule that opened a box not closed yet (docker's ``------`` around its summary)
        self._box = text.rstrip() if RULE_LINE.match(text) else ""

    def _mode_for(self, text: str) -> str:
        if PY_TRACEBACK.match(text):
            return "pytrace"
        if PYTEST_START.match(text):
            self._pytest_sections = 0
        if PYTEST_SECTION.match(text):
            self._pytest_sections += 1
            return "pytest"
        if PYTEST_SUMMARY.match(text):
            return "pytest-summary"
        if NODE_HEADER.match(text):
            return "node"
        if GO_PANIC.match(text):
            return "go"
        if JAVA_EXCEPTION.match(text):
            return "java"
        if JS_ERROR.match(text):
            return "js"
        if section_title(text) and not PYTEST_START.match(text) and not PYTEST_BANNER.match(text):
            return "section"
        return ""

    def _sums_up(self, text: str) -> bool:
        """A line that sums up the record before it (:func:`is_summary`, a build driver's
        :data:`TRAILER`) while that record reports an error: it joins the record."""
        if not (is_summary(text) or TRAILER.match(text)):
            return False
        mode = self._mode
        if mode.startswith(_REPORT_MODES) or mode == "pytest":
            return True
        if not self._erring and self._checked < len(self._raw):
            # (only the lines added since the last look: a run of tallies stays linear)
            start, self._checked = self._checked, len(self._raw)
            self._erring = is_error_text("\n".join(self._raw[start:])) or (
                bool(self._prefix) and is_error_text("\n".join(self._lines[start:])))
        return self._erring

    def _continues(self, text: str) -> bool:  # noqa: C901 - one rule per report format
        mode = self._mode
        indented = text[0] in " \t"
        if mode == "tally":
            # a summary with no error before it: the summaries after it are part of it
            return not self._blanks and is_summary(text)
        if mode == "pytrace":
            if not indented and not PY_TRACEBACK.match(text):
                self._mode = "pytrace-done"  # the exception line closes the frames
            return True
        if mode == "pytrace-done":
            if PY_CHAIN.match(text):
                return True
            if PY_TRACEBACK.match(text):
                # only a chain marker ("The above exception was the direct cause ...") joins
                # the next traceback to this one; a traceback after a finished one (two
                # failures, blank-line separated) is a report of its own
                if not PY_CHAIN.match(self._lines[-1]):
                    return False
                self._mode = "pytrace"
                return True
            if DETAIL_LABEL.match(text) and not self._blanks:
                return True  # psycopg2's ``LINE 1:`` / ``DETAIL:`` after its exception
            return indented and not self._blanks
        if mode in ("pytest", "pytest-summary"):
            return self._pytest_continues(text)
        if mode == "node":
            return self._node_continues(text, indented)
        if mode == "go":
            return indented or bool(GO_CONTINUATION.match(text))
        if mode == "section":
            # a runner's section runs across single blank lines to the next rule or title,
            # an ordinary log line, or a line after two blank lines (where cargo ends one)
            return indented or not (
                len(self._blanks) > 1 or section_title(text) or RULE_LINE.match(text)
                or LOG_HEADER.match(text))
        if self._bullet_continues(text) or self._closes_box(text):
            return True
        if indented and LOG_HEADER.match(self._lines[0]) and REPORT_START.match(text.lstrip()):
            return False  # a report printed under a log line (jest's `` FAIL``) is its own
        if self._block_continues(text, indented):
            return True
        if self._blanks:
            return False
        if indented or JAVA_CONTINUATION.match(text) or PY_CHAIN.match(text):
            return True
        # an error log line followed by its exception (logging's exc_info, logback, winston)
        if self._attaches_exception(text):
            self._mode = self._mode_for(text) or mode
            return True
        return False

    def _opens(self, text: str) -> bool:
        """A line that opens a block for the lines after it: a heading ending in ``:``
        (``Failures:``, ``There was 1 failure:``, ``* What went wrong:``) or a bare rule."""
        end = text.rstrip()
        return (end.endswith(":") and len(end) > 1) or bool(RULE_LINE.match(end))

    def _holds_blanks(self) -> bool:
        """Whether a blank line may sit inside the record being assembled (the next line
        decides): after an opener, inside a report already longer than one line, or after a
        headline that reports an error (its bulleted sections may follow)."""
        return (self._block == "opener" or len(self._lines) > 1 or self._mode == "section"
                or self._headline())

    def _headline(self) -> bool:
        """A one-line record reporting an error that is no log line (``FAILURE: Build failed
        with an exception.``): the bulleted sections after it are its report."""
        first = self._lines[0]
        return len(self._lines) == 1 and is_error_text(first) and not LOG_HEADER.match(first)

    def _open_block(self, text: str) -> None:
        self._block = "opener"
        if RULE_LINE.match(text):
            self._box = text.rstrip()

    def _closes_box(self, text: str) -> bool:
        """The rule that opened a box (``------`` around docker's summary) closes it."""
        if not self._box or self._blanks or text.rstrip() != self._box:
            return False
        self._box = ""
        self._block = ""
        return True

    def _bullet_continues(self, text: str) -> bool:
        """A report in bulleted sections (Gradle's ``* What went wrong:`` ... ``* Try:``):
        after one blank line, a bulleted heading continues an error headline, and any bulleted
        line continues a record that has a bulleted heading already."""
        if len(self._blanks) != 1 or not BULLET.match(text):
            return False
        heading = self._opens(text)
        if not (self._bulleted or (heading and self._headline())):
            return False
        self._bulleted = self._bulleted or heading
        self._block = "opener" if heading else ""
        return True

    def _block_continues(self, text: str, indented: bool) -> bool:
        """The shapes of any tool's report (see :data:`CONT_SHAPE`), its opened blocks and
        their paragraphs; a line of an ordinary log (:data:`LOG_HEADER`) is never joined by
        them. Updates the block state for the line when it joins."""
        block, self._block = self._block, ""
        joins = False
        if indented or (CONT_SHAPE.match(text) and not NODE_HEADER.match(text)):
            joins = not self._blanks or len(self._lines) > 1 or block == "opener"
        elif (prefix := TOOL_PREFIX.match(text)) and self._lines[0].startswith(prefix[1]):
            joins = not self._blanks  # one tool's report, line by line
        elif LOG_HEADER.match(text) or section_title(text):
            joins = False
        elif REPORT_START.match(text):
            # a heading (not a bare rule) takes the one report it introduces
            # (``Running migrations:`` + a traceback, ``Build step failed:`` + its
            # exception), in that report's own mode; any other report starts a record
            joins = block == "opener" and not self._reported and not RULE_LINE.match(
                self._lines[-1])
            if joins:
                self._mode = self._mode_for(text)
                self._reported = True
                block = "paragraph"
        elif block == "opener":
            joins = True
            block = "paragraph"
        elif block == "paragraph":
            joins = not self._blanks
        elif DETAIL_LABEL.match(text):
            last = self._lines[-1]
            joins = not self._blanks and bool(is_error_text(last) or QUALIFIED_EXC.match(last))
        if not joins:
            self._block = block
        elif self._opens(text):
            self._open_block(text)
        elif block == "paragraph":
            self._block = "paragraph"
        return joins

    def _attaches_exception(self, text: str) -> bool:
        if len(self._lines) != 1 or self._mode:
            return False
        header = bool(
            PY_TRACEBACK.match(text) or JAVA_EXCEPTION.match(text) or JS_ERROR.match(text)
        )
        return header and (is_error_text(self._lines[0]) or self._lines[0].rstrip().endswith(":"))

    def _node_continues(self, text: str, indented: bool) -> bool:
        if NODE_FOOTER.match(text):
            self._mode = "node-done"  # "Node.js v20.11.0" closes Node's crash report
            return True
        if indented or not self._blanks:
            return True
        # after a blank line only the thrown error itself belongs to the report
        return bool(JS_ERROR.match(text) or text.startswith("["))

    def _pytest_continues(self, text: str) -> bool:
        if PYTEST_SECTION.match(text):
            return False  # the next failing test starts its own record
        if PYTEST_SUMMARY.match(text):
            return False
        if PYTEST_RULE.match(text):
            if self._mode == "pytest-summary":
                # the final "=== 1 failed, 2 passed in 0.1s ===" line closes the summary
                self._mode = "pytest-summary-done"
                return True
            return False
        return True

    def _kind(self) -> str:
        mode = self._mode
        if mode.startswith("pytrace"):
            return "python"
        if mode.startswith("pytest-summary"):
            # the per-test sections already reported these failures (pytest --tb=no has none)
            seen, self._pytest_sections = self._pytest_sections, 0
            return "pytest-noise" if seen else "pytest"
        if mode.startswith("node") or mode == "js":
            return "node"
        if mode == "tally":
            return "summary"  # only a tally of errors before it: no error of its own
        return {"pytest": "pytest", "java": "java", "go": "go"}.get(mode, "line")

    def _append_blanks(self) -> None:
        for text, end in self._blanks:
            self._add(text, "", end)
        self._blanks = []

    def _add(self, raw: str, text: str, end: int) -> None:
        self._lines.append(text)
        self._raw.append(raw)
        self._size += len(raw) + 1
        self._end = end


#: relayed sources (services, named tags, build steps) assembled at once; a flood of distinct
#: prefixes (hostile input) closes the oldest record rather than holding more
MAX_SOURCES = 32
#: what the assemblers hold at most, open records and finished ones waiting for an earlier
#: one to finish (see :class:`RecordAssembler`); beyond it the oldest open record is closed
MAX_HELD_BYTES = 4 * MAX_RECORD_BYTES
MAX_HELD_RECORDS = 256


class RecordAssembler:
    """Log lines to records, one :class:`StreamAssembler` per relayed source: a line under a
    prefix that names its source (``docker compose``'s ``api-1  | ``, ``kubectl logs
    --prefix``'s ``[pod/x/app] ``, a ``docker build`` step's ``#5 0.215 ``: see
    :func:`split_prefix`) goes to that source's assembler, so two services' interleaved
    tracebacks stay whole, each in a record of its own. A level tag (sbt's ``[error] ``,
    :data:`LEVEL_TAG`), a line without a prefix and a step line not in buildkit's shape (a
    stack frame's ``#1 ``) go to the assembler of the line before them (the plain one when
    that has nothing open).

    Records come out in the order of their first line. A finished record is held while a
    record that started before its end is still open (another service's traceback around
    it), so :attr:`pending_offset`, where a follower resumes, is never inside a record
    already returned: a restart re-reads only records not returned yet, none twice, none cut.
    At most :data:`MAX_SOURCES` sources are open and :data:`MAX_HELD_BYTES` held; beyond
    either, the record that started first is closed where it is.
    """

    def __init__(self) -> None:
        self._streams: dict[str, StreamAssembler] = {"": StreamAssembler()}
        self._last = ""  # the source of the line before
        self._done: list[Record] = []  # finished records held for an earlier open one
        self._done_bytes = 0
        self._frontier: tuple[int, int] | None = None  # (offset, line) of pending
        #: what was held when last summed, and the characters fed since (see :meth:`_bound`)
        self._held_at = 0
        self._fed = 0

    @property
    def pending_offset(self) -> int | None:
        """Offset of the first line not yet returned in a record (None when nothing is held):
        no record returned has a line after it."""
        return None if self._frontier is None else self._frontier[0]

    @property
    def pending_line(self) -> int | None:
        """Lines before :attr:`pending_offset` (None when nothing is held)."""
        return None if self._frontier is None else self._frontier[1] - 1

    def feed(self, line: str, offset: int, end: int, number: int, cut: int = 0
             ) -> list[Record]:
        """Add one line (see :meth:`StreamAssembler.feed`); returns the records it completed
        that no earlier open record holds back."""
        raw = clean(line)
        prefix, body = split_prefix(raw)
        key = self._source(raw, prefix)
        self._fed += len(raw) + 1
        if not key and not self._done and len(self._streams) == 1:
            # one source (most logs): its records come out in order, nothing to hold back
            plain = self._streams[""]
            records = plain.feed_read(raw, prefix, body, offset, end, number, cut)
            self._last, self._frontier = "", plain.pending
            return records
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = StreamAssembler()
        self._keep(stream.feed_read(raw, prefix, body, offset, end, number, cut))
        if key and not prefix and stream.pending == (offset, number) and (
                self._streams[""].pending is None and self._streams[""].idle):
            # a line with no prefix that starts a record starts it in the plain assembler,
            # wherever the line before went: a restart at this line (with no line before it)
            # assembles the lines after it the same way
            self._streams[""] = stream
            del self._streams[key]
            key = ""
        if key and stream.pending_offset is None:
            del self._streams[key]  # (nothing open: the source takes no memory)
        self._last = key
        self._bound()
        return self._release()

    def flush(self) -> list[Record]:
        """Close every record being assembled (end of input or idle timeout)."""
        for stream in self._streams.values():
            self._keep(stream.flush())
        self._streams = {"": self._streams[""]}
        return self._release()

    def _source(self, raw: str, prefix: str) -> str:
        if prefix.startswith("service:") or (
                prefix.startswith("tag:") and not LEVEL_TAG.match(prefix[4:])) or (
                prefix.startswith("step:") and (prefix in self._streams
                                                or BUILDKIT_LINE.match(raw))):
            return prefix
        return self._last if self._last in self._streams else ""

    def _keep(self, records: list[Record]) -> None:
        """Hold finished records, kept in the order of their first line (they come nearly in
        that order: a record is inserted, never the list sorted again per line)."""
        done = self._done
        for record in records:
            if done and record.offset < done[-1].offset:
                insort(done, record, key=_first_offset)
            else:
                done.append(record)
            self._done_bytes += len(record.text)

    def _bound(self) -> None:
        """Close the oldest open records while too many sources are open or too much held."""
        while True:
            if (len(self._streams) <= MAX_SOURCES and len(self._done) <= MAX_HELD_RECORDS
                    and self._held_at + self._fed <= MAX_HELD_BYTES):
                # (what is held grew by at most the lines fed since it was last summed: no
                # sum over the sources, nor a list of them, per line)
                return
            held = self._done_bytes + sum(s.held_bytes for s in self._streams.values())
            self._held_at, self._fed = held, 0
            if (len(self._streams) <= MAX_SOURCES and len(self._done) <= MAX_HELD_RECORDS
                    and held <= MAX_HELD_BYTES):
                return
            opened = [(s.pending_offset, k) for k, s in self._streams.items()
                      if s.pending_offset is not None]
            held = self._done_bytes + sum(s.held_bytes for s in self._streams.values())
            if not opened or (len(opened) <= MAX_SOURCES and held <= MAX_HELD_BYTES
                              and len(self._done) <= MAX_HELD_RECORDS):
                return
            key = min(opened)[1]
            self._keep(self._streams[key].flush())
            if key:
                del self._streams[key]

    def _release(self) -> list[Record]:
        """The finished records wholly before every record still open, or overlapping one
        that overlaps it, by their first line; :attr:`pending_offset` becomes the first line
        of what is held. ``_done`` is in the order of first lines, so only the records
        before the frontier are looked at (each once: they are returned)."""
        opened = [p for s in self._streams.values() if (p := s.pending) is not None]
        done = self._done
        if not opened:
            self._done, self._done_bytes, self._frontier = [], 0, None
            return done
        frontier = min(opened)
        # intervals merged backwards: a finished record that ends after the frontier holds
        # it back to its own first line (resuming there re-reads it, never a part of it)
        cut = bisect_left(done, frontier[0], key=_first_offset)
        for index in range(cut - 1, -1, -1):
            record = done[index]
            if record.offset < frontier[0] < record.end:
                frontier = (record.offset, record.line)
                cut = bisect_left(done, frontier[0], 0, index, key=_first_offset)
        self._frontier = frontier
        if not cut:
            return []
        out = done[:cut]
        self._done = done[cut:]
        self._done_bytes -= sum(len(r.text) for r in out)
        return out


def _first_offset(record: Record) -> int:
    return record.offset


class LineSplitter:
    """Complete lines of a byte stream read in chunks, holding at most ``max_bytes`` of the
    line not yet complete: a longer line keeps its first and last ``max_bytes // 2`` bytes
    and drops its middle as it is read (one attacker-written 100 MB line was held, and
    published, whole). The cut depends only on the line, never on where chunks end, so
    ``heal watch`` and ``heal backfill`` make the same text (and event id) of it.

    :meth:`feed` yields ``(text, start, end, cut)``: the line's text (with its newline; a cut
    line is ``head`` + :data:`LINE_CUT_MARKER` + ``tail``), its byte offsets in the stream
    and the bytes dropped from it (0 for a line kept whole).
    """

    def __init__(self, pos: int = 0, max_bytes: int = MAX_LINE_BYTES) -> None:
        #: offset of the first byte not yet returned in a line
        self.pos = pos
        self.max_bytes = max_bytes
        self._half = max_bytes // 2
        self._head = b""  # the partial line (its first half once it is too long)
        self._tail = b""  # its last half, once it is too long
        self._dropped = 0

    @property
    def held(self) -> int:
        """Length of the partial line (the bytes dropped from it included)."""
        return len(self._head) + self._dropped + len(self._tail)

    def reset(self, pos: int) -> None:
        """Forget the partial line; the next byte fed is at ``pos``."""
        self.pos, self._head, self._tail, self._dropped = pos, b"", b"", 0

    def feed(self, data: bytes) -> Iterator[tuple[str, int, int, int]]:
        start = 0
        if self.held:
            nl = data.find(b"\n")
            if nl < 0:
                self._hold(data)
                return
            self._hold(data[:nl])  # (the line break is never held: a cut is the same
            yield self._take(1)   # whether the line ends in this chunk or a later one)
            start = nl + 1
        last = data.rfind(b"\n") + 1
        if last > start:
            limit = self.max_bytes
            pos = self.pos - start
            while start < last:
                nl = data.find(b"\n", start)
                if nl - start > limit:  # (one comparison per line: the common case)
                    yield self._cut_line(data[start: nl + 1], pos + start)
                else:
                    yield data[start:nl].decode("utf-8", "replace"), pos + start, pos + nl + 1, 0
                start = nl + 1
            self.pos = pos + last
        if start < len(data):
            self._hold(data[start:])

    def finish(self) -> Iterator[tuple[str, int, int, int]]:
        """The last line, when the stream ends without a line break."""
        if self.held:
            yield self._take(0)

    def _hold(self, data: bytes) -> None:
        if not self._dropped and len(self._head) + len(data) <= self.max_bytes:
            self._head += data
            return
        if not self._dropped:
            whole = self._head + data
            self._head, self._tail = whole[: self._half], whole[-self._half:]
            self._dropped = len(whole) - 2 * self._half
            return
        rest = self._tail + data
        self._tail = rest[-self._half:]
        self._dropped += len(rest) - len(self._tail)

    def _take(self, newline: int) -> tuple[str, int, int, int]:
        start, end = self.pos, self.pos + self.held + newline
        if self._dropped:
            text = self._joined(self._head, self._tail, self._dropped)
        else:
            text = self._head.decode("utf-8", "replace")
        cut = self._dropped
        self.reset(end)
        return text, start, end, cut

    def _cut_line(self, line: bytes, start: int) -> tuple[str, int, int, int]:
        body = line[:-1]  # (without its line break)
        head, tail = body[: self._half], body[-self._half:]
        dropped = len(body) - len(head) - len(tail)
        return self._joined(head, tail, dropped), start, start + len(line), dropped

    @staticmethod
    def _joined(head: bytes, tail: bytes, dropped: int) -> str:
        return (head.decode("utf-8", "replace") + LINE_CUT_MARKER.format(n=dropped)
                + tail.decode("utf-8", "replace"))
