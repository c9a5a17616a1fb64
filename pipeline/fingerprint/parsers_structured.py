"""Structured log lines: a JSON object per line (zap, pino, bunyan, logrus, structlog, ECS)
and logfmt (``level=error msg="db down" host=a``). The message is the line's message field
(and its error field), its class the level, as :func:`parsers_lines.parse_log` reads the
same event printed as text: the other fields (service, user, host, request id) say where
and for whom, not what failed. Read whole, every word of a JSON line was quoted and a
logfmt message was masked as a quoted value, so every short message shared one key."""

from __future__ import annotations

import json
import re

from pipeline.fingerprint.model import Extraction

#: the fields that hold a line's level, its message and the error it reports, by preference
_LEVEL_KEYS = ("level", "lvl", "severity", "log.level", "levelname", "loglevel")
#: what a text holding a structured line with a level holds (a test before reading lines)
_LEVEL_HINTS = ("level", "lvl", "severity")
_MESSAGE_KEYS = ("msg", "message", "event", "log")
_ERROR_KEYS = ("error", "err", "error.message", "exception", "exc_info")
#: levels that report an error, as parse_log names them; pino's and bunyan's numeric levels
_ERROR_LEVELS = {"error": "ERROR", "err": "ERROR", "fatal": "FATAL", "critical": "CRITICAL",
                 "crit": "CRIT", "panic": "PANIC", "emerg": "EMERG", "alert": "ALERT",
                 "severe": "SEVERE", "dpanic": "PANIC", "50": "ERROR", "60": "FATAL"}
#: the longest line read as JSON, and the most lines of a text read
_LINE_CHARS = 20_000
_LINES = 2_000
#: one logfmt pair: a key, '=', a quoted value (escapes allowed) or a bare one
_PAIR = re.compile(r'(?<![^\s])(?P<key>[\w.@-]{1,64})=(?P<value>"(?:[^"\\\n]|\\.)*+"|[^\s"]*+)')
_LOGFMT_HINT = re.compile(r"(?<![^\s])(?:level|lvl|severity)=")


def parse_structured(text: str, repo: str = "") -> Extraction | None:
    """The first error-level structured line's message (and error), its level the class."""
    if not any(key in text for key in _LEVEL_HINTS):
        return None
    for line in text.splitlines()[:_LINES]:
        stripped = line.strip()
        if len(stripped) > _LINE_CHARS:
            continue
        fields = _json_fields(stripped) if stripped.endswith("}") else None
        if fields is None and _LOGFMT_HINT.search(stripped):
            fields = _logfmt_fields(stripped)
        if not fields:
            continue
        level = next((fields[k] for k in _LEVEL_KEYS if k in fields), "")
        name = _ERROR_LEVELS.get(level.strip().lower())
        message = _message(fields)
        if name and message:
            return Extraction("log", name, message)
    return None


def _message(fields: dict[str, str]) -> str:
    """The line's message followed by the error it reports (either alone when one is)."""
    message = next((fields[k] for k in _MESSAGE_KEYS if fields.get(k, "").strip()), "")
    error = next((fields[k] for k in _ERROR_KEYS if fields.get(k, "").strip()), "")
    parts = [p.strip() for p in (message, error) if p.strip()]
    return ": ".join(parts)


def _json_fields(line: str) -> dict[str, str] | None:
    """The scalar fields of the JSON object ending ``line`` (after a runner's or a container
    runtime's prefix; an object field by its ``message``); None when it holds no object."""
    start = line.find("{")
    if start < 0:
        return None
    try:
        obj = json.loads(line[start:])
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    fields: dict[str, str] = {}
    for key, value in obj.items():
        if isinstance(value, dict):  # ("error": {"message": ..., "type": ...})
            inner = value.get("message")
            if isinstance(inner, str):
                fields.setdefault(str(key), inner)
        elif isinstance(value, str | int) and not isinstance(value, bool):
            fields[str(key)] = str(value)
    return fields


def _logfmt_fields(line: str) -> dict[str, str]:
    """The key=value pairs of a logfmt line, quoted values unquoted."""
    fields: dict[str, str] = {}
    for pair in _PAIR.finditer(line):
        value = pair.group("value")
        if value.startswith('"'):
            value = value[1:-1].replace('\\"', '"')
        fields.setdefault(pair.group("key"), value)
    return fields
