"""Failed tool calls in JSONL transcripts of agent sessions become ErrorEvents.

Shapes understood (one JSON object per line):

- Claude-Code-like: ``{"type": "assistant", "message": {"content": [{"type": "tool_use",
  "id": "toolu_1", "name": "Bash", "input": {"command": "pytest -q"}}]}, "sessionId": ...,
  "cwd": ..., "gitBranch": ..., "timestamp": ...}`` followed later by a line whose content
  holds ``{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Exit code 1 ...",
  "is_error": true}``. The blocks may also stand alone at the top level
  (``{"type": "tool_use", ...}`` / ``{"type": "tool_result", ...}``).
- generic: ``{"tool": "bash", "input": {"command": "..."}, "output": "...", "exit_code": 1}``
  (failed when ``exit_code`` is non-zero, or ``is_error``/``error`` is set).

A result is paired with its call through ``tool_use_id`` (calls are remembered in a bounded
map; a result whose call is unknown, e.g. after a restart, is still published without the
command). Lines that are not JSON objects (or longer than ``MAX_TRANSCRIPT_LINE_BYTES``)
are skipped and counted in :class:`TranscriptStats`, which ``heal watch`` and ``heal
backfill`` report.

Every event is built through the contract's own validation (:func:`pipeline.events.
fit_to_contract`, then :meth:`ErrorEvent.from_dict`, as ``heal emit`` validates): a transcript
is untrusted text, so a field longer than the contract allows (a 300 KB ``cwd``, a 5000-word
command, an ``Exit code`` beyond 64 bits) is cut and listed in ``tags.cut_fields``, and a
failure whose event the contract still refuses is not published, its line and reason counted.
One bad line never stops the others.
"""

from __future__ import annotations

import re
import shlex
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.errors import EventValidationError
from pipeline.events import (
    SCHEMA_VERSION,
    ErrorEvent,
    fit_to_contract,
    is_iso_time,
    utc_now,
)
from producers.context import hostname, stable_id

MAX_REMEMBERED_CALLS = 10_000
#: a transcript line is one JSON document, read whole; a longer one cannot be (its middle is
#: dropped as it is read) and is skipped, counted in ``too_long``
MAX_TRANSCRIPT_LINE_BYTES = 16 << 20
#: (at most 21 digits are read: more than any 64-bit exit status, so a longer number is out
#: of range and published as null by fit_to_contract; int() of 5000 digits raises)
EXIT_CODE = re.compile(r"^\s{0,64}Exit code:? (-?\d{1,21})", re.IGNORECASE)
#: the longest tool name and call id kept in an event's tags and step
MAX_NAME_CHARS = 256
#: how many refused lines' reasons a run keeps to report (their count is kept whole)
MAX_REASONS = 20
SHELL_SYNTAX = re.compile(r"[|&;<>$`()\n*?]")
JSON = dict[str, Any]


def command_argv(command: str) -> list[str]:
    """argv for a plain command string; ``[]`` when it uses shell syntax (pipes, ``&&``, ``$``,
    globs...). heal never builds ``sh -c <string>`` from a transcript: such a command stays
    data (``tags.shell_command``), shown to people and never run (see pipeline.trust)."""
    if not SHELL_SYNTAX.search(command):
        try:
            return shlex.split(command)
        except ValueError:
            pass
    return []


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [content_text(c.get("text", c.get("content", ""))) if isinstance(c, dict)
                 else str(c) for c in content]
        return "\n".join(p for p in parts if p)
    if content is None:
        return ""
    return orjson.dumps(content).decode()


