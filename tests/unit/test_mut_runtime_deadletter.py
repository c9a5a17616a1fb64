"""What a dead letter carries: every field, the raw bytes capped, and the error id guessed from
whatever the raw bytes are (JSON with ``error_id`` or ``id``, or text that only looks like it)."""

from __future__ import annotations

import pytest

from pipeline.runtime.deadletter import dead_letter_fields, guess_error_id
from pipeline.runtime.hooks import Delivery


@pytest.mark.parametrize(("raw", "expected"), [
    (None, ""),
    (b"", ""),
    (b'{"error_id": "e-1", "id": "other"}', "e-1"),
    (b'{"id": "only-id"}', "only-id"),
    (b'{"error_id": 7, "id": "fallback"}', "fallback"),
    (b'{"error_id": 7}', ""),
    (b'["error_id", "e-1"]', ""),
    (b'"just a string"', ""),
    (b'{"error_id": "' + b"x" * 300 + b'"}', "x" * 256),
    # not JSON: the id is found in the text
    (b'{"error_id": "cut-1", "text": "unterminat', "cut-1"),
    (b'garbage "id" : "g-2" more', "g-2"),
    (b'garbage "id": "' + b"y" * 300 + b'"', ""),
    (b"not json at all", ""),
    # bytes that are not UTF-8 in an id found in the text: replaced, never an error
    (b'garbage "id": "ab\xff\xfecd" more', "ab\ufffd\ufffdcd"),
])
def test_the_error_id_is_guessed_from_the_raw_bytes(raw: bytes | None, expected: str) -> None:
    assert guess_error_id(raw) == expected


def test_a_match_only_in_the_first_4096_bytes_of_text_counts() -> None:
    assert guess_error_id(b"x" * 5000 + b'"id": "late"') == ""
    assert guess_error_id(b"x" * 100 + b'"id": "early"' + b"x" * 5000) == "early"


def test_a_dead_letter_carries_every_field() -> None:
    raw = b'{"error_id": "e-9", "message": "boom"}'
    delivery = Delivery("p:errors", "17-3", raw, deliveries=5)
    fields = dead_letter_fields(delivery, "fingerprint", "fp-group", "max deliveries", 1000)
    ts = fields.pop("ts")
    assert isinstance(ts, str) and ts.startswith("20") and ts.endswith("Z")
    assert fields == {"event": raw, "reason": "max deliveries", "stage": "fingerprint",
                      "group": "fp-group", "stream": "p:errors", "entry_id": "17-3",
                      "attempts": "5", "error_id": "e-9"}


def test_raw_bytes_over_the_cap_are_cut_and_the_cut_is_recorded() -> None:
    raw = b'{"error_id": "e-1", "text": "' + b"z" * 100 + b'"}'
    fields = dead_letter_fields(Delivery("s", "1-0", raw, 2), "st", "g", "why", 40)
    assert fields["event"] == raw[:40]
    assert fields["raw_truncated_bytes"] == str(len(raw) - 40)
    # the cut bytes are no longer JSON: the id is read from the text that is kept
    assert fields["error_id"] == "e-1"
    exact = dead_letter_fields(Delivery("s", "1-0", raw, 2), "st", "g", "why", len(raw))
    assert exact["event"] == raw and "raw_truncated_bytes" not in exact


def test_a_deleted_entry_is_dead_lettered_with_empty_bytes() -> None:
    fields = dead_letter_fields(Delivery("s", "1-0", None, 3, deleted=True), "st", "g",
                                "deleted while pending", 100)
    assert (fields["event"], fields["error_id"], fields["attempts"]) == (b"", "", "3")
    assert "raw_truncated_bytes" not in fields
