"""Event types: the contract's JSON, validation reasons, truncation."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pipeline.errors import DecodeError, EventValidationError
from pipeline.events import CandidateEvent, ErrorEvent, FingerprintEvent, truncate_text


def test_full_contract_event_round_trips() -> None:
    payload = {
        "v": 1, "id": "e-1", "ts": "2026-11-22T10:00:00Z",
        "source": {"kind": "subprocess", "name": "ci", "host": "runner-3"},
        "workflow": {"id": "nightly", "run_id": "1234", "phase": "test", "step": "pytest"},
        "repo": {"path": "/srv/checkout", "commit": "abc123", "branch": "main"},
        "command": ["pytest", "-q"], "exit_code": 1, "text": "boom", "tags": {"a": "b"},
    }
    event = ErrorEvent.decode(orjson.dumps(payload))
    assert event.to_dict() == payload
    assert ErrorEvent.decode(event.encode()) == event


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b"[1]", "JSON object"),
        (b'{"v": 1, "text": "x"}', "'id'"),
        (b'{"v": 1, "id": "a"}', "'text'"),
        (b'{"id": "a", "text": "x"}', "'v'"),
        (b'{"v": 2, "id": "a", "text": "x"}', "schema version"),
        (b'{"v": 1, "id": "a", "text": "x", "exit_code": "1"}', "exit_code"),
        (b'{"v": 1, "id": "a", "text": "x", "command": [1]}', "command"),
        (b'{"v": 1, "id": "a", "text": "x", "source": {"kind": "nope"}}', "source.kind"),
    ],
)
def test_bad_input_says_what_to_change(raw: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        ErrorEvent.decode(raw)
    assert reason in str(info.value)
    assert info.value.raw == raw


def test_validation_errors_are_decode_errors_with_raw_bytes() -> None:
    with pytest.raises(EventValidationError) as info:
        ErrorEvent.decode(b'{"v": 1}')
    assert info.value.raw == b'{"v": 1}'


def test_oversized_text_is_truncated_not_rejected() -> None:
    text = "head\n" + "x" * (10 * 1024 * 1024) + "\nTraceback tail: ValueError"
    event = ErrorEvent.decode(orjson.dumps({"v": 1, "id": "big", "text": text}))
    assert len(event.text.encode()) < 70 * 1024
    assert event.text.startswith("head")
    assert event.text.endswith("ValueError")
    assert event.tags["truncated_bytes"] > 10_000_000


def test_truncate_keeps_short_text() -> None:
    assert truncate_text("short", 100) == ("short", 0)


def test_downstream_events_carry_error_id_and_round_trip() -> None:
    error = ErrorEvent(id="e-9", text="x")
    fp = FingerprintEvent(id="e-9:fp", error_id="e-9", error=error, fine="f", coarse="c")
    assert FingerprintEvent.decode(fp.encode()) == fp
    cand = CandidateEvent(id="e-9:lookup", error_id="e-9", error=error, match={"tier": None})
    assert CandidateEvent.decode(cand.encode()).error_id == "e-9"
    with pytest.raises(EventValidationError):
        CandidateEvent.decode(fp.encode())


def test_a_stage_event_encodes_to_its_dict() -> None:
    # the hand-off encodes the dataclasses natively: the same JSON object as to_dict()
    error = ErrorEvent(id="e1", text="boom", command=("make", "test"), tags={"k": [1, 2]})
    event = FingerprintEvent(id="e1:fingerprint", error_id="e1", error=error, fine="f",
                             params={"ports": (80, 443), "names": {"a"}},
                             extraction={"frames": [{"file": "a.py", "line": 3}]})
    decoded = orjson.loads(event.encode())
    assert decoded == orjson.loads(orjson.dumps(event.to_dict(), default=list))
    assert decoded["kind"] == "fingerprint" and decoded["error"]["command"] == ["make", "test"]
    assert FingerprintEvent.decode(event.encode()).params == {"ports": [80, 443], "names": ["a"]}


def test_a_repeated_source_is_validated_like_a_new_one() -> None:
    # sub-objects are reused by their JSON items: never across types, never past a check
    base = {"v": 1, "id": "e1", "text": "boom"}
    first = ErrorEvent.from_dict({**base, "source": {"kind": "log", "name": "n", "host": "1"}})
    again = ErrorEvent.from_dict({**base, "source": {"kind": "log", "name": "n", "host": "1"}})
    assert again.source is first.source
    number = ErrorEvent.from_dict({**base, "source": {"kind": "log", "name": "n", "host": 1}})
    assert number.source == first.source  # an int is accepted and read as its text
    # a boolean is no string, though Python's bool is an int (it was stored as "True")
    with pytest.raises(EventValidationError, match="'repo.path' must be a string, got a bool"):
        ErrorEvent.from_dict({**base, "repo": {"path": True}})
    with pytest.raises(EventValidationError, match="must be a string"):
        ErrorEvent.from_dict({**base, "repo": {"path": ["a"]}})
    with pytest.raises(EventValidationError, match="NUL"):
        ErrorEvent.from_dict({**base, "repo": {"path": "a\x00"}})


def test_bytes_that_are_not_utf8_are_named_by_their_offset() -> None:
    raw = b'{"v": 1, "id": "a", "text": "caf\xe9 \xff"}'
    with pytest.raises(DecodeError) as info:
        ErrorEvent.decode(raw)
    assert info.value.reason == "not valid UTF-8 at byte 32 (0xe9); send UTF-8 JSON"
    # a str holding a lone surrogate (never encodable) gets the same answer, not a crash
    with pytest.raises(DecodeError, match="not valid UTF-8 at byte"):
        ErrorEvent.decode('{"v": 1, "id": "a", "text": "\udcff"}')


@pytest.mark.parametrize("ts", ["2026-11-22T10:00:00Z", "2026-11-22T10:00:00.123456Z",
                                "2026-11-22T10:00:00+02:00", "2026-11-22 10:00:00",
                                "2026-11-22"])
def test_every_iso_8601_time_is_accepted_verbatim(ts: str) -> None:
    raw = orjson.dumps({"v": 1, "id": "a", "text": "x", "ts": ts})
    assert ErrorEvent.decode(raw).ts == ts


@pytest.mark.parametrize("ts", ["yesterday", "1700000000", "2026-11-22T25:00:00Z", "now"])
def test_a_ts_that_is_not_iso_8601_is_refused(ts: str) -> None:
    raw = orjson.dumps({"v": 1, "id": "a", "text": "x", "ts": ts})
    with pytest.raises(EventValidationError, match="is not an ISO-8601 time"):
        ErrorEvent.decode(raw)


def test_the_python_api_refuses_an_integer_json_cannot_hold() -> None:
    with pytest.raises(EventValidationError, match="cannot be written as JSON"):
        ErrorEvent.from_dict({"v": 1, "id": "a", "text": "x", "exit_code": 10**30})


def test_the_constructor_cuts_the_text_as_a_decode_does() -> None:
    """Producers build events with the constructor: the same 64 KiB cut as from_dict."""
    text = "head line\n" + "y" * (5 * 1024 * 1024) + "\nValueError: the tail"
    built = ErrorEvent(id="big", text=text, tags={"path": "/x.log"})
    decoded = ErrorEvent.decode(orjson.dumps({"v": 1, "id": "big", "text": text}))
    assert built.text == decoded.text
    assert len(built.text.encode()) <= 64 * 1024 + 64
    assert built.tags == {"path": "/x.log", "truncated_bytes": decoded.tags["truncated_bytes"]}
    assert built.tags["truncated_bytes"] > 5_000_000
    # a second construction (dataclasses.replace) does not cut again
    import dataclasses

    assert dataclasses.replace(built, id="other").text == built.text


def test_a_truncated_text_fits_so_the_next_stage_does_not_cut_it_again() -> None:
    """Every stage decodes the error its input carries: a cut text plus its marker must fit
    in the limit (it was 39 bytes over, so each stage cut again and overwrote
    tags.truncated_bytes with 39)."""
    text = "z" * 300_000 + "\nKeyError: 'k'"
    first = ErrorEvent.decode(orjson.dumps({"v": 1, "id": "a", "text": text}))
    assert len(first.text.encode()) <= 64 * 1024
    again = ErrorEvent.decode(first.encode())
    assert again.text == first.text and again.tags == first.tags
    assert first.tags["truncated_bytes"] > 200_000


def test_truncate_counts_what_a_reader_dropped_before() -> None:
    text = "a" * 100_000 + "…[heal: 5000000 bytes truncated]…" + "b" * 100_000
    cut_text, cut = truncate_text(text, dropped=5_000_000)
    assert cut > 5_000_000 and f"[heal: {cut} bytes truncated]" in cut_text
    assert truncate_text("short", dropped=7) == ("short", 7)


def _nest(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 2):  # (tags is level 1, the outer list level 2)
        value = [value]
    return value


@pytest.mark.parametrize("depth", [33, 253, 300, 2000])
def test_tags_nested_past_the_limit_are_refused_from_the_python_api(depth: int) -> None:
    # the API encodes the dict itself first: orjson's TypeError (past 254 levels) and Python's
    # RecursionError (past about 1000, showing the event) become the same reason
    with pytest.raises(EventValidationError, match="nests objects and lists more than 32"):
        ErrorEvent.from_dict({"v": 1, "id": "a", "text": "x", "tags": {"a": _nest(depth)}})


def test_tags_at_the_nesting_limit_or_cyclic() -> None:
    event = ErrorEvent.from_dict({"v": 1, "id": "a", "text": "x", "tags": {"a": _nest(32)}})
    assert ErrorEvent.decode(event.encode()) == event
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    with pytest.raises(EventValidationError, match="nests objects and lists more than 32"):
        ErrorEvent.from_dict({"v": 1, "id": "a", "text": "x", "tags": cycle})