@dataclass
class TranscriptStats:
    """What the readers of one transcript (one per file opened: rotation starts another)
    skipped, cut and refused; ``heal watch`` and ``heal backfill`` report it."""

    lines: int = 0
    #: lines that are not a JSON object, ``too_long`` of them longer than 16 MiB
    skipped: int = 0
    too_long: int = 0
    failures: int = 0
    #: failures published with fields cut to fit the contract (tags.cut_fields)
    cut: int = 0
    #: failures not published: the contract refuses their event (``reasons``: the first few)
    refused: int = 0
    reasons: list[tuple[int, str]] = field(default_factory=list)

    def add(self, other: TranscriptStats) -> None:
        self.lines += other.lines
        self.skipped += other.skipped
        self.too_long += other.too_long
        self.failures += other.failures
        self.cut += other.cut
        self.refused += other.refused
        self.reasons += other.reasons[: max(0, MAX_REASONS - len(self.reasons))]

    def problems(self) -> list[str]:
        """One sentence per kind of problem (none: an empty list)."""
        out = []
        if self.skipped:
            longer = (f" ({self.too_long} longer than {MAX_TRANSCRIPT_LINE_BYTES >> 20} MiB)"
                      if self.too_long else "")
            out.append(f"skipped {self.skipped} line(s) that are not transcript JSON{longer};"
                       " give JSONL agent transcripts to --transcript, log files without it")
        if self.cut:
            out.append(f"{self.cut} failure(s) published with fields cut to fit the event "
                       "contract (listed in their tags.cut_fields)")
        if self.refused:
            out.append(f"{self.refused} failure(s) not published: the event contract refuses "
                       "them")
            out += [f"  line {number}: {reason}" for number, reason in self.reasons]
        return out

    def to_dict(self) -> JSON:
        return {"lines": self.lines, "skipped_lines": self.skipped,
                "too_long_lines": self.too_long, "failures": self.failures,
                "cut": self.cut, "refused": self.refused,
                "refused_lines": [{"line": n, "reason": r} for n, r in self.reasons]}


