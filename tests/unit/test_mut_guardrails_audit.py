"""The audit chain's pure parts, pinned on their observable results: the exact text that is
hashed, the keyed hash, each reason verification gives for a broken chain (and where it
points), the anchored-head and file/table cross checks, reading the last record of a large
log, and the key file (pipeline.guardrails.audit)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Settings
from pipeline.guardrails import audit as audit_mod
from pipeline.guardrails.audit import (
    ALG,
    GENESIS,
    AuditError,
    AuditLog,
    Verification,
    audit_key,
    canonical,
    check_head,
    cross_check,
    read_anchor,
    record_hash,
    verify_file,
    verify_lines,
)
from tests._audit_ids import file_log_id

KEY = b"k" * 32


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEAL_AUDIT_KEY", raising=False)


def _settings(home: Path) -> Settings:
    return Settings(None, None, home, "heal")


def _chain(n: int, key: bytes | None = KEY) -> list[str]:
    """n records sealed one after the other, as canonical lines."""
    lines: list[str] = []
    prev: dict[str, Any] | None = None
    for i in range(n):
        prev = audit_mod._seal(prev, "k", f"s{i}", {"i": i}, key)
        lines.append(canonical(prev))
    return lines


def test_canonical_is_sorted_compact_utf8_and_stringifies_the_rest() -> None:
    assert canonical({"b": 1, "a": "é", "c": Path("/x")}) == '{"a":"é","b":1,"c":"/x"}'


def test_record_hash_is_hmac_for_keyed_records_and_sha256_for_old_ones() -> None:
    old = {"seq": 1, "kind": "k", "hash": "ignored"}
    body = canonical({"seq": 1, "kind": "k"}).encode()
    assert record_hash(old) == hashlib.sha256(body).hexdigest()
    assert record_hash(old, KEY) == hashlib.sha256(body).hexdigest()  # no alg: key unused
    keyed = {"seq": 1, "kind": "k", "alg": ALG, "hash": "x"}
    kbody = canonical({"seq": 1, "kind": "k", "alg": ALG}).encode()
    assert record_hash(keyed, KEY) == hmac.new(KEY, kbody, hashlib.sha256).hexdigest()
    assert record_hash(keyed, KEY) != record_hash(keyed, b"other")
    assert record_hash(keyed) == hmac.new(b"", kbody, hashlib.sha256).hexdigest()


def test_seal_numbers_links_and_marks_records() -> None:
    first = audit_mod._seal(None, "kind", "subj", {"a": 1}, None)
    assert first["seq"] == 1 and first["prev"] == GENESIS
    assert "alg" not in first and "file" not in first
    assert (first["kind"], first["subject"], first["data"]) == ("kind", "subj", {"a": 1})
    assert first["hash"] == record_hash(first)
    second = audit_mod._seal(first, "kind", "subj", {}, KEY, {"log": "L", "seq": 3, "hash": "h"})
    assert second["seq"] == 2 and second["prev"] == first["hash"]
    assert second["alg"] == ALG and second["file"] == {"log": "L", "seq": 3, "hash": "h"}
    assert second["hash"] == record_hash(second, KEY)


def test_an_intact_chain_verifies_with_every_hash_and_the_witnessing_records() -> None:
    lines = _chain(3)
    result = verify_lines(iter(lines), KEY)
    assert (result.ok, result.records, result.bad_at, result.reason) == (True, 3, None, "")
    assert result.hashes == [json.loads(line)["hash"] for line in lines]
    assert result.kept == {}
    witness = audit_mod._seal(None, "k", "s", {}, KEY, {"log": "L", "seq": 1, "hash": "h"})
    result = verify_lines(iter([canonical(witness)]), KEY)
    assert result.ok and result.kept == {1: witness}


@pytest.mark.parametrize(("edit", "reason"), [
    (lambda lines: lines.__setitem__(1, ""), "empty line inside the log"),
    (lambda lines: lines.__setitem__(1, "{not json"), "not JSON"),
    (lambda lines: lines.__setitem__(1, "[1, 2]"), "not an audit record"),
    (lambda lines: lines.__setitem__(1, '{"seq": 2}'), "not an audit record"),
    (lambda lines: lines.pop(1), "sequence 3 where 2 was expected (records reordered or removed?)"),
    (lambda lines: lines.__setitem__(1, lines[1].replace('"s1"', '"evil"')),
     "hash does not match the record's content (record edited or re-sealed)"),
])
def test_each_kind_of_damage_is_named_at_its_line(edit: Any, reason: str) -> None:
    lines = _chain(4)
    edit(lines)
    result = verify_lines(iter(lines), KEY)
    assert (result.ok, result.records, result.bad_at, result.reason) == (False, 1, 2, reason)
    assert result.bad_record == lines[1]


def test_a_record_linked_to_the_wrong_predecessor_is_a_broken_chain() -> None:
    lines = _chain(2)
    record = json.loads(lines[1])
    record["prev"] = "f" * 64
    record["hash"] = record_hash(record, KEY)  # re-sealed with the key: only the link is wrong
    result = verify_lines(iter([lines[0], canonical(record)]), KEY)
    assert (result.ok, result.bad_at) == (False, 2)
    assert result.reason == "prev does not match the previous record's hash (chain broken)"


def test_keyed_records_without_a_key_or_with_another_key_fail() -> None:
    lines = _chain(2)
    no_key = verify_lines(iter(lines), None)
    assert (no_key.ok, no_key.bad_at) == (False, 1)
    assert no_key.reason == "keyed record but no audit key to check it (set HEAL_AUDIT_KEY)"
    wrong = verify_lines(iter(lines), b"another key")
    assert (wrong.ok, wrong.bad_at) == (False, 1) and "re-sealed" in wrong.reason
    assert verify_lines(iter(_chain(2, key=None)), None).ok  # old unkeyed records still verify


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_verify_file_checks_the_anchored_head(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    missing = verify_file(path, KEY, anchor=(2, "h"))
    assert (missing.ok, missing.records, missing.bad_at) == (False, 0, 1)
    assert missing.reason == ("the file is missing, but its head was anchored at record 2 "
                              "(deleted?)")
    assert verify_file(path, KEY, anchor=(0, "")).ok
    assert verify_file(path, KEY) == Verification(True, 0)

    lines = _chain(3)
    _write(path, lines)
    hashes = [json.loads(line)["hash"] for line in lines]
    assert verify_file(path, KEY).records == 3
    assert verify_file(path, KEY, anchor=(3, hashes[2])).ok
    assert verify_file(path, KEY, anchor=(1, hashes[0])).ok
    short = verify_file(path, KEY, anchor=(4, "x"))
    assert (short.ok, short.records, short.bad_at) == (False, 3, 4)
    assert short.reason == ("the file ends at record 3, but its head was anchored at record 4 "
                            "(truncated?)")
    resealed = verify_file(path, KEY, anchor=(2, hashes[0]))
    assert (resealed.ok, resealed.records, resealed.bad_at) == (False, 1, 2)
    assert resealed.reason == "record 2 differs from the anchored head (the chain was re-sealed)"
    # a broken chain is reported as such, whatever the anchor says
    _write(path, [lines[0], lines[2]])
    broken = verify_file(path, KEY, anchor=(3, hashes[2]))
    assert (broken.ok, broken.bad_at) == (False, 2) and "sequence" in broken.reason


def test_verify_file_shows_the_bad_line_as_it_is_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = _chain(2)
    path.write_text(lines[0] + "\n" + "{broken  \t\n" + lines[1] + "\n", encoding="utf-8")
    result = verify_file(path, KEY)
    assert (result.ok, result.bad_at, result.reason) == (False, 2, "not JSON")
    assert result.bad_record == "{broken  \t"


def test_verify_file_finds_the_key_beside_the_file_or_in_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "audit.jsonl"
    _write(path, _chain(2))
    assert verify_file(path).reason.startswith("keyed record but no audit key")
    (tmp_path / "audit.key").write_bytes(KEY + b"\n")
    assert verify_file(path).ok
    (tmp_path / "audit.key").write_bytes(b"wrong" * 8)  # another key (a short one is refused)
    assert not verify_file(path).ok
    monkeypatch.setenv("HEAL_AUDIT_KEY", KEY.decode())
    assert verify_file(path).ok  # the environment wins over the file beside


def test_check_head(tmp_path: Path) -> None:
    lines = _chain(3)
    good = verify_lines(iter(lines), KEY)
    hashes = good.hashes
    assert check_head(good, (3, hashes[2]), "the table") is good
    assert check_head(good, (0, "anything"), "the table") is good
    bad = Verification(False, 1, 2, "chain broken")
    assert check_head(bad, (9, "x"), "the table") is bad
    short = check_head(good, (5, "x"), "the table")
    assert (short.ok, short.records, short.bad_at) == (False, 3, 4)
    assert short.reason == ("the table ends at record 3, but its head was anchored at "
                            "record 5 (truncated or deleted?)")
    gone = check_head(Verification(True, 0), (1, "x"), "the file")
    assert gone.reason == ("the file is missing, but its head was anchored at record 1 "
                           "(truncated or deleted?)")
    differs = check_head(good, (2, hashes[1][::-1]), "the table")
    # nothing before the first anchor that differs is vouched for (the key re-sealed it)
    assert (differs.ok, differs.records, differs.bad_at) == (False, 0, 2)
    assert differs.reason == ("record 2 of the table differs from the anchored head (the chain "
                              "was re-sealed at one of records 1..2)")
    after = check_head(good, (3, hashes[2][::-1]), "the table", vouched=2)
    assert (after.records, after.bad_at) == (2, 3)
    assert after.reason == ("record 3 of the table differs from the anchored head (the chain "
                            "was re-sealed at record 3); record 2 matches its anchor")


def _table_witnessing(refs: list[dict[str, Any]]) -> Verification:
    prev: dict[str, Any] | None = None
    lines = []
    for ref in refs:
        prev = audit_mod._seal(prev, "k", "s", {}, None, ref)
        lines.append(canonical(prev))
    return verify_lines(iter(lines), None)


def test_cross_check_finds_a_file_record_the_table_witnessed(tmp_path: Path) -> None:
    file_result = verify_lines(iter(_chain(2)), KEY)
    h = file_result.hashes
    other = {"log": "other-host:/x", "seq": 7, "hash": "z"}
    table = _table_witnessing([{"log": "L", "seq": 1, "hash": h[0]}, other,
                               {"log": "L", "seq": 2, "hash": h[1]}])
    assert cross_check(file_result, table, "L") == Verification(True, 2)
    assert cross_check(file_result, table, "nobody") == Verification(True, 0)

    beyond = _table_witnessing([{"log": "L", "seq": 1, "hash": h[0]},
                                {"log": "L", "seq": 3, "hash": "q"}])
    result = cross_check(file_result, beyond, "L")
    assert (result.ok, result.records, result.bad_at) == (False, 1, 3)
    assert result.reason == ("the table names file record 3, which the file no longer has "
                             "(truncated or deleted)")
    edited = _table_witnessing([{"log": "L", "seq": 2, "hash": h[0]}])
    result = cross_check(file_result, edited, "L")
    assert (result.ok, result.records, result.bad_at) == (False, 0, 2)
    assert result.reason == ("file record 2 differs from the one the table witnessed (edited "
                             "or re-sealed)")
    zero = _table_witnessing([{"log": "L", "seq": 0, "hash": h[0]}])
    assert not cross_check(file_result, zero, "L").ok
    # each chain's own failure is reported on its own, not twice
    assert cross_check(Verification(False, 0, 1, "x"), beyond, "L") == Verification(True, 0)
    assert cross_check(file_result, Verification(False, 0, 1, "x"), "L") == Verification(True, 0)


def test_read_anchor_lists_the_marks_and_the_head_in_order(tmp_path: Path) -> None:
    settings = _settings(tmp_path)

    class Client:
        def __init__(self, raw: dict[Any, Any] | None) -> None:
            self.raw, self.asked = raw, ""

        def hgetall(self, name: str) -> dict[Any, Any] | None:
            self.asked = name
            return self.raw

    client = Client({b"head": b'{"seq": 40, "hash": "hh"}', b"32": b"h32", "16": "h16",
                     b"junk": b"zz"})
    assert read_anchor(client, settings, "L") == [(16, "h16"), (32, "h32"), (40, "hh")]
    assert client.asked == "heal:audit:head:L" == audit_mod.head_key(settings, "L")
    assert read_anchor(Client(None), settings, "L") == []


def test_file_log_id_is_the_stored_id_else_host_and_absolute_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert file_log_id(Path("a.jsonl")) == f"{socket.gethostname()}:{tmp_path.resolve()}/a.jsonl"
    log = AuditLog(_settings(tmp_path), path=tmp_path / "a.jsonl", anchored=False)
    log.append("k", "s")
    stored = (tmp_path / "a.jsonl.id").read_text().strip()
    assert len(stored) == 32 and file_log_id(Path("a.jsonl")) == stored == log.log_id()


def test_the_last_record_of_a_large_log_is_read_from_its_end(tmp_path: Path) -> None:
    log = AuditLog(_settings(tmp_path), anchored=False)
    big = "x" * 20_000  # longer than the tail block: several blocks are read back
    first = log.append("k", "s", {"big": big})
    second = log.append("k", "s", {"big": big})
    assert (first["seq"], second["seq"]) == (1, 2) and second["prev"] == first["hash"]
    third = log.append("k", "s")
    assert third["prev"] == second["hash"] and third["data"] == {}
    assert verify_file(log.path).records == 3


def test_a_torn_line_without_newline_is_moved_aside_whole(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = AuditLog(_settings(tmp_path), anchored=False)
    first = log.append("k", "s", {"n": 1})
    with log.path.open("ab") as fh:
        fh.write(b'{"seq": 2, "tor')
    with caplog.at_level(logging.WARNING, logger="heal.audit"):
        second = log.append("k", "s", {"n": 2})
    assert "the last line was torn" in caplog.text
    assert (f"its 15 bytes were moved to {log.path}.torn and the chain goes on from record 1"
            in caplog.text)
    assert second["seq"] == 2 and second["prev"] == first["hash"]
    torn = log.path.with_name("audit.jsonl.torn").read_bytes()
    assert torn == b'{"seq": 2, "tor\n'
    assert verify_file(log.path).ok and verify_file(log.path).records == 2


@pytest.mark.parametrize("line", [b'{"seq": "two", "hash": "h"}', b'{"seq": 2}', b'[2]'])
def test_a_last_line_that_is_json_but_no_record_is_torn(tmp_path: Path, line: bytes) -> None:
    log = AuditLog(_settings(tmp_path), anchored=False)
    log.append("k", "s")
    with log.path.open("ab") as fh:
        fh.write(line + b"\n")
    assert log.append("k", "s")["seq"] == 2
    assert log.path.with_name("audit.jsonl.torn").read_bytes() == line + b"\n"


def test_a_log_whose_only_line_is_torn_starts_over(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    log = AuditLog(_settings(tmp_path), anchored=False)
    log.path.write_bytes(b'{"seq": 1, "ha')
    with caplog.at_level(logging.WARNING, logger="heal.audit"):
        assert log.append("k", "s")["seq"] == 1
    assert "the chain goes on from record 0" in caplog.text
    assert verify_file(log.path).records == 1


def test_the_audit_key_is_made_once_private_and_then_reused(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    home = tmp_path / "home"
    key = audit_key(_settings(home))
    path = home / "audit.key"
    assert len(key) == 64 and path.read_bytes().strip() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert audit_key(_settings(home)) == key
    monkeypatch.setenv("HEAL_AUDIT_KEY", "from-env-" + "e" * 32)
    assert audit_key(_settings(home)) == b"from-env-" + b"e" * 32


def test_an_unreadable_key_is_an_audit_error(tmp_path: Path) -> None:
    (tmp_path / "audit.key").mkdir()  # a directory where the key file should be
    with pytest.raises(AuditError, match="set HEAL_AUDIT_KEY or fix the file"):
        audit_key(_settings(tmp_path))


def test_an_unwritable_log_refuses_the_append(tmp_path: Path) -> None:
    log = AuditLog(_settings(tmp_path), path=tmp_path / "dir-not-file", anchored=False)
    log.path.mkdir()
    with pytest.raises(AuditError) as info:
        log.append("k", "s")
    assert str(info.value).startswith(f"audit log {log.path}: cannot append (")
    assert str(info.value).endswith("); nothing is applied until it can (free space or fix "
                                    "the file)")


def test_data_that_cannot_be_stored_as_json_is_refused_before_writing(tmp_path: Path) -> None:
    log = AuditLog(_settings(tmp_path), anchored=False)
    entry = log.append("k", "s", {"path": Path("/p"), "n": 1})
    assert entry["data"] == {"path": "/p", "n": 1}
    assert json.loads(log.path.read_text())["data"] == {"path": "/p", "n": 1}
    assert stat.S_IMODE(os.stat(log.path).st_mode) == 0o600
