"""JSON and logfmt log lines are read by their message field, and the coarse key of a text
with no plain word falls back to what the fine key holds (QA s16d R3: every short JSON or
logfmt message, a bare sanitizer banner, a diff and a lone ``KeyError`` line shared one coarse
key, so ``heal ignore`` on one hid them all). Texts written for these tests."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.fingerprint import fingerprint_text
from tests._diagnose import diagnose_fingerprints

#: one short cause per entry, each written as JSON, as logfmt and as a plain log line
_CAUSES = ("connection refused", "out of memory", "payment failed", "db down", "disk full")


def _forms(cause: str, n: int) -> list[str]:
    return [
        json.dumps({"ts": f"2025-03-0{n}T10:00:0{n}Z", "level": "error", "msg": cause,
                    "service": f"svc{n}", "user": 40 + n}) + "\n",
        f'time=2025-03-0{n}T10:00:00Z level=error msg="{cause}" host=web-{n}\n',
        f"2025-03-0{n} 10:00:0{n} ERROR {cause}\n",
    ]


def test_heal_diagnose_gives_short_json_logfmt_and_text_causes_one_coarse_key_each(
        tmp_path: Path) -> None:
    texts = {f"{i}-{j}": form for i, cause in enumerate(_CAUSES)
             for j, form in enumerate(_forms(cause, i + 1))}
    out = diagnose_fingerprints(tmp_path, texts)
    for i in range(len(_CAUSES)):
        # one cause in three formats, about other services, users and hosts: one key
        assert len({out[f"{i}-{j}"]["coarse"] for j in range(3)}) == 1, _CAUSES[i]
        assert len({out[f"{i}-{j}"]["fine"] for j in range(3)}) == 1, _CAUSES[i]
    assert len({out[f"{i}-0"]["coarse"] for i in range(len(_CAUSES))}) == len(_CAUSES)


def test_heal_diagnose_texts_without_plain_words_keep_coarse_keys_of_their_own(
        tmp_path: Path) -> None:
    texts = {
        "banner": "==31337==ABORTING\n",
        "diff": "--- a/conf.py\n+++ b/conf.py\n@@ -1 +1 @@\n-PORT=1\n+PORT=2\n",
        "keyerror": "KeyError: 'DATABASE_URL'\n",
        "valueerror": "ValueError: 'DATABASE_URL'\n",
        "json": '{"level":"error","msg":"connection refused"}\n',
    }
    out = diagnose_fingerprints(tmp_path, texts)
    assert len({o["coarse"] for o in out.values()}) == len(texts)


def test_one_class_about_other_names_shares_its_coarse_key_without_plain_words() -> None:
    assert fingerprint_text("KeyError: 'DATABASE_URL'").coarse == fingerprint_text(
        "KeyError: 'REDIS_URL'").coarse
    assert fingerprint_text("==31337==ABORTING").coarse == fingerprint_text(
        "==4==ABORTING").coarse
    # (a message that is only a quote is its own kind, not every quoted message's)
    assert fingerprint_text('ERROR "connection refused"').coarse != fingerprint_text(
        'ERROR "out of memory"').coarse


def test_a_structured_line_reads_its_message_error_and_level() -> None:
    from pipeline.fingerprint.parsers_structured import parse_structured

    found = parse_structured('{"level":50,"msg":"charge failed","err":{"message":"card '
                             'declined","type":"CardError"},"pid":7}\n')
    assert found is not None
    assert (found.kind, found.error_type, found.message) == (
        "log", "ERROR", "charge failed: card declined")
    found = parse_structured('ts=1 lvl=fatal msg="cannot open \\"db\\"" err="EACCES"\n')
    assert found is not None and found.message == 'cannot open "db": EACCES'
    assert found.error_type == "FATAL"
    # (info lines, JSON without a message and text that is no structured line are not read)
    assert parse_structured('{"level":"info","msg":"started"}\n') is None
    assert parse_structured('{"level":"error"}\n') is None
    assert parse_structured("level of the tank is low\n") is None
    assert parse_structured("{not json}\n") is None
