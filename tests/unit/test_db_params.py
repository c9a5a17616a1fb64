"""What the PostgreSQL connections' text and JSON codecs send (storage/db.py): NUL, which
PostgreSQL cannot store, becomes U+FFFD; nothing else changes."""

from __future__ import annotations

import time

import orjson
import pytest

from storage.db import _json_param, _text_param


def test_text_without_nul_is_the_same_object() -> None:
    text = "ERROR disk full on /srv"
    assert _text_param(text) is text


def test_a_nul_in_text_becomes_the_replacement_character() -> None:
    assert _text_param("a\x00b\x00") == "a\ufffdb\ufffd"


@pytest.mark.parametrize("value", [
    "x\x00y", "\\u0000", "\\\x00", "a\\\\u0000b", "\\\\\\u0000", "\x00\x00", "plain",
])
def test_json_keeps_every_value_but_nul(value: str) -> None:
    """The escape is rewritten only where it is one: after an even run of backslashes."""
    sent = _json_param(orjson.dumps({"k": value, value: [value]}).decode())
    expected = value.replace("\x00", "\ufffd")
    assert orjson.loads(sent) == {"k": expected, expected: [expected]}
    assert "\\u0000" not in sent.replace("\\\\", "")


def test_the_json_rewrite_is_linear_on_a_long_run_of_backslashes() -> None:
    hostile = "\\" * 65_536 + "u0000" + ("\\\\u0000" * 8_192)
    start = time.process_time()
    _json_param(hostile)
    assert time.process_time() - start < 0.1
