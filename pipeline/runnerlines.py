"""What a CI runner writes itself, around and into a step's output.

A CI runner echoes commands, folds sections, reports how a step ended, and GitHub Actions
puts a timestamp at the start of every line of a downloaded job log. None of it is the
step's output: ``heal watch``/``heal backfill`` (:mod:`producers.cilog`) remove or read it
while they cut a log into failures, the fingerprint stage removes the timestamps before
extraction (an excerpt published by ``heal emit``, the Python API or a hook carries them
too), and the Python parser does not take a runner's line for more of an exception's
message. One definition for all of them.

Every regex here is linear: no nested quantifiers over overlapping atoms, every part of
the timestamp of fixed or bounded length.
"""

from __future__ import annotations

import re

from pipeline.ansi import strip_ansi

#: the stamp's text: GitHub Actions' timestamp (``2026-11-22T10:00:00.7450187Z ``) and the
#: byte order mark of the file's first line (before or after it)
_STAMP = r"\ufeff?(?:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z )?\ufeff?"
#: the runner's timestamp and byte order mark at the start of one line: the runner's, not
#: the step's output, so it is removed before matching and publishing, as ANSI codes are
RUNNER_STAMP = re.compile(r"\A" + _STAMP)
#: the same at the start of every line of a text, with a program's own stamp of that shape
#: right after it: a MySQL 8 error log's ``2024-05-01T10:00:00.123456Z 12 [ERROR] ...`` reads
#: the same under a runner's stamp as without one (where its own is the first)
_LINE_STAMPS = re.compile(
    r"^" + _STAMP + r"(?:(?<=Z )\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z )?",
    re.MULTILINE)

#: a section fold or a runner's own bookkeeping line (never part of an explanation)
FOLD = re.compile(
    r"^(?:travis_(?:fold|time):|section_(?:start|end):\d+:|##\[(?:end)?group\]|::(?:end)?group::)"
)
#: a command the runner echoes before running it
ECHO = re.compile(r"^(?:\$ \S|##\[group\]Run |##\[command\]\S)")
#: the runner's report that a step ended, with its exit status
STEP_EXIT = re.compile(
    r"""(?:
        \bexited\ with\ (?:code\ |status\ )?(?P<a>-?\d{1,4})\b        # Travis, CircleCI
      | \bProcess\ completed\ with\ exit\ code\ (?P<b>-?\d{1,4})\b      # GitHub Actions
      | \bscript\ returned\ exit\ code\ (?P<c>-?\d{1,4})\b              # Jenkins
      | \bJob\ failed:\ exit\ (?:code|status)\ (?P<d>-?\d{1,4})\b       # GitLab
      | \bfailed\ (?P<e>\d{1,2})\ times\b                               # a retried command
    )""",
    re.VERBOSE | re.IGNORECASE,
)
#: the build (not a step) is over
BUILD_END = re.compile(
    r"\b(?:Your build exited with|Job failed|Job succeeded|Build (?:failed|succeeded|errored)|"
    r"Finishing: (?:FAILURE|SUCCESS))\b",
    re.IGNORECASE,
)
#: a runner's annotation (``##[error]Process completed``, ``::error::``) or a shell's or a
#: program's own exit report (``exit status 2`` after a Go panic, ``make: *** [x] Error 1``,
#: ``make[1]: *** ...``): lines a step's output never continues into
_ANNOTATION = re.compile(
    r"^(?:##\[\w{1,16}\]|::\w{1,16}(?: [^:]{0,200})?::|exit (?:status|code) -?\d{1,4}\s*$"
    r"|[\w.+/-]{1,64}(?:\[\d{1,9}\])?: \*\*\* )"
)
#: the runner's verdict on the job or the build: a label, a colon and one outcome word in
#: capitals, alone on the line (Jenkins' ``Finished: FAILURE``, ``Build result: UNSTABLE``,
#: ``Status: CANCELED``; the label in plain words, never a class name such as ``KeyError``),
#: or Jenkins' ``Build step 'Execute shell' marked build as failure``:
#: it says *that* the run failed, never what failed
_VERDICT = re.compile(
    r"^[A-Z][a-z]{1,20}(?: [A-Za-z][a-z]{0,20}){0,3}: (?:SUCCESS|SUCCEEDED|FAILURE|FAILED"
    r"|UNSTABLE|ABORTED|CANCELL?ED|NOT_BUILT|PASSED|TIMED_OUT|TIMEOUT|ERRORED)\.?$"
    r"|\bmarked (?:the )?build as (?:failure|failed|unstable|aborted)\b"
)
#: the runner's own bookkeeping before and after a job's steps: a lifecycle verb first, then
#: what the runner keeps or runs for the job (its artifacts, caches, workspace, test reports,
#: orphan processes, the job itself), and no colon after them (``Post job cleanup.``,
#: ``Cleaning up orphan processes``, ``Uploading artifacts for failed job``, ``Saving cache``,
#: ``Archiving artifacts``, ``Recording test results``, ``Running after_script``); and the
#: markers of Jenkins' pipeline steps (``[Pipeline] }``, ``[Pipeline] End of Pipeline``)
_BOOKKEEPING = re.compile(
    r"^(?:(?:Post|Set up|Complete|Clean(?:ing)? up|Upload(?:ing)?|Download(?:ing)?|Sav(?:e|ing)"
    r"|Restor(?:e|ing)|Archiv(?:e|ing)|Record(?:ing)?|Publish(?:ing)?|Running|Executing)"
    r"\b[^:\n]{0,40}?\b(?:job|artifacts?|caches?|workspace|test results|test reports?"
    r"|orphan process(?:es)?|project directory|after_script|before_script)\b[^:\n]{0,200}$"
    r"|\[Pipeline\] )"
)
#: the longest line prefix the runner checks look at
_CHECKED_CHARS = 2000


def unstamped(line: str) -> str:
    """The line without the runner's timestamp and byte order mark (:data:`RUNNER_STAMP`)
    and without ANSI codes (unchanged, fast, when it has none of them)."""
    if line and line[0] in "0123456789\ufeff":
        line = RUNNER_STAMP.sub("", line, count=1)
    return strip_ansi(line)


def strip_stamps(text: str) -> str:
    """``text`` without the runner's timestamp and byte order mark at the start of any of its
    lines (unchanged, fast, when it holds neither: both literals are looked for first)."""
    if "\ufeff" not in text and "Z " not in text:
        return text
    return _LINE_STAMPS.sub("", text)


def is_runner_line(line: str) -> bool:
    """True when ``line`` (stripped) is the runner's or a build tool's own: a fold, an
    echoed command, a step's or the build's end, an annotation or an exit report, the
    runner's verdict on the run or its bookkeeping around the steps (artifacts, caches,
    cleanup)."""
    line = line[:_CHECKED_CHARS]
    return bool(FOLD.match(line) or ECHO.match(line) or _ANNOTATION.match(line)
                or STEP_EXIT.search(line) or BUILD_END.search(line)
                or _VERDICT.search(line) or _BOOKKEEPING.match(line))
