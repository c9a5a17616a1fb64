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
command). Lines that are not JSON or not one of these shapes are skipped and counted.
"""

from __future__ import annotations

import re
import shlex
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson

from pipeline.events import ErrorEvent, Repo, Source, Workflow, is_iso_time, utc_now
from producers.context import hostname, stable_id

MAX_REMEMBERED_CALLS = 10_000
#: a transcript line is one JSON document, read whole; a longer one cannot be (its middle is
#: dropped as it is read) and is skipped, counted in ``too_long``
MAX_TRANSCRIPT_LINE_BYTES = 16 << 20
EXIT_CODE = re.compile(r"^\s*Exit code:? (-?\d+)", re.IGNORECASE)
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


class TranscriptReader:
    """A :class:`producers.logs.LineSink` over one transcript file."""

    max_line_bytes = MAX_TRANSCRIPT_LINE_BYTES

    def __init__(self, path: str, identity: Callable[[], str]) -> None:
        self.path = path
        self._identity = identity
        self._calls: OrderedDict[str, tuple[str, JSON]] = OrderedDict()
        self.lines = 0
        self.skipped = 0
        self.too_long = 0
        self.failures = 0

    @property
    def pending_offset(self) -> int | None:
        return None  # every line is complete on its own

    def flush(self) -> list[ErrorEvent]:
        return []

    def feed(self, line: str, start: int, end: int, number: int, cut: int = 0
             ) -> list[ErrorEvent]:
        if cut:  # longer than MAX_TRANSCRIPT_LINE_BYTES: not one JSON document any more
            self.lines += 1
            self.skipped += 1
            self.too_long += 1
            return []
        if not line.strip():
            return []
        self.lines += 1
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.skipped += 1
            return []
        if not isinstance(obj, dict):
            self.skipped += 1
            return []
        if "tool" in obj and ("output" in obj or "exit_code" in obj or "error" in obj):
            return self._generic(obj, start, number)
        out: list[ErrorEvent] = []
        for block in self._blocks(obj):
            if block.get("type") == "tool_use" and isinstance(block.get("id"), str):
                self._remember(block["id"], str(block.get("name", "")), block.get("input"))
            elif block.get("type") == "tool_result" and block.get("is_error") is True:
                out.append(self._result_event(obj, block, start, number))
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

    def _result_event(self, obj: JSON, block: JSON, start: int, number: int) -> ErrorEvent:
        call_id = str(block.get("tool_use_id", ""))
        name, tool_input = self._calls.get(call_id, ("", {}))
        text = content_text(block.get("content"))
        match = EXIT_CODE.match(text)
        exit_code = int(match.group(1)) if match else None
        return self._event(obj, name, tool_input, text, exit_code, call_id or str(start), number)

    def _generic(self, obj: JSON, start: int, number: int) -> list[ErrorEvent]:
        exit_code = obj.get("exit_code")
        if isinstance(exit_code, bool) or not isinstance(exit_code, int):
            exit_code = None
        failed = (exit_code not in (None, 0)) or obj.get("is_error") is True or bool(
            obj.get("error"))
        if not failed:
            return []
        text = content_text(obj.get("output")) or content_text(obj.get("error"))
        raw_input = obj.get("input")
        tool_input: JSON = raw_input if isinstance(raw_input, dict) else {}
        call_id = str(obj.get("id") or obj.get("call_id") or start)
        return [self._event(obj, str(obj["tool"]), tool_input, text, exit_code, call_id, number)]

    def _event(self, obj: JSON, name: str, tool_input: JSON, text: str, exit_code: int | None,
               call_id: str, number: int) -> ErrorEvent:
        self.failures += 1
        command = tool_input.get("command")
        argv = command_argv(command) if isinstance(command, str) and command.strip() else []
        if not argv and isinstance(command, list) and all(isinstance(c, str) for c in command):
            argv = list(command)
        if not text.strip():
            text = f"tool {name or 'call'} failed without output"
        session = str(obj.get("sessionId") or obj.get("session_id") or "")
        tags: JSON = {"tool": name, "tool_call_id": call_id, "line": number}
        if not argv and isinstance(command, str) and command.strip():
            tags["shell_command"] = command[:2000]
        elif not argv and tool_input:
            tags["tool_input"] = orjson.dumps(tool_input).decode()[:2000]
        return ErrorEvent(
            id=stable_id("transcript", self._identity(), call_id),
            text=text,
            ts=_timestamp(obj.get("timestamp")),
            source=Source(kind="transcript", name=self.path, host=hostname()),
            workflow=Workflow(id=session, run_id=session, step=name),
            repo=Repo(path=str(obj.get("cwd") or ""), branch=str(obj.get("gitBranch") or "")),
            command=tuple(argv),
            exit_code=exit_code,
            tags=tags,
        )


def _timestamp(value: Any) -> str:
    """The transcript's ``timestamp`` when it is an ISO-8601 time (the contract's ``ts``),
    else the time it is read: a stage refuses any other ``ts``."""
    if isinstance(value, str) and is_iso_time(value):
        return value
    return utc_now()
