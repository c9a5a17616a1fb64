"""The events' fast construction paths equal the general ones.

``ErrorEvent.from_dict`` builds an ``ErrorEvent`` without its ``__init__`` (the same
validation and redaction, the fields set in one step), and ``StageEvent.assemble`` does the
same for a stage's own outputs. A dataclass subclass takes the general path (the
constructor with ``__post_init__``), so comparing the two over the fixtures, over
generated events (secrets included) and over malformed ones proves the fast path changes
nothing: same fields, same JSON, same errors, still frozen.
"""

from __future__ import annotations

import dataclasses
import re
import string
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import DecodeError
from pipeline.events import ErrorEvent, FingerprintEvent, utc_now

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "errors"


@dataclasses.dataclass(frozen=True)
class GeneralErrorEvent(ErrorEvent):
    """ErrorEvent decoded through the constructor (``from_dict``'s general path)."""


def both(obj: dict[str, Any]) -> tuple[ErrorEvent, ErrorEvent]:
    raw = orjson.dumps(obj)
    return ErrorEvent.decode(raw), GeneralErrorEvent.decode(raw)


def assert_same(fast: ErrorEvent, general: ErrorEvent) -> None:
    assert type(fast) is ErrorEvent
    names = [f.name for f in dataclasses.fields(ErrorEvent)]
    assert [getattr(fast, n) for n in names] == [getattr(general, n) for n in names]
    assert list(vars(fast)) == names  # declaration order: what encode() writes
    assert fast.encode() == general.encode()
    assert fast.to_dict() == general.to_dict()
    assert repr(fast) == repr(general).replace("GeneralErrorEvent(", "ErrorEvent(", 1)
    assert fast == ErrorEvent(**{n: getattr(general, n) for n in names})
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.text = "changed"  # type: ignore[misc]


def fixture_texts() -> list[str]:
    return [p.read_text(encoding="utf-8", errors="replace")
            for p in sorted(FIXTURES.rglob("*.txt"))]


def test_every_fixture_decodes_alike_on_both_paths() -> None:
    texts = fixture_texts()
    assert len(texts) > 20
    for i, text in enumerate(texts):
        obj = {"v": 1, "id": f"f-{i}", "text": text, "ts": "2026-11-22T10:00:00Z",
               "source": {"kind": "log", "name": "ci", "host": "h"},
               "repo": {"path": "/srv/r", "commit": "abc"}, "command": ["make", "test"],
               "exit_code": 2, "tags": {"job": "build"}}
        assert_same(*both(obj))


SECRETS = ["password=hunter2hunter2", "ghp_" + "a" * 36, "AKIA" + "B" * 16,
           "https://user:s3cret@example.com/x", "Authorization: Bearer abcdefgh12345678"]
SECRET_VALUES = ["hunter2hunter2", "a" * 36, "B" * 16, "s3cret", "abcdefgh12345678"]
texty = st.text(string.printable, max_size=80)
words = st.text(string.ascii_letters + string.digits + "-_./", min_size=1, max_size=20)


@settings(max_examples=150, deadline=None)
@given(text=st.lists(st.one_of(texty, st.sampled_from(SECRETS)), max_size=4).map(" ".join),
       command=st.lists(st.one_of(words, st.sampled_from(SECRETS)), max_size=4),
       tags=st.dictionaries(words, st.one_of(words, st.sampled_from(SECRETS),
                                          st.integers(-(2**63), 2**63 - 1)),
                            max_size=3),
       ts=st.sampled_from([None, "", "2026-11-22T10:00:00Z"]),
       kind=st.sampled_from([None, "api", "log", "hook"]),
       exit_code=st.one_of(st.none(), st.integers(-255, 255)),
       workflow=st.one_of(st.none(), st.dictionaries(
           st.sampled_from(["id", "run_id", "phase", "step", "other"]),
           st.one_of(words, st.sampled_from(SECRETS)), max_size=3)))
def test_generated_events_decode_alike_on_both_paths(
        text: str, command: list[str], tags: dict[str, Any], ts: str | None, kind: str | None,
        exit_code: int | None, workflow: dict[str, str] | None) -> None:
    obj: dict[str, Any] = {"v": 1, "id": "gen-1", "text": text, "command": command,
                           "tags": tags, "exit_code": exit_code}
    if ts is not None:
        obj["ts"] = ts
    if kind is not None:
        obj["source"] = {"kind": kind, "name": "n"}
    if workflow is not None:
        obj["workflow"] = workflow
    fast, general = both(obj)
    if not ts:  # stamped at decode: the two decodes ran at different microseconds
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", fast.ts)
        general = dataclasses.replace(general, ts=fast.ts)
    assert_same(fast, general)
    encoded = fast.encode().decode()
    for secret in SECRET_VALUES:  # the fast path redacts as the constructor does
        assert secret not in encoded


