"""Frozen, versioned event types for every stream payload, encoded with orjson.

Each stream entry has one field, ``event``, holding the JSON of one of these types.
``decode_*`` raise :class:`DecodeError` (not JSON) or :class:`EventValidationError`
(JSON that breaks the contract), both carrying the raw bytes for the dead-letter stream.

Every downstream event carries ``error_id`` (the ``id`` of the ErrorEvent it descends from)
and the originating ``error`` itself, so any stage can reach the repository, command and text.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import re
import shlex
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import orjson

from pipeline.config import DEFAULT_MAX_TEXT_BYTES
from pipeline.errors import DecodeError, EventValidationError
from pipeline.redact import (
    redact,
    redact_argv,
    redact_counted,
    redact_value,
    redacted_head,
    redacted_tail,
)

SCHEMA_VERSION = 1
SOURCE_KINDS = ("subprocess", "log", "transcript", "hook", "api", "backfill")
MAX_ID_LENGTH = 256
#: hostile-input caps (issue 11): a whole raw event, once its text is truncated, fits in
#: MAX_EVENT_BYTES because every other field is capped (a 20 MB ``tags`` was once copied
#: into every stream)
MAX_EVENT_BYTES = 256 * 1024
MAX_TAGS_BYTES = 16 * 1024
MAX_COMMAND_ARGS = 256
MAX_COMMAND_BYTES = 16 * 1024
MAX_FIELD_CHARS = 1024
#: how deep ``tags`` may nest objects and lists (``tags`` itself is level 1): far below
#: orjson's encoder limit (254 levels from the object encoded), which a downstream event
#: reaches two levels sooner (``error.tags``); an event nested 252 deep once passed decode
#: and then failed every stage's encode until it was dead-lettered after five retries
MAX_TAGS_DEPTH = 32
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
TRUNCATION_MARKER = "\n…[heal: {n} bytes truncated]…\n"

JSON = dict[str, Any]


#: (the current second, its ``YYYY-mm-ddTHH:MM:SS.`` text): one tuple, replaced whole, so a
#: thread never reads one second's number with another's text
_SECOND: tuple[int, str] = (-1, "")
_time_ns = time.time_ns


def utc_now() -> str:
    """``2026-11-22T10:00:00.123456Z`` (UTC, microseconds). The seconds part is formatted
    once per second (strftime per event was a tenth of a stage's decode), from integer
    nanoseconds (no float arithmetic)."""
    global _SECOND
    second, fraction = divmod(_time_ns() // 1000, 1_000_000)
    cached = _SECOND
    if cached[0] != second:
        cached = _SECOND = (second, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second)))
    return f"{cached[1]}{fraction:06d}Z"


def _fail(raw: bytes, reason: str) -> EventValidationError:
    return EventValidationError(reason, raw)


#: JSON's names for the Python types orjson decodes to, with their article
_JSON_KINDS: dict[type[Any], str] = {
    bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
    dict: "an object", type(None): "null",
}


def json_kind(value: Any) -> str:
    """What ``value`` is, in JSON's words with an article: ``an integer``, ``a list``,
    ``null`` (for messages: "'id' must be a string, got an integer")."""
    return _JSON_KINDS.get(type(value)) or f"a {type(value).__name__}"


def _shown(value: Any, limit: int = 60) -> str:
    """``value`` as JSON, cut to ``limit`` characters (a hostile value may be huge)."""
    try:
        text = orjson.dumps(value, default=str).decode()
    except TypeError:  # (an integer beyond 64 bits, from the Python API)
        text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def is_iso_time(ts: str) -> bool:
    """Whether ``ts`` is an ISO-8601 date and time (``2026-11-22T10:00:00Z``, with or
    without fraction and offset; Python's ``fromisoformat``, about 0.1 µs)."""
    try:
        _fromiso(ts)
    except (TypeError, ValueError):
        return False
    return True


_fromiso = _dt.datetime.fromisoformat


def _not_json(data: bytes, exc: orjson.JSONDecodeError) -> DecodeError:
    """The DecodeError of bytes orjson refused: where they are not UTF-8 (orjson's own
    message says "surrogates not allowed" of any invalid byte), else orjson's reason."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as bad:
        return DecodeError(f"not valid UTF-8 at byte {bad.start} (0x{data[bad.start]:02x});"
                           " send UTF-8 JSON", data)
    return DecodeError(f"not valid JSON: {exc}", data)


def _loads(raw: bytes | str) -> JSON:
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise _not_json(data, exc) from exc
    if not isinstance(obj, dict):
        raise EventValidationError(f"expected a JSON object, got {json_kind(obj)}", data)
    return obj


def truncate_text(text: str, limit: int = DEFAULT_MAX_TEXT_BYTES, dropped: int = 0
                  ) -> tuple[str, int]:
    """Keep the head and the tail (the tail usually holds the error) within ``limit`` bytes.

    Each part is redacted before it is cut from the text (``pipeline.redact.redacted_head``
    and ``redacted_tail``): a secret the cut splits is never kept in part (the head's
    partial last line and the tail's partial first line are dropped).

    Returns the text and how many bytes were cut (0 when nothing was; of the original
    text, about: the parts' secrets are redacted). ``dropped``: bytes already cut from
    ``text`` before (a reader that kept only the head and tail of an overlong line), counted
    in the marker and the result. The result, marker included, fits in ``limit``: cutting it
    again (each stage decodes the error it carries) changes nothing.
    """
    if len(text) * 4 <= limit:  # at most 4 bytes a character: fits without encoding it
        return text, dropped
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= limit:
        return text, dropped
    room = len(TRUNCATION_MARKER.format(n=len(encoded) + dropped).encode())
    head = redacted_head(text, limit // 4)
    tail = redacted_tail(text, limit - limit // 4 - room)
    cut = max(1, len(encoded) - len(head.encode("utf-8", "replace"))
              - len(tail.encode("utf-8", "replace"))) + dropped
    return head + TRUNCATION_MARKER.format(n=cut) + tail, cut


@dataclass(frozen=True)
class Source:
    kind: str = "api"
    name: str = ""
    host: str = ""


@dataclass(frozen=True)
class Workflow:
    id: str = ""
    run_id: str = ""
    phase: str = ""
    step: str = ""


@dataclass(frozen=True)
class Repo:
    path: str = ""
    commit: str = ""
    branch: str = ""


#: per sub-object type: its field names and its (frozen, so shareable) empty instance
_SUB_FIELDS: dict[type[Any], frozenset[str]] = {
    cls: frozenset(f.name for f in dataclasses.fields(cls)) for cls in (Source, Workflow, Repo)
}
_SUB_EMPTY: dict[type[Any], Any] = {cls: cls() for cls in _SUB_FIELDS}


#: sub-objects already validated and built, by their JSON items (producers send the same
#: source, workflow and repository again and again; only all-string items are kept, so a
#: number never finds the entry of a string); cleared when full
_SUB_SEEN: dict[tuple[Any, ...], Any] = {}
_SUB_SEEN_MAX = 4096


def _str_fields(raw: bytes, name: str, value: Any, cls: type[Any]) -> Any:
    if value is None:
        return _SUB_EMPTY[cls]
    if not isinstance(value, dict):
        raise _fail(raw, f"'{name}' must be an object, got {json_kind(value)}")
    seen_key: tuple[Any, ...] = (cls, *value.items())
    try:
        found = _SUB_SEEN.get(seen_key)
    except TypeError:  # an unhashable value (a list, an object): checked below, not kept
        return _build_str_fields(raw, name, value, cls)
    if found is not None:
        return found
    built = _build_str_fields(raw, name, value, cls)
    if all(isinstance(v, str) for v in value.values()):
        if len(_SUB_SEEN) >= _SUB_SEEN_MAX:
            _SUB_SEEN.clear()
        _SUB_SEEN[seen_key] = built
    return built


def _build_str_fields(raw: bytes, name: str, value: dict[str, Any], cls: type[Any]) -> Any:
    known = _SUB_FIELDS[cls]
    kwargs: dict[str, str] = {}
    for key, item in value.items():
        if key not in known:
            continue  # unknown sub-fields are tolerated (forward compatible)
        if item is None:
            continue
        # (an integer is read as its digits, a run id of 1234 as "1234"; a boolean is no
        # string, though Python's bool is an int: it was stored as "True")
        if not isinstance(item, str | int) or isinstance(item, bool):
            raise _fail(raw, f"'{name}.{key}' must be a string, got {json_kind(item)}")
        text = str(item)
        if len(text) > MAX_FIELD_CHARS:
            raise _fail(raw, f"'{name}.{key}' is {len(text)} characters; at most {MAX_FIELD_CHARS}")
        if "\x00" in text:
            raise _fail(raw, f"'{name}.{key}' contains a NUL character; send plain text")
        # free text a producer (or an attacker) fills: a step named after a command line
        # carries its --password=... (once per distinct sub-object: _SUB_SEEN keeps it)
        kwargs[key] = redact(text) if text else text
    return cls(**kwargs)


Sub = TypeVar("Sub", Source, Workflow, Repo)


def redacted_fields(sub: Sub) -> Sub:
    """``sub`` (a Source, Workflow or Repo) with every field redacted; ``sub`` itself when
    none held a secret (the common case: one clean-text lookup per non-empty field)."""
    changed = {}
    for key, value in vars(sub).items():
        if value and isinstance(value, str):
            clean = redact(value)
            if clean != value:
                changed[key] = clean
    return dataclasses.replace(sub, **changed) if changed else sub


@dataclass(frozen=True)
class ErrorEvent:
    """The input event of ``heal:errors``: exactly the JSON of the public contract."""

    id: str
    text: str
    v: int = SCHEMA_VERSION
    ts: str = field(default_factory=utc_now)
    source: Source = field(default_factory=Source)
    workflow: Workflow = field(default_factory=Workflow)
    repo: Repo = field(default_factory=Repo)
    command: tuple[str, ...] = ()
    exit_code: int | None = None
    tags: dict[str, Any] = field(default_factory=dict)

    kind: ClassVar[str] = "error"

    def __post_init__(self) -> None:
        # every producer builds the event through here (from_dict cuts on its own): the text
        # is cut as a decode cuts it, before it is redacted (a 20 MB log line was published
        # whole, and redacted whole first)
        if len(self.text) * 4 > DEFAULT_MAX_TEXT_BYTES:
            text, cut = truncate_text(self.text)
            if cut:
                object.__setattr__(self, "text", text)
                object.__setattr__(self, "tags", {**self.tags, "truncated_bytes": cut})
        # secrets never travel further than the constructor (issue 11, item 9): every
        # producer builds the event through here, and every decode through ``_redacted``
        # too (see ``from_dict``), before any write
        redacted = _redacted(self.text, self.command, self.tags)
        if redacted is not None:
            object.__setattr__(self, "text", redacted[0])
            object.__setattr__(self, "command", redacted[1])
            object.__setattr__(self, "tags", redacted[2])
        for name in ("source", "workflow", "repo"):  # (from_dict: see _build_str_fields)
            sub = getattr(self, name)
            clean = redacted_fields(sub)
            if clean is not sub:
                object.__setattr__(self, name, clean)

    @property
    def error_id(self) -> str:
        return self.id

    def to_dict(self) -> JSON:
        return {
            "v": self.v,
            "id": self.id,
            "ts": self.ts,
            # flat frozen dataclasses of strings: a shallow copy equals asdict, without its
            # deepcopy (the hot path of every stage's encode)
            "source": dict(vars(self.source)),
            "workflow": dict(vars(self.workflow)),
            "repo": dict(vars(self.repo)),
            "command": list(self.command),
            "exit_code": self.exit_code,
            "text": self.text,
            "tags": self.tags,
        }

    def encode(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def decode(
        cls, raw: bytes | str, max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES
    ) -> ErrorEvent:
        """Decode and validate; oversized text is truncated (and tagged), not rejected.

        Raises:
            DecodeError: not JSON.
            EventValidationError: JSON that breaks the contract; the reason says what to change.
        """
        data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
        return cls.from_dict(_loads(data), raw=data, max_text_bytes=max_text_bytes)

    @classmethod
    def from_dict(  # noqa: C901 - one flat check per contract field reads best
        cls, obj: JSON, raw: bytes = b"", max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES
    ) -> ErrorEvent:
        raw = raw or _encoded(obj)
        v = obj.get("v")
        if v is None:
            raise _fail(raw, "missing required field 'v' (schema version; use 1)")
        if v.__class__ is not int or v != SCHEMA_VERSION:  # (not 1.0, not true)
            write = "; write it as the integer 1" if isinstance(v, float) and v == 1 else ""
            raise _fail(raw, f"unsupported schema version v={v!r}; this heal reads v=1{write}")
        ev_id = obj.get("id")
        if not isinstance(ev_id, str) or not ev_id.strip():
            if ev_id is None:
                raise _fail(raw, "missing required field 'id' (a non-empty producer-assigned "
                                 "string)")
            what = "a blank string" if isinstance(ev_id, str) else json_kind(ev_id)
            raise _fail(raw, f"'id' must be a non-empty string, got {what}")
        if len(ev_id) > MAX_ID_LENGTH:
            raise _fail(raw, f"'id' is {len(ev_id)} characters; at most {MAX_ID_LENGTH}")
        # (printable, the common case, excludes every control character: no regex)
        bad = None if ev_id.isprintable() else _CONTROL.search(ev_id)
        if bad:
            raise _fail(raw, f"'id' contains the control character {bad.group(0)!r} at "
                             f"{bad.start()}; use printable characters only")
        text = obj.get("text")
        if not isinstance(text, str):
            if text is None:
                raise _fail(raw, "missing required field 'text' (the error text, a string)")
            raise _fail(raw, f"'text' must be a string, got {json_kind(text)}")
        # (absent or null takes the default; a present value of another type is refused,
        # never read as absent because it is falsy: 0, false, [], {})
        ts = obj.get("ts")
        if ts is None:
            ts = ""
        elif not isinstance(ts, str) or (ts and not is_iso_time(ts)):
            raise _fail(raw, _ts_problem(ts))
        # (each check below is skipped only where it cannot fail: an empty command, no
        # exit code, no tags, a text short enough; tests/unit/test_events_fast.py pins them)
        command = obj.get("command")
        if command is None:
            command = []
        elif isinstance(command, str):
            command = [command] if command else []  # (one argument, never split)
        elif not isinstance(command, list):
            raise _fail(raw, f"'command' must be a list of strings (argv), got "
                             f"{json_kind(command)}")
        if command:
            if not all(isinstance(c, str) for c in command):
                raise _fail(raw, "'command' must be a list of strings (argv)")
            _check_command(raw, command)
        exit_code = obj.get("exit_code")
        if exit_code is not None and (not isinstance(exit_code, int)
                                      or isinstance(exit_code, bool)):
            raise _fail(raw, _exit_code_problem(exit_code))
        tags = obj.get("tags")
        if tags is None:
            tags = {}
        elif not isinstance(tags, dict):
            raise _fail(raw, f"'tags' must be an object of string keys, got {json_kind(tags)}")
        if tags or len(raw) > MAX_EVENT_BYTES:
            _check_size(raw, tags, text)
        source = _str_fields(raw, "source", obj.get("source"), Source)
        if source.kind and source.kind not in SOURCE_KINDS:
            kinds = ", ".join(SOURCE_KINDS)
            raise _fail(raw, f"'source.kind' {source.kind!r} is not one of {kinds}")
        if len(text) * 4 > max_text_bytes:  # (else it fits: see truncate_text)
            text, cut = truncate_text(text, max_text_bytes)
            if cut:
                tags = {**tags, "truncated_bytes": cut}
        workflow = _str_fields(raw, "workflow", obj.get("workflow"), Workflow)
        repo = _str_fields(raw, "repo", obj.get("repo"), Repo)
        if cls is ErrorEvent:
            # the constructor's work without its per-field frozen setattr (a fifth of a
            # stage's decode): the same redaction, then the fields in one step
            args = tuple(command)
            if args or tags:
                redacted = _redacted(text, args, tags)
                if redacted is not None:
                    text, args, tags = redacted
            else:  # (nothing but the text can hold a secret)
                text = redact_counted(text)[0]
            return _assemble(cls, {
                "id": ev_id, "text": text, "v": v, "ts": ts or utc_now(), "source": source,
                "workflow": workflow, "repo": repo, "command": args,
                "exit_code": exit_code, "tags": tags,
            })
        return cls(
            id=ev_id,
            text=text,
            v=v,
            ts=ts or utc_now(),
            source=source,
            workflow=workflow,
            repo=repo,
            command=tuple(command),
            exit_code=exit_code,
            tags=tags,
        )


def _encoded(obj: JSON) -> bytes:
    """The raw bytes of an event given as a dict (the Python API): its JSON, or, when it
    cannot be encoded, its repr (refused: every stream payload is JSON). Encoded as it will
    be published (no fallback for other types: a set in ``tags`` once passed here as its
    ``str`` and then failed the publish with a bare TypeError)."""
    try:
        return orjson.dumps(obj)
    except TypeError as exc:  # orjson.JSONEncodeError: an integer beyond 64 bits, a set, a cycle
        try:
            shown = repr(obj)[:MAX_FIELD_CHARS].encode("utf-8", "replace")
        except RecursionError:  # (nested past Python's own limit)
            shown = b"(an event nested too deep to show)"
        if "ecursion" in str(exc) and _too_deep_to_encode(obj.get("tags")):
            raise _fail(shown, _TOO_DEEP) from exc
        raise _fail(shown,
                    f"the event cannot be written as JSON: {exc}; use JSON values only "
                    "(strings, integers of at most 64 bits, numbers, booleans, null, lists "
                    "and objects with string keys)") from exc


def _too_deep_to_encode(tags: Any) -> bool:
    """Whether ``tags`` is what orjson cannot encode for its depth (a cycle counts)."""
    try:
        orjson.dumps(tags, default=str)
    except TypeError as exc:
        return "ecursion" in str(exc)
    return False


#: the range of an ``exit_code`` (a JSON integer every stage reads: 64-bit signed)
EXIT_CODE_MIN, EXIT_CODE_MAX = -(2 ** 63), 2 ** 63 - 1
#: how much of an argv too long for the contract a producer keeps to show (tags.command_head)
COMMAND_HEAD_CHARS = 2000


def fit_field(value: str) -> str:
    """A ``source``/``workflow``/``repo`` string as :func:`fit_to_contract` publishes it: one
    longer than ``MAX_FIELD_CHARS`` or holding a NUL becomes its redacted start without NULs
    (producers that key records by such a field use this, so key and event agree)."""
    if len(value) > MAX_FIELD_CHARS or "\x00" in value:
        return redacted_head(value.replace("\x00", ""), MAX_FIELD_CHARS)
    return value


def carried_field(value: str) -> str:
    """A ``source``/``workflow``/``repo`` string exactly as the published event carries it:
    :func:`fit_field`'s cut, then the redaction of :meth:`ErrorEvent.from_dict` and of the
    constructor. A producer that keys state a stage reads by such a field (a workflow's
    execution state) or matches it against a later event (a step record) keys by this, the
    only form a stage ever sees (a workflow id over 1 KiB, or holding a secret, was kept
    under the caller's whole id, which no stage could look up)."""
    fitted = fit_field(value)
    once = redact(fitted) if fitted else fitted  # from_dict's field check
    return redact(once) if once else once  # the constructor's redacted_fields


def carried_key(value: str, sep: str = "\0") -> str:
    """What a producer keys a record of ``value`` (a workflow id, run id or step name) by:
    :func:`carried_field` (the form a stage sees; never a secret, never over 1 KiB) and, when
    that is a cut of ``value`` (over 1 KiB, or holding a NUL), ``sep`` and a short hash of
    the whole value, so two values sharing their first 1 KiB are two records (one never
    overwrites, or resolves, the other's). A value that is not cut keys as it is carried.
    (``sep`` NUL, the default, is a character no uncut value holds: two keys never meet.)"""
    carried = carried_field(value)
    if fit_field(value) == value:
        return carried
    whole = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{carried}{sep}{whole}"


def carried_fields(sub: Sub) -> tuple[Sub, list[str]]:
    """``sub`` (a Source, Workflow or Repo a producer built itself, not through
    :func:`fit_to_contract`) with every field as the event carries it
    (:func:`carried_field`), and the names of the fields that were cut (for
    ``tags.cut_fields``, as :func:`fit_to_contract` lists them)."""
    name = type(sub).__name__.lower()
    changed, cut = {}, []
    for key, value in vars(sub).items():
        if value and isinstance(value, str):
            if fit_field(value) != value:
                cut.append(f"{name}.{key}")
            clean = carried_field(value)
            if clean != value:
                changed[key] = clean
    return (dataclasses.replace(sub, **changed) if changed else sub), cut


def fit_to_contract(obj: JSON) -> JSON:
    """``obj`` (an event as a dict, built by a producer from untrusted input: a transcript's
    ``cwd``, a tool call's command) cut where the contract allows cutting, so that
    :meth:`ErrorEvent.from_dict` accepts it instead of a stage refusing it later:

    - a ``source``/``workflow``/``repo`` string longer than ``MAX_FIELD_CHARS``: its start,
      secrets redacted before the cut; a NUL character is dropped;
    - a ``command`` over ``MAX_COMMAND_ARGS``/``MAX_COMMAND_BYTES`` or holding a NUL: not
      kept as argv (a cut argv is another command, and an argv may be run); its start is
      shown in ``tags.command_head`` and its length in ``tags.command_args``;
    - an integer ``exit_code`` beyond 64 bits: null, its digits' start in
      ``tags.exit_code_text``.

    What was cut is listed in ``tags.cut_fields``. Anything else stays for ``from_dict`` to
    refuse with its reason (a boolean exit code, tags too large). Returns a new dict.
    """
    out = dict(obj)
    cut: list[str] = []
    for name in ("source", "workflow", "repo"):
        sub = out.get(name)
        if not isinstance(sub, dict):
            continue
        fitted = {}
        for key, value in sub.items():
            if isinstance(value, str):
                fitted_value = fit_field(value)
                if fitted_value is not value:
                    cut.append(f"{name}.{key}")
                value = fitted_value
            fitted[key] = value
        out[name] = fitted
    tags = dict(out.get("tags") or {})
    command = out.get("command")
    if isinstance(command, list | tuple) and all(isinstance(c, str) for c in command):
        size = sum(len(c.encode("utf-8", "replace")) for c in command)
        if (len(command) > MAX_COMMAND_ARGS or size > MAX_COMMAND_BYTES
                or any("\x00" in c for c in command)):
            shown = shlex.join(c.replace("\x00", "") for c in command[:MAX_COMMAND_ARGS])
            tags["command_head"] = redacted_head(shown, COMMAND_HEAD_CHARS)
            tags["command_args"] = len(command)
            out["command"] = []
            cut.append("command")
    exit_code = out.get("exit_code")
    if (isinstance(exit_code, int) and not isinstance(exit_code, bool)
            and not EXIT_CODE_MIN <= exit_code <= EXIT_CODE_MAX):
        digits = str(exit_code) if abs(exit_code).bit_length() < 1000 else "(huge)"
        tags["exit_code_text"] = digits[:40] + ("…" if len(digits) > 40 else "")
        out["exit_code"] = None
        cut.append("exit_code")
    if cut:
        tags["cut_fields"] = cut
    if tags or "tags" in out:
        out["tags"] = tags
    return out


def _ts_problem(ts: Any) -> str:
    if not isinstance(ts, str):
        return (f"'ts' must be an ISO-8601 string such as 2026-11-22T10:00:00Z, got "
                f"{json_kind(ts)}")
    return (f"'ts' {_shown(ts)} is not an ISO-8601 time; use one such as "
            "2026-11-22T10:00:00Z (or leave 'ts' out: heal stamps the time it reads the event)")


#: orjson reads an integer literal beyond 64 bits as a float: a whole float this large was one
_INT64_LIMIT = 2.0 ** 63


def _exit_code_problem(exit_code: Any) -> str:
    if isinstance(exit_code, float) and exit_code.is_integer() and abs(exit_code) >= _INT64_LIMIT:
        return (f"'exit_code' {_shown(exit_code)} is out of range: an exit status is an integer"
                " of at most 64 bits (a process exits with 0-255, or a 32-bit code on Windows)")
    return (f"'exit_code' must be an integer or null, got {json_kind(exit_code)} "
            f"({_shown(exit_code)})")


def _redacted(text: str, command: tuple[str, ...], tags: dict[str, Any]
              ) -> tuple[str, tuple[str, ...], dict[str, Any]] | None:
    """(text, command, tags) with every secret redacted; None when none held one."""
    text, found = redact_counted(text)
    # (empty command and tags, the common case, hold nothing to redact)
    new_command = tuple(redact_argv(command)) if command else command
    new_tags = redact_value(tags) if tags else tags
    if found or new_command != command or new_tags != tags:
        return text, new_command, new_tags
    return None


_new = object.__new__
E = TypeVar("E")


def _assemble(cls: type[E], fields: JSON) -> E:
    """An instance of the frozen dataclass ``cls`` holding ``fields`` (every field, already
    validated and redacted), built without ``__init__``: its frozen ``__setattr__`` per field
    was a fifth of a stage's per-event time. The instance is the same as the constructor's
    (equal, frozen, same repr); ``tests/unit/test_events_fast.py`` checks both agree."""
    built: E = _new(cls)
    built.__dict__.update(fields)
    return built


def _check_command(raw: bytes, command: list[str]) -> None:
    if not command:
        return
    size = sum(len(c.encode("utf-8", "replace")) for c in command)
    if len(command) > MAX_COMMAND_ARGS or size > MAX_COMMAND_BYTES:
        raise _fail(raw, f"'command' has {len(command)} arguments and {size} bytes; at most "
                         f"{MAX_COMMAND_ARGS} arguments and {MAX_COMMAND_BYTES} bytes")
    if any("\x00" in c for c in command):
        raise _fail(raw, "'command' contains a NUL character; an argv cannot hold one")


#: the reason of tags nested too deep
_TOO_DEEP = (f"'tags' nests objects and lists more than {MAX_TAGS_DEPTH} levels deep; at most "
             f"{MAX_TAGS_DEPTH} ('tags' itself is level 1): flatten it (keys such as 'a.b.c') or "
             "put the data in 'text'")


def _check_size(raw: bytes, tags: JSON, text: str) -> None:
    """Tags within MAX_TAGS_BYTES and MAX_TAGS_DEPTH, and the raw event (less its text,
    which is truncated rather than refused) within MAX_EVENT_BYTES.

    Raises:
        EventValidationError: with the reason (never orjson's TypeError: tags nested past
            its encoder limit once ended ``heal emit`` with an internal error).
    """
    try:
        encoded = orjson.dumps(tags, default=str) if tags else b"{}"
    except TypeError as exc:  # orjson.JSONEncodeError: nested past its limit (254)
        if "ecursion" in str(exc):
            raise _fail(raw, _TOO_DEEP) from exc
        raise _fail(raw, f"'tags' cannot be written as JSON: {exc}; use JSON values only"
                    ) from exc
    tag_bytes = len(encoded)
    if tag_bytes > MAX_TAGS_BYTES:
        raise _fail(raw, f"'tags' is {tag_bytes} bytes of JSON; at most {MAX_TAGS_BYTES}"
                         " (put bulky data in 'text', which is truncated, not refused)")
    if len(raw) > MAX_EVENT_BYTES:
        rest = len(raw) - len(orjson.dumps(text))
        if rest > MAX_EVENT_BYTES - DEFAULT_MAX_TEXT_BYTES:
            raise _fail(raw, f"the event is {len(raw)} bytes, {rest} of them outside 'text';"
                             f" at most {MAX_EVENT_BYTES - DEFAULT_MAX_TEXT_BYTES} outside it")
    # each level opens and closes a bracket: JSON of at most twice the limit in bytes, or
    # with no more opening brackets than the limit (in strings or not), cannot nest one
    # level too many (the common case: a length, or two byte counts); else the walk is
    # bounded, after the size check, by MAX_TAGS_BYTES of JSON
    if (tag_bytes > 2 * MAX_TAGS_DEPTH
            and encoded.count(b"[") + encoded.count(b"{") > MAX_TAGS_DEPTH
            and _nested_deeper(tags, MAX_TAGS_DEPTH)):
        raise _fail(raw, _TOO_DEEP)


#: what nests in JSON (a tuple is a list to orjson, from the Python API)
_CONTAINERS = (dict, list, tuple)


def _nested_deeper(value: JSON, limit: int) -> bool:
    """Whether ``value`` (level 1) holds objects or lists nested more than ``limit`` levels
    deep. Level by level, without recursion; the work is bounded by the number of objects
    and lists."""
    level = [v for v in value.values() if isinstance(v, _CONTAINERS)]
    depth = 1
    while level:
        depth += 1
        if depth > limit:
            return True
        inner: list[Any] = []
        for item in level:
            inner += [v for v in (item.values() if isinstance(item, dict) else item)
                      if isinstance(v, _CONTAINERS)]
        level = inner
    return False


# --- downstream events -------------------------------------------------------------------

T = TypeVar("T", bound="StageEvent")


@dataclass(frozen=True)
class StageEvent:
    """Base of the downstream events. ``id`` is deterministic (``f"{error_id}:{stage}"``),
    so a redelivered input produces an output with the same id."""

    id: str
    error_id: str
    error: ErrorEvent
    v: int = SCHEMA_VERSION
    ts: str = field(default_factory=utc_now)

    kind: ClassVar[str] = "stage"

    def to_dict(self) -> JSON:
        out: JSON = {"kind": self.kind}
        for name in _field_names(type(self)):
            value = getattr(self, name)
            out[name] = value.to_dict() if isinstance(value, ErrorEvent) else value
        return out

    @classmethod
    def assemble(cls: type[T], **fields: Any) -> T:
        """The event of ``fields`` as the constructor builds it, without its per-field frozen
        ``__setattr__`` (for a stage's own outputs, built for every event). Every field must
        be given in declaration order (the order ``encode`` writes them in); otherwise this
        is the constructor itself, with its errors.

        Raises:
            TypeError: from the constructor, for a missing or unknown field.
        """
        if tuple(fields) != _field_names(cls):
            return cls(**fields)
        return _assemble(cls, fields)

    def encode(self) -> bytes:
        """The JSON of ``to_dict()`` (the same object; the error's keys in field order):
        orjson serializes the dataclasses natively, a third of the cost of building the dict
        in Python on every stage's hand-off."""
        body = orjson.dumps(self, default=_default)
        return _kind_prefix(type(self)) + body[1:]

    @classmethod
    def decode(cls: type[T], raw: bytes | str) -> T:
        data = raw.encode() if isinstance(raw, str) else raw
        obj = _loads(data)
        if obj.get("kind") != cls.kind:
            raise _fail(data, f"expected a {cls.kind!r} event, got kind={obj.get('kind')!r}")
        try:
            error = ErrorEvent.from_dict(obj.pop("error"), raw=data)
            obj.pop("kind")
            names = {f.name for f in dataclasses.fields(cls)}
            return cls(error=error, **{k: v for k, v in obj.items() if k in names})
        except (KeyError, TypeError) as exc:
            raise _fail(data, f"malformed {cls.kind} event: {exc}") from exc


_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {}
_KIND_PREFIXES: dict[type[Any], bytes] = {}


def _kind_prefix(cls: type[StageEvent]) -> bytes:
    """``{"kind":"<kind>",`` of ``cls``, the start of its encoding (made once per class)."""
    prefix = _KIND_PREFIXES.get(cls)
    if prefix is None:
        prefix = _KIND_PREFIXES[cls] = b'{"kind":' + orjson.dumps(cls.kind) + b","
    return prefix


def _field_names(cls: type[Any]) -> tuple[str, ...]:
    """The dataclass field names of ``cls``, in order (looked up once per class)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _default(value: Any) -> Any:
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


@dataclass(frozen=True)
class FingerprintEvent(StageEvent):
    """Output of the fingerprint stage."""

    fine: str = ""
    coarse: str = ""
    version: str = ""
    template: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    extraction: dict[str, Any] = field(default_factory=dict)

    kind: ClassVar[str] = "fingerprint"


@dataclass(frozen=True)
class CandidateEvent(StageEvent):
    """Output of the lookup stage: the best known fix (or none) and how it was found."""

    fine: str = ""
    coarse: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    #: {"pattern_id": str|None, "tier": 1|2|3|None, "score": float, "reason": str, "path": [...]}
    match: dict[str, Any] = field(default_factory=dict)
    #: {"id", "kind", "category", "state", ...} or None when nothing matched
    fix: dict[str, Any] | None = None

    kind: ClassVar[str] = "candidate"


@dataclass(frozen=True)
class VerdictEvent(StageEvent):
    """Output of the validate stage: approved or not, with every check and vote."""

    fine: str = ""
    fix: dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    #: "apply" | "suggest" | "escalate" | "observe" | "reject"
    decision: str = ""
    reason: str = ""
    preflight: list[dict[str, Any]] = field(default_factory=list)
    verification: list[dict[str, Any]] = field(default_factory=list)
    votes: list[dict[str, Any]] = field(default_factory=list)
    #: the verified branch / commit prepared during verification, if any
    branch: str = ""
    commit: str = ""

    kind: ClassVar[str] = "verdict"


@dataclass(frozen=True)
class OutcomeEvent(StageEvent):
    """Output of the apply stage."""

    fine: str = ""
    fix_id: str = ""
    #: "applied" | "suggested" | "rolled_back" (reverted after reaching the branch) |
    #: "failed" (did not survive verification; never reached the branch) | "escalated" |
    #: "observed" | "skipped" | "flaky" (the failure did not reproduce without a fix)
    status: str = ""
    detail: str = ""
    branch: str = ""
    commit: str = ""
    duration_s: float = 0.0
    #: ranked alternatives tried before ``fix_id`` (or after it, when every one failed) in
    #: this same attempt, each one failed: the lifecycle counts a failure for each
    failed_fixes: list[str] = field(default_factory=list)

    kind: ClassVar[str] = "outcome"


EVENT_TYPES: dict[str, type[StageEvent]] = {
    cls.kind: cls for cls in (FingerprintEvent, CandidateEvent, VerdictEvent, OutcomeEvent)
}
