"""Find the part of a CI build log that explains the failure.

A CI log is a sequence of *steps*: the runner echoes a command (``$ make test``, ``+ cmd``,
``##[group]Run cmd``), folds a section (``travis_fold:start:``, ``section_start:``,
``::group::``), the command writes its output, and the runner reports how it ended
(``The command "make test" exited with 2.``, ``##[error]Process completed with exit code 2.``,
``ERROR: Job failed: exit code 1``, ``script returned exit code 1``). That structure is
shared by the CI systems; nothing here knows a project, a language or a tool.

:class:`CiLogDetector` recognises the structure while lines stream in. When a step ends
with a non-zero exit (or the build ends failed, or the file ends inside a step of a log whose
build did not succeed: then the output of every step since the last exit line, as no exit
line names the failed one), it selects from that step's output:

- the *head* and the *tail*: the first ``head_lines`` lines (a command that stops at once
  says why first: ``Illegal switch 'j'``, then its usage) and the last ``tail_lines`` lines
  before the exit line (the last command's output);
- *failure blocks*: each line carrying a failure marker (``error``, ``FAILED``, ``not ok``,
  ``Exception``, ``✗`` ..., found by the same word shapes in any tool's output) with
  ``context`` lines before it, continued while the following lines are indented (stack
  frames, assertion details, a compiler's caret block), at most ``block_lines`` lines;
- *sections*: test runners draw horizontal rules around the report of each failure
  (``____ test_x ____``, ``---- t stdout ----``, ``====DIFF====``); a marker inside a
  section of at most ``section_lines`` lines brings the whole section, uncut, and a verdict
  right after a rule brings the section that rule closed (runners that print the details
  before the verdict);
- *routine* lines do not count: a marker word on a line whose shape recurs all over the
  step (``OK (3 tests, 9 assertions)``) starts no block, and a verdict on a shape that
  mostly carries none (one ``FAILED`` among ``PASSED`` progress lines) ranks last;
- within ``max_lines`` in all: whole sections first, then the blocks holding the most
  markers (a verdict counts 2, a word 1); ties go to the blocks nearest the start of the
  step (the first error is usually the cause) and the end (the summary).

Every regex here is linear: no nested quantifiers over overlapping atoms.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

from pipeline.runnerlines import BUILD_END, ECHO, FOLD, STEP_EXIT, unstamped

#: words and shapes that mark a line reporting a failure, in any tool's output
MARKER = re.compile(
    r"""
      \b(?:error|errors|errored|fail|failed|failure|failures|failing|fatal|panic|
          exception|abort|aborted|denied|refused|not\ ok|cannot|can't|couldn't|could\ not|
          unable\ to|undefined|unresolved|missing|no\ such|not\ found|timed\ out|timeout|
          killed|segmentation|traceback|assert\w*|expected|mismatch|unexpected|invalid|
          conflict|violation|broken|\d+\ problems?)\b
    | \bERR!
    | ^\s*(?:E\ |!!|>\ |FAIL\b|✗|✖|×|❌|‼|\[(?:ERROR|FAIL\w*|FATAL)\])
    """,
    re.VERBOSE | re.IGNORECASE,
)
#: words that look like markers but report success (``0 failures``, ``no errors``)
BENIGN = re.compile(
    r"\b(?:0|no|zero)\s+(?:errors?|failures?|failed|problems?)\b|\bfailures?:\s*0\b|"
    r"\berrors?:\s*0\b|\bwithout errors\b|\bignored\b|\bwarn(?:ing)?\b",
    re.IGNORECASE,
)
#: a failure marker that is a tool's own verdict, not a word in prose
STRONG = re.compile(
    r"""
      \b(?:ERROR|ERRORS|FAIL|FAILED|FAILURE|FAILURES|FATAL|PANIC|ABORTED)\b
    | \b[A-Z]\w*(?:Error|Exception|Failure)\b
    | ^\W{0,4}(?:error|fatal|panic)(?:\[\w+\])?:
    | \bnot\ ok\b | \bERR! | ^\s*(?:E\ |!!|✗|✖|×|❌)
    """,
    re.VERBOSE,
)
#: what makes two lines "the same shape": runs of letters / digits collapsed
_SHAPE = re.compile(r"[^\W\d_]+|\d+")
MAX_STEP_LINES = 20_000
MAX_LINE_CHARS = 2_000


@dataclass(frozen=True)
class CiOptions:
    """The detector's knobs (the shipped defaults; ``bench/logchunks.py`` re-chooses them
    leave-one-language-out to check that they are not fitted to the data)."""

    tail_lines: int = 30
    context: int = 2
    block_lines: int = 25
    max_lines: int = 200
    max_blocks: int = 12
    run_keep: int = 3
    head_lines: int = 2
    section_lines: int = 150
    routine_min: int = 5


@dataclass(frozen=True)
class CiFailure:
    """One explained failure: the selected text, where it ends, and what the runner said."""

    text: str
    offset: int
    end: int
    line: int
    exit_code: int | None
    command: str


def plain(line: str) -> str:
    """The line as a terminal shows it: the runner's timestamp and ANSI codes removed, the
    text after the last carriage return kept when earlier segments were overwritten."""
    line = unstamped(line).rstrip("\r\n")
    if "\r" in line:
        parts = [p for p in line.split("\r") if p.strip()]
        line = parts[-1] if parts else ""
    return line


def is_marker(line: str) -> bool:
    text = line[:MAX_LINE_CHARS]
    return bool(MARKER.search(text)) and not _only_benign(text)


def _only_benign(text: str) -> bool:
    if not BENIGN.search(text):
        return False
    return not MARKER.search(BENIGN.sub(" ", text))


def _exit_status(line: str) -> int | None:
    match = STEP_EXIT.search(line[:MAX_LINE_CHARS])
    if not match:
        return None
    if match.group("e") is not None:
        return 1  # "failed 3 times": the runner gave up
    value = next(g for g in match.group("a", "b", "c", "d") if g is not None)
    return int(value)


@dataclass
class _Line:
    text: str  # without ANSI codes or the runner's timestamp, as published
    view: str  # as a terminal shows it (for classification)
    offset: int
    end: int
    number: int


class CiLogDetector:
    """Streaming detector (see the module docstring). Feed every line of a file; it returns a
    :class:`CiFailure` when a failing step is complete."""

    def __init__(self, opts: CiOptions | None = None) -> None:
        self.options = opts or CiOptions()
        self.active = False  # CI structure seen: this file is a CI log
        self.emitted = 0
        self._step: deque[_Line] = deque(maxlen=MAX_STEP_LINES)
        # the output of the steps since the last exit line that ended without one (setup
        # commands the runner does not report): what explains a build that stops without
        # naming a failed step may be there
        self._unreported: deque[_Line] = deque(maxlen=MAX_STEP_LINES)
        self._command = ""
        self._build_over = False

    def feed(self, raw: str, offset: int, end: int, number: int) -> CiFailure | None:
        text = unstamped(raw).rstrip("\r\n")
        view = plain(raw)
        segments = [plain(s) for s in text.split("\r")] if "\r" in text else [view]
        if any(FOLD.match(s) for s in segments):
            self.active = True
        status = next((s for s in map(_exit_status, segments) if s is not None), None)
        build_end = any(BUILD_END.search(s) for s in segments)
        if status is not None:
            self.active = True
            self._unreported.clear()
            if build_end and self.emitted:
                self._step.clear()  # "Done. Your build exited with 1": already explained
                failure = None
            else:
                failure = self._close(status, offset, end)
            self._build_over = self._build_over or build_end
            return failure
        if build_end:
            self._build_over = True
        echo = next((s for s in segments if ECHO.match(s)), None)
        if echo is not None:
            self._unreported.extend(self._step)
            self._step.clear()
            self._command = echo[:500]
            return None
        if view.strip() and not FOLD.match(view):
            self._step.append(_Line(text[:MAX_LINE_CHARS * 4], view, offset, end, number))
        return None

    def finish(self) -> CiFailure | None:
        """End of the file: a step cut off by the end of the log (a timeout, a killed job) is
        explained too, unless the build is known to have ended. No exit line names the failed
        step, so the output of every step since the last exit line is searched."""
        if not self.active or self._build_over or not self._step:
            return None
        self._step = deque([*self._unreported, *self._step], maxlen=MAX_STEP_LINES)
        self._unreported.clear()
        last = self._step[-1]
        return self._close(None, last.end, last.end)

    def _close(self, status: int | None, offset: int, end: int) -> CiFailure | None:
        lines = list(self._step)
        command = self._command
        self._step.clear()
        self._command = ""
        if status == 0 or not lines:
            return None
        picked = select(lines, self.options)
        if not picked:
            return None
        self.emitted += 1
        chosen = [lines[i] for i in picked]
        return CiFailure(
            text=_join(lines, picked),
            offset=chosen[0].offset,
            end=end,
            line=chosen[0].number,
            exit_code=status,
            command=command,
        )


def _join(lines: list[_Line], picked: list[int]) -> str:
    out: list[str] = []
    previous = -1
    for i in picked:
        if previous >= 0 and i != previous + 1:
            out.append("[...]")
        out.append(lines[i].text)
        previous = i
    return "\n".join(out)


def _indent(view: str) -> int:
    return len(view) - len(view.lstrip(" \t"))


def shape(view: str) -> str:
    """A line's shape: indentation, and its first and last tokens with letters and digits
    collapsed (``    at a.b.C.d(C.java:12)`` and ``    at x.Y.z(Y.java:3)`` are one shape)."""
    words = view.split()
    if not words:
        return ""
    first = _SHAPE.sub(lambda m: "0" if m.group(0).isdigit() else "a", words[0].lower())
    last = _SHAPE.sub(lambda m: "0" if m.group(0).isdigit() else "a", words[-1].lower())
    return f"{min(_indent(view), 8)}|{first}|{last}|{min(len(words), 6)}"


#: runs that draw a horizontal rule (``=====``, ``-----``, ``_____ test_x _____``, ``══ x ══``)
_RULES = ("====", "----", "____", "****", "####", "~~~~", "════", "────", "━━━━", "▬▬▬▬")


def is_rule(view: str) -> bool:
    """A line that draws a horizontal rule: a test runner's section header or separator
    (pytest's ``____ test_x ____``, run-tests' ``====DIFF====``, Rust's ``---- t stdout
    ----``, testthat's ``── 1. Failure ──``): it opens with a run of 4 rule characters, or
    holds a run of 16 (``node2 stderr ======...``); a diff's ``?   ------`` is not one.
    Substring tests only: no regex, no backtracking."""
    text = view[:MAX_LINE_CHARS].lstrip()
    if text[:4] in _RULES:
        return True
    return any(rule * 4 in text for rule in _RULES)


def condense(lines: list[_Line], keep: int, shapes: list[str] | None = None) -> list[int]:
    """Indices left after cutting long runs of same-shape lines (stack frames, per-test
    progress lines) down to their first ``keep`` lines and their last one."""
    shapes = [shape(line.view) for line in lines] if shapes is None else shapes
    out: list[int] = []
    n = len(lines)
    i = 0
    while i < n:
        j = i + 1
        s = shapes[i]
        while j < n and shapes[j] == s:
            j += 1
        if j - i > keep + 2:
            out.extend(range(i, i + keep))
            out.append(j - 1)
        else:
            out.extend(range(i, j))
        i = j
    return out


@dataclass
class Analysis:
    """What :func:`choose` needs about one failed step, computed once per step (one pass
    over its lines): which lines are kept after condensing, each kept line's failure marker
    (0 none, 1 a word, 2 a tool's verdict), and the sections that horizontal rules cut the
    step into."""

    lines: list[_Line]
    kept: list[int]
    marks: list[int]
    routine: list[bool]  # a marker on a line of a recurring shape: routine output, weight 0
    section: list[int]  # per line: index of the rule that opens its section (-1: none)
    section_end: list[int]  # per line: index one past the last line of its section
    seeds: list[int]  # positions in ``kept`` of the markers that may start a block
    weight: dict[int, int]  # line index -> what its marker counts for ranking (not routine)


def analyze(lines: list[_Line], run_keep: int = 3, routine_min: int = 5) -> Analysis:
    """One linear pass over a failed step's lines (see :class:`Analysis`)."""
    shapes = [shape(line.view) for line in lines]
    kept = condense(lines, run_keep, shapes)
    counts: dict[str, int] = {}
    for s in shapes:
        counts[s] = counts.get(s, 0) + 1
    marks: list[int] = []
    for k in kept:
        view = lines[k].view
        marks.append(0 if not is_marker(view) else 2 if STRONG.search(view[:MAX_LINE_CHARS])
                     else 1)
    seen: dict[str, int] = {}
    marked: dict[str, int] = {}
    for k, m in zip(kept, marks, strict=True):
        seen[shapes[k]] = seen.get(shapes[k], 0) + 1
        if m:
            marked[shapes[k]] = marked.get(shapes[k], 0) + 1
    # routine: a line whose shape recurs — a word marker ("OK (3 tests, 9 assertions)"), or
    # a verdict on a shape that mostly carries none (one "FAILED" among "PASSED" lines)
    routine = [m > 0 and counts[shapes[k]] >= routine_min
               and (m == 1 or 2 * marked.get(shapes[k], 0) < seen[shapes[k]])
               for k, m in zip(kept, marks, strict=True)]
    n = len(lines)
    section = [0] * n
    start = -1  # before the first rule: no section
    for i, line in enumerate(lines):
        if is_rule(line.view):
            start = i
        section[i] = start
    section_end = [n] * n
    stop = n
    for i in range(n - 1, -1, -1):
        section_end[i] = stop
        if section[i] == i or section[i] < 0:
            stop = i
    seeds = [k for k, (m, r) in enumerate(zip(marks, routine, strict=True))
             if m == 2 or (m == 1 and not r)]
    weight = {k: m for k, m, r in zip(kept, marks, routine, strict=True) if m and not r}
    return Analysis(lines, kept, marks, routine, section, section_end, seeds, weight)


def select(lines: list[_Line], opts: CiOptions, kept: list[int] | None = None) -> list[int]:
    """Indices of the lines that explain a failed step (see the module docstring);
    ``kept``: the result of :func:`condense` when the caller already has it."""
    found = analyze(lines, opts.run_keep, opts.routine_min)
    if kept is not None:
        found.kept = kept
    return choose(found, opts)


def _section_of(found: Analysis, raw: int, opts: CiOptions) -> list[int] | None:
    """The rule-delimited section holding line ``raw`` when it is short enough to publish
    whole (a test's report between two headers), with the section before it when ``raw``
    follows the rule that opens its section (a runner that prints its verdict after the
    details: the details are the section just closed)."""
    if opts.section_lines <= 0:
        return None
    start, stop = found.section[raw], found.section_end[raw]
    if start < 0:
        return None
    out: list[int] | None = None
    if stop - start <= opts.section_lines and stop - start > 1:
        out = list(range(start, stop))
    if 0 < raw - start <= opts.context and start > 0 and found.section[start - 1] >= 0:
        before = found.section[start - 1]
        if start - before <= opts.section_lines:
            out = list(range(before, start)) + (out or list(range(start, raw + 1)))
    return out


def choose(found: Analysis, opts: CiOptions) -> list[int]:
    """The lines to publish for an analysed step under ``opts``: the head and the tail of
    the step's output, then failure blocks (a tool's verdicts first; routine markers never
    start one) while they fit in ``max_lines``."""
    lines, kept, marks = found.lines, found.kept, found.marks
    n = len(kept)
    keep = {kept[k] for k in range(max(0, n - opts.tail_lines), n)}
    keep.update(kept[k] for k in range(min(n, opts.head_lines)))
    blocks: list[tuple[int, bool, list[int]]] = []
    i = 0
    for seed in found.seeds:
        if seed < i:
            continue  # inside the block before
        i = seed
        raw = kept[i]
        whole = _section_of(found, raw, opts)
        if whole is not None:
            last = whole[-1]
            level = marks[i]
            while i < n and kept[i] <= last:
                level = max(level, marks[i])
                i += 1
            blocks.append((level, True, whole))
            continue
        start = max(0, i - opts.context)
        stop = i + 1
        base = _indent(lines[raw].view)
        limit = min(n, i + opts.block_lines)
        while stop < limit:
            nxt = lines[kept[stop]].view
            deeper = _indent(nxt) > base
            if not deeper and found.section[kept[stop]] == kept[stop] >= 0:
                break  # a rule opens the next section: the block ends with this one
            if deeper or marks[stop] or stop < i + 1 + opts.context:
                stop += 1
                continue
            break
        level = max(marks[k] for k in range(i, stop))
        blocks.append((level, False, [kept[k] for k in range(start, stop)]))
        i = stop
    strong_blocks = [(whole, b) for level, whole, b in blocks if level == 2]
    weak_blocks = [(whole, b) for level, whole, b in blocks if level == 1]
    chosen = _by_score(found, strong_blocks, opts.max_blocks)
    chosen += _by_score(found, weak_blocks, opts.max_blocks - len(chosen))
    for block in chosen:
        if len(keep | set(block)) > opts.max_lines:
            continue
        keep.update(block)
    return sorted(keep)


def _by_score(found: Analysis, blocks: list[tuple[bool, list[int]]],
              most: int) -> list[list[int]]:
    """The ``most`` blocks that report the most: whole sections (a runner's report of one
    failure) first, then by the failure markers they hold (a tool's verdict counts 2, a word
    1, a routine line nothing), ties broken first and last block first (the cause is usually
    first, the summary last)."""
    if most <= 0 or not blocks:
        return []
    weight = found.weight
    order = _block_order(len(blocks), len(blocks))
    rank = {k: position for position, k in enumerate(order)}
    scores = [sum(weight.get(i, 0) for i in block) for _, block in blocks]
    best = sorted(range(len(blocks)),
                  key=lambda k: (not blocks[k][0], -scores[k], rank[k]))[:most]
    return [blocks[k][1] for k in best]


def _block_order(count: int, most: int) -> list[int]:
    """First and last blocks alternately (the cause is usually first, the summary last)."""
    order: list[int] = []
    lo, hi = 0, count - 1
    while lo <= hi and len(order) < most:
        order.append(lo)
        lo += 1
        if lo <= hi and len(order) < most:
            order.append(hi)
            hi -= 1
    return order