MALFORMED = [
    b"not json", b"[1]", b'{"v": 1, "text": "x"}', b'{"v": 1, "id": "a"}',
    b'{"id": "a", "text": "x"}', b'{"v": 2, "id": "a", "text": "x"}',
    b'{"v": true, "id": "a", "text": "x"}', b'{"v": 1, "id": " ", "text": "x"}',
    b'{"v": 1, "id": "a\\u0001b", "text": "x"}', b'{"v": 1, "id": "a", "text": 3}',
    b'{"v": 1, "id": "a", "text": "x", "ts": 5}',
    b'{"v": 1, "id": "a", "text": "x", "exit_code": "1"}',
    b'{"v": 1, "id": "a", "text": "x", "exit_code": true}',
    b'{"v": 1, "id": "a", "text": "x", "command": [1]}',
    b'{"v": 1, "id": "a", "text": "x", "command": ["a\\u0000"]}',
    b'{"v": 1, "id": "a", "text": "x", "tags": [1]}',
    b'{"v": 1, "id": "a", "text": "x", "source": {"kind": "nope"}}',
    b'{"v": 1, "id": "a", "text": "x", "source": []}',
    b'{"v": 1, "id": "a", "text": "x", "workflow": {"id": [1]}}',
    b'{"v": 1, "id": "a", "text": "x", "repo": {"path": "a\\u0000"}}',
    b'{"v": 1, "id": "' + b"i" * 300 + b'", "text": "x"}',
]


@pytest.mark.parametrize("raw", MALFORMED)
def test_malformed_events_fail_alike_on_both_paths(raw: bytes) -> None:
    with pytest.raises(DecodeError) as fast:
        ErrorEvent.decode(raw)
    with pytest.raises(DecodeError) as general:
        GeneralErrorEvent.decode(raw)
    assert type(fast.value) is type(general.value)
    assert fast.value.reason == general.value.reason
    assert fast.value.raw == general.value.raw == raw


def test_assemble_equals_the_constructor_and_stays_frozen() -> None:
    error = ErrorEvent.decode(b'{"v": 1, "id": "e1", "text": "boom", "command": ["x"]}')
    fields: dict[str, Any] = {
        "id": "e1:fingerprint", "error_id": "e1", "error": error, "v": 1, "ts": utc_now(),
        "fine": "f", "coarse": "c", "version": "fp-v4", "template": "t <*>",
        "params": {"cluster": "k"}, "extraction": {"kind": "text", "frames": []}}
    fast = FingerprintEvent.assemble(**fields)
    general = FingerprintEvent(**fields)
    assert fast == general and repr(fast) == repr(general)
    assert fast.encode() == general.encode()
    assert FingerprintEvent.decode(fast.encode()) == general
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.fine = "g"  # type: ignore[misc]
    # out of order or incomplete: the constructor decides (and refuses what it refuses)
    reordered = dict(reversed(list(fields.items())))
    assert FingerprintEvent.assemble(**reordered).encode() == general.encode()
    del fields["error_id"]
    with pytest.raises(TypeError):
        FingerprintEvent.assemble(**fields)


def test_utc_now_is_iso_utc_with_microseconds_and_does_not_go_back() -> None:
    stamps = [utc_now() for _ in range(2000)]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", s) for s in stamps)
    assert stamps == sorted(stamps)



