"""Contract field types and the nesting depth of ``tags``, through the real paths: ``heal emit``
as a process, and raw producers' XADDs read by the real fingerprint stage (real Redis).

(QA: a ``tags`` nested 300 deep ended ``heal emit`` with an internal error and published
nothing; one nested 252 deep passed decode and was retried five times with tracebacks; a
falsy value of the wrong type, ``"ts": 0`` or ``"tags": []``, was read as absent.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import redis

from pipeline.config import Settings
from pipeline.events import MAX_TAGS_DEPTH, ErrorEvent, FingerprintEvent
from pipeline.runtime.drain import drain_inline

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]
TOO_DEEP = f"'tags' nests objects and lists more than {MAX_TAGS_DEPTH} levels deep"


def nested_tags(depth: int) -> bytes:
    """``{"a": [[...]]}``: ``tags`` itself is level 1, so ``depth - 1`` lists inside it."""
    return b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def raw_event(event_id: str, extra: bytes = b"") -> bytes:
    return b'{"v":1,"id":"' + event_id.encode() + b'","text":"boom"' + extra + b"}"


def dead_letters(client: redis.Redis, settings: Settings) -> dict[str, dict[bytes, bytes]]:
    out = {}
    for _, fields in client.xrange(settings.stream("dead")):
        out[orjson.loads(fields[b"event"])["id"]] = fields
    return out


def fingerprinted(client: redis.Redis, settings: Settings) -> dict[str, ErrorEvent]:
    events = [FingerprintEvent.decode(f[b"event"])
              for _, f in client.xrange(settings.stream("fingerprints"))]
    return {e.error_id: e.error for e in events}


def test_emit_reports_a_line_nested_too_deep_and_publishes_the_others(
    heal_env: dict[str, str], client: redis.Redis, prefix: str
) -> None:
    # Given three lines, the middle one with tags nested 300 deep (past orjson's encoder)
    lines = [raw_event("before"), raw_event("deep-emit", b',"tags":' + nested_tags(300)),
             raw_event("after")]
    # When heal emit reads them
    done = subprocess.run(HEAL + ["emit"], input=b"\n".join(lines) + b"\n", cwd=ROOT,
                          env={**os.environ, **heal_env, "PYTHONPATH": str(ROOT)},
                          capture_output=True, timeout=120)
    # Then the bad line is reported with its reason and skipped; the others are published
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert f"heal emit: line 2: {TOO_DEEP}" in err
    assert "internal error" not in err and "Traceback" not in err
    published = [orjson.loads(f[b"event"])["id"]
                 for _, f in client.xrange(f"{prefix}:errors")]
    assert published == ["before", "after"]


def test_tags_nested_past_the_limit_are_dead_lettered_at_once_with_the_reason(
    settings: Settings, client: redis.Redis
) -> None:
    # Given raw events whose tags nest 32 (the limit), 33, 252, 253 and 300 levels deep
    depths = [MAX_TAGS_DEPTH, MAX_TAGS_DEPTH + 1, 252, 253, 300]
    for depth in depths:
        client.xadd(settings.stream("errors"),
                    {"event": raw_event(f"deep-{depth}", b',"tags":' + nested_tags(depth))})
    # When the real fingerprint stage reads them
    assert drain_inline(settings, client, stages=["fingerprint"]) == len(depths)
    # Then the one at the limit goes on, and every deeper one is dead-lettered on its first
    # delivery (not retried) with a reason that says what to change
    assert list(fingerprinted(client, settings)) == [f"deep-{MAX_TAGS_DEPTH}"]
    dead = dead_letters(client, settings)
    assert sorted(dead) == sorted(f"deep-{d}" for d in depths[1:])
    for fields in dead.values():
        assert fields[b"attempts"] == b"1"
        assert fields[b"reason"].decode().startswith(f"undecodable: {TOO_DEEP}")
        assert b"flatten it" in fields[b"reason"]


#: (field JSON, the reason a stage gives): wrong-typed values, falsy or not, are refused
WRONG = {
    "ts-0": (b',"ts":0', "'ts' must be an ISO-8601 string such as 2026-11-22T10:00:00Z, "
                         "got an integer"),
    "ts-false": (b',"ts":false', "'ts' must be an ISO-8601 string such as "
                                 "2026-11-22T10:00:00Z, got a boolean"),
    "tags-list": (b',"tags":[]', "'tags' must be an object of string keys, got a list"),
    "tags-str": (b',"tags":""', "'tags' must be an object of string keys, got a string"),
    "command-0": (b',"command":0', "'command' must be a list of strings (argv), got an integer"),
    "command-obj": (b',"command":{}', "'command' must be a list of strings (argv), got an "
                                      "object"),
    "source-bool": (b',"source":{"name":true}', "'source.name' must be a string, got a boolean"),
}
#: absent or null takes the default, as before
DEFAULTED = {
    "ts-null": b',"ts":null', "tags-null": b',"tags":null', "command-null": b',"command":null',
    "plain": b"", "name-int": b',"workflow":{"run_id":1234}',
}


def test_wrong_typed_fields_are_dead_lettered_and_null_takes_the_default(
    settings: Settings, client: redis.Redis
) -> None:
    # Given raw events with wrong-typed contract fields, a float version, and null ones
    for event_id, (extra, _) in WRONG.items():
        client.xadd(settings.stream("errors"), {"event": raw_event(event_id, extra)})
    client.xadd(settings.stream("errors"),
                {"event": b'{"v":1.0,"id":"v-float","text":"boom"}'})
    for event_id, extra in DEFAULTED.items():
        client.xadd(settings.stream("errors"), {"event": raw_event(event_id, extra)})
    # When the real fingerprint stage reads them
    assert drain_inline(settings, client, stages=["fingerprint"]) == (
        len(WRONG) + 1 + len(DEFAULTED))
    # Then each wrong one is dead-lettered at once with its reason
    dead = dead_letters(client, settings)
    assert sorted(dead) == sorted([*WRONG, "v-float"])
    for event_id, (_, reason) in WRONG.items():
        assert dead[event_id][b"reason"].decode() == f"undecodable: {reason}"
        assert dead[event_id][b"attempts"] == b"1"
    assert dead["v-float"][b"reason"].decode() == (
        "undecodable: unsupported schema version v=1.0; this heal reads v=1; write it as the "
        "integer 1")
    # and null or absent values take their defaults
    passed = fingerprinted(client, settings)
    assert sorted(passed) == sorted(DEFAULTED)
    assert passed["ts-null"].ts and passed["tags-null"].tags == {}
    assert passed["command-null"].command == ()
    assert passed["name-int"].workflow.run_id == "1234"
