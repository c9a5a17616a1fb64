"""``heal audit verify``: check the hash chain of the audit log (file and PostgreSQL)."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.console import dump_json
from pipeline.errors import ConfigError, StateHomeUnusable
from pipeline.guardrails._connect import open_database
from pipeline.guardrails.audit import (
    FILE_NAME,
    KEY_ENV,
    KEY_FILE,
    SEAL_MISMATCH,
    TABLE_LOG,
    WITH_DATABASE,
    AuditError,
    AuditLog,
    Verification,
    adopted_log_id,
    anchor_client,
    anchored_heads,
    check_heads,
    check_tail,
    cross_check,
    displaced,
    head_of,
    id_file,
    keyed_seals,
    legacy_log_id,
    others_text,
    read_anchor,
    read_locator,
    read_log_id,
    read_retired,
    retired_key,
    sealed_with_another_key,
    verify_database,
    verify_file,
    verify_key,
)
from pipeline.homedir import create_private_file


def register(sub: Any) -> None:
    parser = sub.add_parser("audit", help="the hash-chained audit log")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    verify = verbs.add_parser("verify", help="detect tampering; exit 1 at the first bad record")
    verify.add_argument("--file-only", action="store_true",
                        help="check only the chain of $HEAL_HOME/audit.jsonl: neither "
                             "PostgreSQL nor the anchored heads (a truncated file passes)")
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.set_defaults(func=run_verify)
    restart = verbs.add_parser(
        "restart", help="start a new audit log here on purpose (the old one lost or "
                        "damaged), recording the retirement in Redis and the audit_log table")
    restart.add_argument("--reason", required=True,
                         help="why the log is restarted (kept in the audit.restart record)")
    restart.set_defaults(func=run_restart)


def _no_log(witnessed: bool, file_only: bool) -> Verification:
    """The verdict on a log file that does not exist and that no anchored head says was
    written: a home that never audited anything, when a witness was read (Redis or
    PostgreSQL, neither anchoring a head); with none read, a deleted log cannot be told from
    one never written, so nothing was verified (exit 1)."""
    if witnessed:
        return Verification(True, 0, reason="no audit log yet (the file does not exist and "
                                            "no witness anchored a head of it)")
    todo = ("run heal audit verify without --file-only" if file_only else
            "make Redis or PostgreSQL reachable (see the skipped lines) and run it again")
    return Verification(False, 0, 0, "the file does not exist, and no witness was read (the "
                                      "heads anchored in Redis and PostgreSQL), so a deleted "
                                      f"log cannot be told from one never written; {todo}",
                        verdict="NOT CHECKED")


def _first_seal_hint(result: Verification, path: Path) -> Verification:
    """``result``, its reason saying which key to try when the very first record already
    fails its seal: no good record at all is what a key other than the writer's gives
    (HEAL_AUDIT_KEY set on a log audit.key sealed, or the other way round)."""
    if result.ok or result.bad_at is None or result.reason != SEAL_MISMATCH:
        return result
    if result.bad_at > 1:
        return _key_changed_hint(result, path)
    first_keyed, matching = keyed_seals(path, verify_key(path))
    if not first_keyed:  # a record made before keys: no key to get wrong
        return result
    beside = path.parent / KEY_FILE
    used = f"{KEY_ENV} (set)" if os.environ.get(KEY_ENV) else str(beside)
    if matching:
        return replace(result, reason=(
            f"{result.reason}; {matching} later keyed record(s) verify with the key used "
            f"({used}), so the key is right for them: record 1 was edited, or sealed with "
            "another key before the key changed; keep the file as evidence, move it aside so "
            f"heal starts a new chain, and give every heal command the same {KEY_ENV}"))
    if os.environ.get(KEY_ENV):
        hint = (f"{KEY_ENV} is set and used instead of {beside}" if beside.exists() else
                f"it was checked with {KEY_ENV}")
        todo = (f"if heal wrote it with {beside}, unset {KEY_ENV} (or set it to that file's "
                "content) and verify again" if beside.exists() else
                f"verify with the {KEY_ENV} heal wrote it with (the one the workers use)")
    else:
        hint = f"it was checked with {beside}"
        todo = f"if heal wrote it with {KEY_ENV} set, verify with the same {KEY_ENV}"
    reason = (f"{result.reason}; no record matches its seal, so the key may be the wrong one "
              f"({hint}): {todo}")
    return replace(result, reason=reason)


def _key_changed_hint(result: Verification, path: Path) -> Verification:
    """``result`` (record N > 1 fails its seal), its reason saying that the key changed at
    record N when every record from N on fails its seal but still names the one before it
    (:func:`sealed_with_another_key`): records appended by a heal holding another key, not
    an edit (an edit breaks the links after it)."""
    first = int(result.bad_at or 0)
    n = sealed_with_another_key(path, verify_key(path), first)
    if not n:
        return result
    if n == 1:
        what = (f"record {first}, the last, fails its seal though it names the record before "
                "as heal writes it: edited, or appended by")
    else:
        what = (f"records {first}..{first + n - 1} each fail their seal though each names the "
                "record before as heal writes it (an edit breaks the links after it), so the "
                f"key likely changed at record {first}: they were appended by")
    reason = (f"{result.reason}; {what} a heal command holding another key (one run without "
              f"the {KEY_ENV} the others use makes its own {path.parent / KEY_FILE}, or the "
              f"other way round). Records before {first} verify with this key; if the key "
              "changed, keep the file as evidence, move it aside so heal starts a new chain, "
              f"and give every heal command the same {KEY_ENV}")
    return replace(result, reason=reason)


def _describe(name: str, result: Verification) -> str:
    if result.ok and result.reason:
        return f"{name}: ok, {result.reason}"
    if result.ok:
        return f"{name}: ok, {result.records} record(s), chain intact"
    if not result.bad_at:  # nothing was read: no record to name
        return f"{name}: {result.verdict}: {result.reason}"
    text = (f"{name}: {result.verdict} at record {result.bad_at} (after {result.records} "
            f"good): {result.reason}")
    return f"{text}\n  {result.bad_record[:300]}" if result.bad_record else text


def _witness_db(settings: Settings, skipped: list[str]) -> Any:
    """PostgreSQL (its anchors and the audit_log table), or None with the reason in
    ``skipped``: the file alone still proves something.

    Raises:
        StateHomeUnusable: HEAL_HOME cannot be created (refused as by every command).
    """
    try:
        return open_database(settings)
    except StateHomeUnusable:
        raise
    except Exception as exc:  # noqa: BLE001 - an EngineError, or the storage layer missing
        # or misconfigured
        skipped.append(f"postgres: skipped ({exc})")
    return None


def _pg_anchor(db: Any, log_id: str) -> tuple[int, str] | None:
    """The file's head anchored in PostgreSQL's ``audit_anchor``."""
    try:
        rows = db.fetch("SELECT seq, hash FROM audit_anchor WHERE log = $1", log_id)
    except Exception:  # noqa: BLE001 - a database migrated before the anchors existed
        return None
    return (int(rows[0]["seq"]), str(rows[0]["hash"])) if rows else None


def _redis_anchors(settings: Settings, log_id: str
                   ) -> tuple[dict[str, list[tuple[int, str]]], str]:
    """What Redis (the configured or the embedded one) anchors of the file and the table:
    their heads and marks, by log id; and why Redis was skipped ("" when it was read)."""
    try:
        client = anchor_client(settings)
        return {name: read_anchor(client, settings, name) for name in (log_id, TABLE_LOG)}, ""
    except StateHomeUnusable:  # no witness and no log can be there: refused (exit 2)
        raise
    except Exception as exc:  # noqa: BLE001 - HealError, redis-py's, a bad value: the
        # other witnesses remain
        return {}, f"redis anchors: skipped ({exc})"


def _check_table(db: Any, heads: list[tuple[int, str]], file_result: Verification,
                 log_id: str, results: dict[str, Verification], skipped: list[str]) -> None:
    """The audit_log table's chain, against Redis' anchors of it and against the file."""
    table = verify_database(db)
    table = check_heads(table, heads, "the audit_log table")
    results["postgres:audit_log"] = table
    if file_result.ok and table.ok:
        results["file vs table"] = cross_check(file_result, table, log_id)
        missing = unwitnessed(file_result, table, log_id)
        if missing:
            skipped.append(missing)
    else:  # (a chain that fails its own check cannot witness the other)
        skipped.append("file vs table: not checked (a chain above is broken)")


#: the kinds heal appends with the database whose table record, when PostgreSQL interrupted
#: the append, the retry writes (the stages' verdict and apply records included)
TABLE_WITNESSED = WITH_DATABASE | {"verdict", "apply"}


def unwitnessed(file_result: Verification, table: Verification, log_id: str) -> str:
    """The file records of :data:`TABLE_WITNESSED` kinds that no table record names, between
    the first and the last file record the table names (those past it are
    :func:`check_tail`'s), as a note ("" when there are none). "file vs table" checks that
    each table record finds its file record; this is the other way round. A note, not a
    failure: a PostgreSQL outage leaves such records until the parked events' retries write
    their table records, and ``heal apply`` or an approval during an outage leaves them for
    good (their records are logged, not retried)."""
    named = {int(r["file"].get("seq", 0)) for r in table.kept.values()
             if r["file"].get("log") == log_id}
    if not named:
        return ""
    missing = [seq for seq in range(min(named), min(max(named), len(file_result.kinds)) + 1)
               if seq not in named and file_result.kinds[seq - 1] in TABLE_WITNESSED]
    if not missing:
        return ""
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(Counter(
        file_result.kinds[seq - 1] for seq in missing).items()))
    shown = ", ".join(str(seq) for seq in missing[:5]) + (", ..." if len(missing) > 5 else "")
    return (f"file vs table: {len(missing)} file record(s) that heal writes with the database "
            f"have no audit_log table record ({kinds}; file seq {shown}): the table is short "
            "of them; if PostgreSQL was down just now, run heal audit verify again once the "
            "stages drained (their retries write them)")


def _check_tail(settings: Settings, log_id: str, path: Path,
                heads: list[tuple[int, str]], redis_head: bool,
                results: dict[str, Verification], skipped: list[str]) -> None:
    """The file's records past every anchored head (:func:`check_tail`): the anchors and
    the table records naming a file record vouch for it, nothing else does."""
    file_result = results[str(path)]
    table = results.get("postgres:audit_log")
    witnessed: set[int] | None = None
    if table is not None and table.ok:
        witnessed = {int(r["file"].get("seq", 0)) for r in table.kept.values()
                     if r["file"].get("log") == log_id}
    anchored = max([seq for seq, _ in heads] + list(witnessed or ()) + [0])
    checked, note = check_tail(file_result, anchored, witnessed, redis_head, f"the file {path}")
    if not checked.ok and redis_head:
        # a heal appending right now anchors its record just after writing it: read the
        # Redis head again before calling the record unanchored
        time.sleep(_SETTLE_S)
        fresh, _why = _redis_anchors(settings, log_id)
        later = [h for h in fresh.get(log_id, []) if h[0] > anchored]
        if later and check_heads(file_result, later, f"the file {path}", path).ok:
            anchored = max(seq for seq, _ in later)
            checked, note = check_tail(file_result, anchored, witnessed, redis_head,
                                       f"the file {path}")
    if not checked.ok:
        results[str(path)] = checked
    if note:
        skipped.append(note)


def _client(settings: Settings) -> Any:
    """The Redis the heads are anchored in, or None (why is reported by _redis_anchors)."""
    try:
        return anchor_client(settings)
    except StateHomeUnusable:
        raise
    except Exception:  # noqa: BLE001 - reported by _redis_anchors
        return None


def _unstored_id(path: Path, heads: dict[str, tuple[int, str]] | None,
                 skipped: list[str]) -> str:
    """The id of a log with no id file yet: the one heal adopts at its next append
    (:func:`adopted_log_id`; its legacy host and path when none fits, which the identity
    check then reports as anchoring nothing)."""
    legacy = legacy_log_id(path)
    chosen = adopted_log_id(path, heads) if path.exists() else legacy
    if chosen is None or chosen not in (heads or {}):
        return legacy
    if chosen != legacy:
        skipped.append(f"log id: {id_file(path)} does not exist yet; the anchors whose head "
                       f"this log holds are under {chosen} (written before HEAL_HOME moved "
                       "or its host was renamed), which heal stores there at its next append")
    return chosen


def _drop_retired(others: dict[str, tuple[int, str]], refs: dict[str, tuple[int, str]],
                  retired: dict[str, dict[str, Any]], log_id: str, skipped: list[str]) -> None:
    """Logs ``heal audit restart`` retired: named as such in a note, never a failure."""
    for name, why in retired.items():
        if name != log_id and name in others:
            del others[name]
            refs.pop(name, None)
            skipped.append(f"retired log: {_retired_text(name, why)}")


def _retired_logs(settings: Settings, client: Any, heads: dict[str, tuple[int, str]] | None,
                  results: dict[str, Verification]) -> dict[str, dict[str, Any]]:
    """The anchored logs retired by ``heal audit restart``: by its record in the audit_log
    table, or in Redis."""
    in_table = _restarts(results)
    retired: dict[str, dict[str, Any]] = {}
    for name in heads or {}:
        try:
            why = in_table.get(name) or read_retired(client, settings, name)
        except Exception:  # noqa: BLE001 - Redis failing: reported by _redis_anchors
            why = in_table.get(name)
        if why is not None:
            retired[name] = why
    return retired


def _check_identity(settings: Settings, path: Path, log_id: str, stored: bool,
                    heads: dict[str, tuple[int, str]], own_head: bool,
                    results: dict[str, Verification], skipped: list[str],
                    retired: dict[str, dict[str, Any]] | None = None) -> None:
    """What the witnesses hold of logs other than this one (``log_id``): a log of records
    that nothing anchors, while other logs are anchored, fails (NOT ANCHORED: its own
    anchors were not found, so a truncated log would pass); "file vs table" is "not checked"
    when no table record names this log but some name others; with the engines under
    HEAL_HOME (theirs alone), a missing log with another's anchors there fails; otherwise
    the other logs are named in a note, as not checked here."""
    refs: dict[str, tuple[int, str]] = {}
    own_refs = 0
    table = results.get("postgres:audit_log")
    if table is not None and table.ok:
        for record in table.kept.values():
            name, seq = str(record["file"].get("log")), int(record["file"].get("seq", 0))
            if name == log_id:
                own_refs += 1
            elif name not in refs or refs[name][0] < seq:
                refs[name] = (seq, str(record["file"].get("hash")))
    others = dict(refs)
    for name, head in heads.items():
        if name != log_id and (name not in others or others[name][0] < head[0]):
            others[name] = head
    _drop_retired(others, refs, retired or {}, log_id, skipped)
    if refs and not own_refs and "file vs table" in results:
        del results["file vs table"]
        skipped.append(f"file vs table: not checked: no audit_log record names this log (id "
                       f"{log_id}); its records name other logs: {others_text(refs)}")
    if not others:
        return
    if own_head or own_refs:
        skipped.append(f"other logs anchored in these engines, not checked here (each "
                       f"HEAL_HOME verifies its own): {others_text(others)}")
        return
    name = str(path)
    result = results[name]
    where = id_file(path)
    whose = (f"its id {log_id} (stored in {where})" if stored else
             f"the id it takes, {log_id} ({where} does not exist yet)")
    todo = (f"if HEAL_HOME was moved or its host renamed since heal last wrote this log, one "
            f"of them is its: write that id into {where} (one line, mode 0600) and verify "
            "again")
    embedded = settings.database_url is None and settings.redis_url is None
    if result.ok and result.records > 0:
        results[name] = replace(result, ok=False, bad_at=None, verdict="NOT ANCHORED", reason=(
            f"nothing anchors this log under {whose}, so its head was not checked (a "
            f"truncated log would pass), but the witnesses anchor other logs: "
            f"{others_text(others)}; {todo}; otherwise its anchors were wiped, or the log "
            "was truncated or replaced"))
    elif result.ok and embedded:
        results[name] = Verification(False, 0, verdict="TAMPERED", reason=(
            f"this log has no record and nothing is anchored under {whose}, but this "
            f"HEAL_HOME's own engines anchor other logs: {others_text(others)}: deleted, "
            f"with {where}? {todo[0].upper()}{todo[1:]}"))
    else:
        skipped.append(f"other logs anchored in these engines, none of them this one (id "
                       f"{log_id}): {others_text(others)}; if one was this HEAL_HOME's log, it "
                       "was deleted with its id file")


def _restarts(results: dict[str, Verification]) -> dict[str, dict[str, Any]]:
    """The ``audit.restart`` records of the audit_log table (when it verified), by the id
    each retired: a witness a file writer cannot forge."""
    table = results.get("postgres:audit_log")
    found: dict[str, dict[str, Any]] = {}
    if table is None or not table.ok:
        return found
    for seq, record in table.kept.items():
        data = record.get("data")
        if record.get("kind") == "audit.restart" and isinstance(data, dict) and \
                isinstance(data.get("retired"), str):
            found[data["retired"]] = {**data, "table_seq": seq, "ts": record.get("ts", "")}
    return found


def _retired_text(name: str, why: dict[str, Any]) -> str:
    where = (f"audit_log record {why['table_seq']}" if "table_seq" in why else
             "the record in Redis")
    return (f"{name} was retired by `heal audit restart` ({where}, {why.get('ts', '')}: "
            f"{str(why.get('reason', ''))[:200]!r}; new log {why.get('new')})")


def _check_place(settings: Settings, client: Any, db: Any, path: Path, log_id: str,
                 stored: str | None, results: dict[str, Verification],
                 skipped: list[str]) -> str | None:
    """The log this place (host and path) last anchored, against the log here: a log that
    does not continue it (:func:`displaced`), unless ``heal audit restart`` retired it, was
    deleted or truncated with its id file (TAMPERED). Returns the id the locator names when
    it is not this log's (reported here, not again among the other logs)."""
    if client is None:
        return None
    try:
        located = read_locator(client, settings, path)
    except Exception:  # noqa: BLE001 - Redis failing: reported by _redis_anchors
        return None
    if located is None or located == log_id:
        return None
    retired = _restarts(results).get(located) or read_retired(client, settings, located)
    if retired is not None:
        skipped.append(f"retired log: {_retired_text(located, retired)}")
        return located
    found = displaced(settings, client, db, path, stored or log_id)
    if found is None:
        return None
    name = str(path)
    result = results[name]
    where = id_file(path)
    if not result.ok:  # (the identity check already failed it): say which log lived here
        results[name] = replace(result, reason=(
            f"{result.reason}; this place ({legacy_log_id(path)}) last anchored the log "
            f"{found.located} up to record {found.head[0]} (the locator in Redis names it)"))
        return found.located
    held = result.records if path.exists() else None
    what = ("does not exist" if held is None else "has no record" if held == 0 else
            f"ends at record {held}" if held < found.head[0] else
            f"does not hold its head (record {found.head[0]} differs)")
    ident = (f"{where} names {stored}, which nothing anchors" if stored else
             f"{where} does not exist")
    results[name] = Verification(False, 0, verdict="TAMPERED", reason=(
        f"this place ({legacy_log_id(path)}) last anchored the log {found.located} up to "
        f"record {found.head[0]} (the locator in Redis names it), but the file {what} and "
        f"{ident}: deleted or truncated, and its id file deleted or rewritten? Restore the "
        f"log and {where} (id {found.located}) from a backup; if the log was restarted on "
        "purpose, that is done with `heal audit restart --reason TEXT`, which records it"))
    return found.located


def run_restart(args: argparse.Namespace) -> int:
    """``heal audit restart --reason TEXT``: retire this place's log (the one the locator
    names, else the id file's) and start a new one, recording it where a file writer cannot:
    an ``audit.restart`` record (file and table) naming the retired id, its head and the new
    id, a Redis record of the retirement, and the locator moved to the new id. The old log
    and id file, when present, are moved aside (kept as evidence), never deleted."""
    reason = " ".join(str(args.reason).split())
    if not reason:
        raise ConfigError("heal audit restart: --reason is empty; say why the audit log is "
                          "restarted (it is kept in the audit.restart record)")
    settings = Settings.from_env()
    path = settings.home / FILE_NAME
    skipped: list[str] = []
    db = _witness_db(settings, skipped)
    try:
        client = _client(settings)
        if client is None:
            _none, problem = _redis_anchors(settings, "")
            raise AuditError(
                f"heal audit restart: Redis cannot be reached ({problem or 'unreachable'}), "
                "so the retirement cannot be recorded where a file writer cannot change it; "
                "nothing was changed. Make HEAL_REDIS_URL (or the embedded Redis) reachable "
                "and run it again")
        try:
            stored = read_log_id(path)
        except ConfigError:
            stored = None  # an edited id file: moved aside below with the log
        located = read_locator(client, settings, path)
        retired = located or stored
        head = head_of(settings, client, db, retired) if retired else None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        moved = []
        for old in (path, id_file(path)):
            if old.exists():
                kept = old.with_name(f"{old.name}.retired-{stamp}")
                os.replace(old, kept)
                moved.append(str(kept))
        new_id = secrets.token_hex(16)
        create_private_file(id_file(path), new_id.encode() + b"\n")
        audit = AuditLog(settings, db=db, redis_client=client)
        audit.restart_of = retired
        data = {"retired": retired, "retired_head": head[0] if head else 0,
                "retired_hash": head[1] if head else None, "new": new_id,
                "place": legacy_log_id(path), "moved_aside": moved, "reason": reason}
        record = audit.append("audit.restart", retired or new_id, data)
        if retired:
            client.set(retired_key(settings, retired), json.dumps({
                **data, "ts": record.get("ts"), "file_seq": record["seq"]}))
    finally:
        if db is not None:
            db.close()
    for line in skipped:
        print(line)
    if retired:
        print(f"heal audit restart: retired the log {retired} (head "
              f"{head[0] if head else 0}) and started {new_id} in {path}; the retirement "
              "is recorded (audit.restart) in "
              + ("the audit_log table and Redis" if db is not None else "Redis"))
    else:
        print(f"heal audit restart: no earlier log was anchored here; started {new_id}")
    for aside in moved:
        print(f"  kept as evidence: {aside}")
    return 0


#: how long verify waits for a heal appending right now to anchor its record
_SETTLE_S = 0.5


#: the verdict when neither witness could be read: the head was not checked (exit 1)
_UNCHECKED = Verification(False, 0, verdict="NOT CHECKED", reason=(
    "head not checked: witnesses unreachable (neither PostgreSQL nor Redis could be read, "
    "see the skipped lines), so a truncated or re-sealed file passes the chain check above; "
    "make one reachable and run heal audit verify again"))


def _verify_all(args: argparse.Namespace, settings: Settings, path: Path, key: bytes | None,
                stored: str | None, db: Any, results: dict[str, Verification],
                skipped: list[str]) -> None:
    """Every check of ``heal audit verify``, into ``results`` and ``skipped``."""
    client = None if args.file_only else _client(settings)
    heads = None if args.file_only else anchored_heads(settings, client, db)
    log_id = stored or _unstored_id(path, heads, skipped)
    redis_heads, why = ({}, "") if args.file_only else _redis_anchors(settings, log_id)
    if why:
        skipped.append(why)
    file_result = _first_seal_hint(verify_file(path, key), path)
    # the file against every witness of its head: PostgreSQL's and Redis' anchors
    pg_head = _pg_anchor(db, log_id) if db is not None else None
    file_heads = ([pg_head] if pg_head else []) + redis_heads.get(log_id, [])
    file_result = check_heads(file_result, file_heads, f"the file {path}", path)
    results[str(path)] = file_result
    if db is not None:
        _check_table(db, redis_heads.get(TABLE_LOG, []), file_result, log_id, results,
                     skipped)
    if args.file_only:
        skipped.append("head not checked: --file-only (the heads anchored in Redis and "
                       "PostgreSQL were not read, so a truncated or re-sealed file can "
                       "pass here; run heal audit verify without it)")
    else:
        _check_tail(settings, log_id, path, file_heads, bool(redis_heads.get(log_id)),
                    results, skipped)
    if not path.exists() and results[str(path)].ok:  # (an anchored head would have failed)
        results[str(path)] = _no_log(db is not None or not (args.file_only or why),
                                     args.file_only)
    if args.file_only:
        return
    _check_identity(settings, path, log_id, stored is not None, heads or {},
                    bool(file_heads), results, skipped,
                    _retired_logs(settings, client, heads, results))
    _check_place(settings, client, db, path, log_id, stored, results, skipped)
    if db is None and why and path.exists():
        results["anchored heads"] = _UNCHECKED


def run_verify(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    path = settings.home / FILE_NAME
    # the key is read as on the writing side (refused unless the operator's own: exit 2), and
    # never made here: a key made now would call every keyed record re-sealed
    key = verify_key(path)
    stored = read_log_id(path)  # (like the key: one not the operator's own is refused)
    results: dict[str, Verification] = {}
    skipped: list[str] = []
    db = None if args.file_only else _witness_db(settings, skipped)
    try:
        _verify_all(args, settings, path, key, stored, db, results, skipped)
    finally:
        if db is not None:
            db.close()
    ok = all(r.ok for r in results.values())
    if args.json:
        dump_json({"ok": ok, "skipped": "; ".join(skipped), "logs": {
            name: {"ok": r.ok, "verdict": "ok" if r.ok else r.verdict, "records": r.records,
                   "bad_at": r.bad_at, "reason": r.reason,
                   "bad_record": r.bad_record} for name, r in results.items()}})
    else:
        for name, result in results.items():
            print(_describe(name, result))
        for line in skipped:
            print(line)
    return 0 if ok else 1