#: (template, filler): raw JSON and the exact reason decoding it gives (pinned before the
#: validation was reordered for speed: every check and message stays as it was)
PINNED: list[tuple[str, tuple[str, int] | None, str]] = [
    ('{"v": 1, "id": "a", "text": "x", "command": {"a": 1}}',
     None,
     "'command' must be a list of strings (argv), got an object"),
    ('{"v": 1, "id": "a", "text": "x", "command": ["a"], "exit_code": 1.5}',
     None,
     "'exit_code' must be an integer or null, got a number (1.5)"),
    ('{"v": 1, "id": "a", "text": "x", "tags": {"k": "%s"}}',
     ('v', 17000),
     "'tags' is 17008 bytes of JSON; at most 16384 (put bulky data in 'text', which is "
     "truncated, not refused)"),
    ('{"v": 1, "id": "a", "text": "x", "tags": {"k": 1}, "exit_code": "x", '
     '"source": {"kind": "bad"}}',
     None,
     "'exit_code' must be an integer or null, got a string (\"x\")"),
    ('{"v": 1, "id": "a", "text": null}',
     None,
     "missing required field 'text' (the error text, a string)"),
    ('{"v": null, "id": "a", "text": "x"}',
     None,
     "missing required field 'v' (schema version; use 1)"),
    ('{"v": 1, "id": 5, "text": "x"}',
     None,
     "'id' must be a non-empty string, got an integer"),
    ('{"v": 1, "id": "a", "text": "x", "command": ["%s"]}',
     ('a', 17000),
     "'command' has 1 arguments and 17000 bytes; at most 256 arguments and 16384 bytes"),
    ('{"v": 1, "id": "a", "text": "x", "repo": {"path": "%s"}}',
     ('p', 1100),
     "'repo.path' is 1100 characters; at most 1024"),
    ('{"v": 1, "id": "a", "text": "x", "source": {"name": 5.5}}',
     None,
     "'source.name' must be a string, got a number"),
    ('{"v": 1, "id": "a", "text": "x", "extra": "%s"}',
     ('z', 300000),
     "the event is 300045 bytes, 300042 of them outside 'text'; at most 196608 outside it"),
    ('{"v": 1, "text": "x"}',
     None,
     "missing required field 'id' (a non-empty producer-assigned string)"),
    ('{"v": 1, "id": "a"}',
     None,
     "missing required field 'text' (the error text, a string)"),
    ('{"id": "a", "text": "x"}',
     None,
     "missing required field 'v' (schema version; use 1)"),
    ('{"v": 2, "id": "a", "text": "x"}',
     None,
     'unsupported schema version v=2; this heal reads v=1'),
    ('{"v": true, "id": "a", "text": "x"}',
     None,
     'unsupported schema version v=True; this heal reads v=1'),
    ('{"v": 1, "id": " ", "text": "x"}',
     None,
     "'id' must be a non-empty string, got a blank string"),
    ('{"v": 1, "id": "a\\u0001b", "text": "x"}',
     None,
     "'id' contains the control character '\\x01' at 1; use printable characters only"),
    ('{"v": 1, "id": "a", "text": 3}',
     None,
     "'text' must be a string, got an integer"),
    ('{"v": 1, "id": "a", "text": "x", "ts": 5}',
     None,
     "'ts' must be an ISO-8601 string such as 2026-11-22T10:00:00Z, got an integer"),
    ('{"v": 1, "id": "a", "text": "x", "exit_code": "1"}',
     None,
     "'exit_code' must be an integer or null, got a string (\"1\")"),
    ('{"v": 1, "id": "a", "text": "x", "exit_code": true}',
     None,
     "'exit_code' must be an integer or null, got a boolean (true)"),
    ('{"v": 1, "id": "a", "text": "x", "command": [1]}',
     None,
     "'command' must be a list of strings (argv)"),
    ('{"v": 1, "id": "a", "text": "x", "command": ["a\\u0000"]}',
     None,
     "'command' contains a NUL character; an argv cannot hold one"),
    ('{"v": 1, "id": "a", "text": "x", "tags": [1]}',
     None,
     "'tags' must be an object of string keys, got a list"),
    ('{"v": 1, "id": "a", "text": "x", "source": {"kind": "nope"}}',
     None,
     "'source.kind' 'nope' is not one of subprocess, log, transcript, hook, api, backfill"),
    ('{"v": 1, "id": "a", "text": "x", "source": []}',
     None,
     "'source' must be an object, got a list"),
    ('{"v": 1, "id": "a", "text": "x", "workflow": {"id": [1]}}',
     None,
     "'workflow.id' must be a string, got a list"),
    ('{"v": 1, "id": "a", "text": "x", "repo": {"path": "a\\u0000"}}',
     None,
     "'repo.path' contains a NUL character; send plain text"),
    # (QA: a falsy value of the wrong type read as absent; 1.0 read as 1)
    ('{"v": 1.0, "id": "a", "text": "x"}',
     None,
     "unsupported schema version v=1.0; this heal reads v=1; write it as the integer 1"),
    ('{"v": 1, "id": "a", "text": "x", "ts": 0}',
     None,
     "'ts' must be an ISO-8601 string such as 2026-11-22T10:00:00Z, got an integer"),
    ('{"v": 1, "id": "a", "text": "x", "command": 0, "tags": ""}',
     None,
     "'command' must be a list of strings (argv), got an integer"),
    ('{"v": 1, "id": "a", "text": "x", "tags": ""}',
     None,
     "'tags' must be an object of string keys, got a string"),
    ('{"v": 1, "id": "a", "text": "x", "repo": {"branch": false}}',
     None,
     "'repo.branch' must be a string, got a boolean"),
    # (QA: a wrong type named as missing, "got a int", a 20-digit exit code shown as 1e+23,
    # a non-ISO ts accepted verbatim)
    ('{"v": 1, "id": "a", "text": "x", "exit_code": 99999999999999999999999}',
     None,
     "'exit_code' 1e+23 is out of range: an exit status is an integer of at most 64 bits (a "
     "process exits with 0-255, or a 32-bit code on Windows)"),
    ('{"v": 1, "id": "a", "text": "x", "ts": "yesterday"}',
     None,
     "'ts' \"yesterday\" is not an ISO-8601 time; use one such as 2026-11-22T10:00:00Z (or "
     "leave 'ts' out: heal stamps the time it reads the event)"),
    ('{"v": 1, "id": "a", "text": "x", "ts": "2026-13-01T00:00:00Z"}',
     None,
     "'ts' \"2026-13-01T00:00:00Z\" is not an ISO-8601 time; use one such as "
     "2026-11-22T10:00:00Z (or leave 'ts' out: heal stamps the time it reads the event)"),
    ('{"v": 1, "id": [], "text": "x"}',
     None,
     "'id' must be a non-empty string, got a list"),
]


@pytest.mark.parametrize(("template", "filler", "reason"), PINNED)
def test_every_check_keeps_its_order_and_message(
        template: str, filler: tuple[str, int] | None, reason: str) -> None:
    raw = (template % (filler[0] * filler[1]) if filler else template).encode()
    with pytest.raises(DecodeError) as info:
        ErrorEvent.decode(raw)
    assert info.value.reason == reason