class TranscriptReader:
    """A :class:`producers.logs.LineSink` over one transcript file. ``stats``: shared by
    the readers of one path (a rotated file gets a new reader), else its own."""

    max_line_bytes = MAX_TRANSCRIPT_LINE_BYTES

    def __init__(self, path: str, identity: Callable[[], str],
                 stats: TranscriptStats | None = None) -> None:
        self.path = path
        self._identity = identity
        self._calls: OrderedDict[str, tuple[str, JSON]] = OrderedDict()
        self.stats = stats if stats is not None else TranscriptStats()

    @property
    def lines(self) -> int:
        return self.stats.lines

    @property
    def skipped(self) -> int:
        return self.stats.skipped

    @property
    def too_long(self) -> int:
        return self.stats.too_long

    @property
    def failures(self) -> int:
        return self.stats.failures

    @property
    def pending_offset(self) -> int | None:
        return None  # every line is complete on its own

    @property
    def pending_line(self) -> int | None:
        return None

    def flush(self) -> list[ErrorEvent]:
        return []

    def feed(self, line: str, start: int, end: int, number: int, cut: int = 0
             ) -> list[ErrorEvent]:
        stats = self.stats
        if cut:  # longer than MAX_TRANSCRIPT_LINE_BYTES: not one JSON document any more
            stats.lines += 1
            stats.skipped += 1
            stats.too_long += 1
            return []
        if not line.strip():
            return []
        stats.lines += 1
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            stats.skipped += 1
            return []
        if not isinstance(obj, dict):
            stats.skipped += 1
            return []
        if "tool" in obj and ("output" in obj or "exit_code" in obj or "error" in obj):
            return self._generic(obj, start, number)
        out: list[ErrorEvent] = []
        for block in self._blocks(obj):
            if block.get("type") == "tool_use" and isinstance(block.get("id"), str):
                self._remember(block["id"], str(block.get("name", "")), block.get("input"))
            elif block.get("type") == "tool_result" and block.get("is_error") is True:
                event = self._result_event(obj, block, start, number)
                if event is not None:
                    out.append(event)
        return out

    # -- shapes ------------------------------------------------------------------------------

    @staticmethod
    def _blocks(obj: JSON) -> list[JSON]:
        if obj.get("type") in ("tool_use", "tool_result"):
            return [obj]
        message = obj.get("message")
        content = message.get("content") if isinstance(message, dict) else obj.get("content")
        return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []

    def _remember(self, call_id: str, name: str, tool_input: Any) -> None:
        self._calls[call_id] = (name, tool_input if isinstance(tool_input, dict) else {})
        while len(self._calls) > MAX_REMEMBERED_CALLS:
            self._calls.popitem(last=False)

    def _result_event(self, obj: JSON, block: JSON, start: int, number: int
                      ) -> ErrorEvent | None:
        """The event of a failed tool result; None when the contract refuses it (counted)."""
        call_id = str(block.get("tool_use_id", ""))
        name, tool_input = self._calls.get(call_id, ("", {}))
        text = content_text(block.get("content"))
        match = EXIT_CODE.match(text)
        exit_code = int(match.group(1)) if match else None  # (fit_to_contract: 64 bits)
        return self._event(obj, name, tool_input, text, exit_code, call_id or str(start), number)

    def _generic(self, obj: JSON, start: int, number: int) -> list[ErrorEvent]:
        exit_code = obj.get("exit_code")
        # (orjson reads an integer beyond 64 bits as a float: still a failure, its code null)
        huge = isinstance(exit_code, float) and exit_code != 0
        if isinstance(exit_code, bool) or not isinstance(exit_code, int):
            exit_code = None
        failed = (huge or exit_code not in (None, 0) or obj.get("is_error") is True
                  or bool(obj.get("error")))
        if not failed:
            return []
        text = content_text(obj.get("output")) or content_text(obj.get("error"))
        raw_input = obj.get("input")
        tool_input: JSON = raw_input if isinstance(raw_input, dict) else {}
        call_id = str(obj.get("id") or obj.get("call_id") or start)
        event = self._event(obj, str(obj["tool"]), tool_input, text, exit_code, call_id, number)
        return [] if event is None else [event]

    def _event(self, obj: JSON, name: str, tool_input: JSON, text: str, exit_code: int | None,
               call_id: str, number: int) -> ErrorEvent | None:
        """The failure's event, built through the contract's validation (see the module
        docstring); None when the contract refuses it (counted with its reason)."""
        self.stats.failures += 1
        name = name[:MAX_NAME_CHARS]
        command = tool_input.get("command")
        argv = command_argv(command) if isinstance(command, str) and command.strip() else []
        if not argv and isinstance(command, list) and all(isinstance(c, str) for c in command):
            argv = list(command)
        if not text.strip():
            text = f"tool {name or 'call'} failed without output"
        session = _field(obj.get("sessionId") or obj.get("session_id"))
        tags: JSON = {"tool": name, "tool_call_id": call_id[:MAX_NAME_CHARS], "line": number}
        if not argv and isinstance(command, str) and command.strip():
            tags["shell_command"] = command[:2000]
        elif not argv and tool_input:
            tags["tool_input"] = orjson.dumps(tool_input).decode()[:2000]
        fields = fit_to_contract({
            "v": SCHEMA_VERSION,
            "id": stable_id("transcript", self._identity(), call_id),
            "text": text,
            "ts": _timestamp(obj.get("timestamp")),
            "source": {"kind": "transcript", "name": self.path, "host": hostname()},
            "workflow": {"id": session, "run_id": session, "step": name},
            "repo": {"path": _field(obj.get("cwd")), "branch": _field(obj.get("gitBranch"))},
            "command": argv,
            "exit_code": exit_code,
            "tags": tags,
        })
        try:
            event = ErrorEvent.from_dict(fields)
        except EventValidationError as exc:
            self.stats.refused += 1
            if len(self.stats.reasons) < MAX_REASONS:
                self.stats.reasons.append((number, exc.reason))
            return None
        if "cut_fields" in fields["tags"]:
            self.stats.cut += 1
        return event


def _field(value: Any) -> str:
    """A transcript's string field (``cwd``, ``sessionId``...) as the contract's string: a
    number or anything else a transcript puts there becomes "" (only strings are paths)."""
    return value if isinstance(value, str) else ""


def _timestamp(value: Any) -> str:
    """The transcript's ``timestamp`` when it is an ISO-8601 time (the contract's ``ts``),
    else the time it is read: a stage refuses any other ``ts``."""
    if isinstance(value, str) and is_iso_time(value):
        return value
    return utc_now()
