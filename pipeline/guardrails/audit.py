"""The audit log: every decision (state change, breaker transition, vote, apply, rollback,
dead letter) appended as one JSON line under ``$HEAL_HOME/audit.jsonl`` and, when a database is
given, as a row of ``audit_log`` in PostgreSQL.

Each record carries the hash of the record before it (``prev``) and its own ``hash``, so
editing, deleting or reordering any record breaks the chain from that point on;
:func:`verify_file` / :func:`verify_database` find the first break. The file and the table
are two chains (each appended under its own lock: an exclusive ``flock`` for the file, a
PostgreSQL advisory lock for the table), so several workers, on one host or many, can
append concurrently.

Tamper evidence (issue 11, item 8):

* the hash is keyed: HMAC-SHA256 with ``HEAL_AUDIT_KEY`` or ``$HEAL_HOME/audit.key`` (0600,
  made at first use), so whoever can write the file cannot re-seal an edited chain
  (records written before the key existed carry no ``alg`` and keep their plain SHA-256,
  but only before the chain's first keyed record: an unkeyed record after it is a forged
  downgrade, :data:`DOWNGRADE`, which verify reports and no append chains onto);
* the file's head (seq, hash) is anchored outside it at every append: in Redis always (the
  configured one or the embedded one) and in PostgreSQL (``audit_anchor``) at every append
  made with a database, which covers every record before it; the table's own head is
  anchored in Redis too; and every table record written with a file record names that file
  record's (seq, hash): a truncated, deleted or re-sealed file or table no longer matches
  (:func:`verify_file`, :func:`check_head`, :func:`cross_check`); the file's anchors are
  kept under the log's own id (``audit.id`` beside it, :meth:`AuditLog.log_id`), which moves
  with HEAL_HOME and survives a renamed host (a log written before ids adopts its legacy
  host-and-path one); Redis also keeps, per place (host and path), the id last anchored
  there (:func:`displaced`), so a log deleted or truncated with its id file deleted or
  rewritten is refused, not given a new id (``heal audit restart`` is the recorded way);
* an append that fails raises :class:`AuditError`; the apply stage then applies nothing and
  says why (it audits its intent first). A torn last line (a crash mid-write) is moved to
  ``audit.jsonl.torn`` with a warning, and the chain goes on from the last whole record.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import Settings, audit_key_from_file, check_audit_key
from pipeline.errors import ConfigError, HealError, StateHomeFull
from pipeline.guardrails.actor import stamped
from pipeline.homedir import create_private_file, dir_mode, found_writable, home_write_error
from pipeline.trust.private import check_private

log = logging.getLogger("heal.audit")

GENESIS = "0" * 64
FILE_NAME = "audit.jsonl"
KEY_FILE = "audit.key"
KEY_ENV = "HEAL_AUDIT_KEY"
ALG = "hmac-sha256"
_TAIL_BLOCK = 8192


def env_key() -> bytes | None:
    """``HEAL_AUDIT_KEY`` as the chain's key (None when unset or empty).

    Raises:
        ConfigError: it is too short to be a secret (pipeline.config.check_audit_key).
    """
    value = os.environ.get(KEY_ENV)
    if not value:
        return None
    check_audit_key(value)
    return value.encode()


class AuditError(HealError):
    """The audit log cannot take a record (disk full, unwritable, PostgreSQL rejected it):
    heal refuses to act unaudited."""


class AuditChainUnusable(AuditError, ConfigError):
    """The chain cannot be extended here until the operator acts: the ``audit_log`` table's
    last row is not a record heal wrote (edited by hand), or the file was sealed with a key
    that is not here (``HEAL_AUDIT_KEY`` unset and no ``audit.key``). Appending would seal a
    record onto a head nobody can vouch for, or under a key the log never verifies with, so
    nothing is appended; the message says what to do. A command exits 2 (its environment or
    the table must change); a stage stops as for Redis's ACL refusal (``stops_stage``), its
    event left pending: neither dead-lettered nor parked for ever (``heal run`` keeps the
    command's status and says why it could not report)."""

    exit_code = 2
    stops_stage = True


#: key files found private, by their stat (the git check is a subprocess; a record is
#: appended for every decision)
_PRIVATE_KEYS: dict[Path, tuple[int, int, int, int]] = {}


def _check_key_file(path: Path) -> None:
    st = path.stat()
    stamp = (st.st_ino, st.st_mtime_ns, st.st_mode, st.st_uid)
    if _PRIVATE_KEYS.get(path) == stamp:
        return
    check_private(path, "audit key", if_tracked=(
        "a repository must not choose the key that makes the audit chain tamper-evident; "
        "remove it from git (git rm --cached), delete the file so heal makes a new one, and "
        f"set HEAL_HOME to a folder outside the repository or {KEY_ENV}"))
    _PRIVATE_KEYS[path] = stamp


def audit_key(settings: Settings, log_path: Path | None = None) -> bytes:
    """The chain's HMAC key: ``HEAL_AUDIT_KEY``, else ``$HEAL_HOME/audit.key`` (made 0600
    unless the log ``log_path``, by default ``$HEAL_HOME/audit.jsonl``, already holds keyed
    records: they were sealed with a key that is not here).

    Raises:
        AuditChainUnusable: no key is here, and the log was sealed with one (a shell without
            the HEAL_AUDIT_KEY the workers use): a new key would seal records the log then
            never verifies with; or ``audit.key`` is too short, a placeholder or not text
            (:func:`pipeline.config.audit_key_from_file`: an emptied key sealed the next
            record and broke the chain for good).
        AuditError: the key file cannot be read or made, or is not the operator's own
            (:func:`pipeline.trust.private.check_private`: tracked by git, another user's,
            writable by others: a repository shipping ``.heal/audit.key`` would know the key
            that makes the chain tamper-evident).
    """
    env = env_key()
    if env is not None:
        return env
    path = settings.home / KEY_FILE
    try:
        if path.exists():
            _check_key_file(path)
        else:
            _refuse_a_new_key(log_path or settings.home / FILE_NAME, path)
            path.parent.mkdir(mode=dir_mode(), parents=True, exist_ok=True)
            create_private_file(path, secrets.token_hex(32).encode())
        try:  # an emptied or damaged key would seal the next record and break the chain
            return audit_key_from_file(path.read_bytes(), path)
        except ConfigError as exc:  # (not OSError: that is below)
            raise AuditChainUnusable(str(exc)) from exc
    except AuditError:  # (AuditChainUnusable: a ConfigError, raised as it is)
        raise
    except ConfigError as exc:
        raise AuditError(str(exc)) from exc
    except OSError as exc:
        raise _full(exc, settings, "making the audit key", path) or AuditError(
            f"audit key {path}: {exc}; set {KEY_ENV} or fix the file") from exc


def _refuse_a_new_key(log_path: Path, key_path: Path) -> None:
    """Raise AuditChainUnusable when the last whole record of ``log_path`` is keyed: a key
    made now is not the one it was sealed with. A log of records made before keys (no
    ``alg``), or of nothing but a torn line, gets its first key."""
    try:
        with open(log_path, "rb") as fh:
            try:
                last = _last_record(fh, log_path)
            except HealError:  # a torn last line (the append repairs it): the one before
                fh.seek(max(0, fh.seek(0, os.SEEK_END) - _TAIL_BLOCK * 8))
                last = _last_whole_record(fh.read().splitlines()[:-1])
    except OSError:  # no log (or one the append reports as unreadable): nothing sealed
        return
    if last is not None and last.get("alg") != ALG and _holds_keyed(log_path):
        raise _downgraded(log_path, last)
    if last is None or last.get("alg") != ALG:
        return
    raise AuditChainUnusable(
        f"audit log {log_path} was sealed with a key that is not here: {KEY_ENV} is unset "
        f"and there is no {key_path}; nothing is appended (a new key would seal records the "
        f"log never verifies with). Set {KEY_ENV} to the key the log was sealed with (the one "
        "the workers use), or restore audit.key; if that key is lost, move the log aside "
        "(heal starts a new chain) and keep it as evidence")


#: why a record fails the chain: it carries no ``alg`` (plain SHA-256, which anyone can
#: compute) after records sealed with the key; heal never writes one there
DOWNGRADE = ("unkeyed record after keyed ones (a downgrade): it carries no alg, so it was "
             "sealed without the audit key, which heal never does once a record is keyed "
             "(forged by whoever could write the log?)")


def _holds_keyed(path: Path) -> bool:
    """Whether the log ``path`` holds a keyed record. Read whole, line by line: called only
    when its last record is unkeyed, which a log heal writes shows once (a log of records
    made before keys, at its first keyed append) and a forged one every time."""
    try:
        with open(path, "rb") as fh:
            for line in fh:
                if b'"alg"' not in line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and record.get("alg") == ALG:
                    return True
    except OSError:
        return False
    return False


def _downgraded(where: Path | str, last: dict[str, Any]) -> AuditChainUnusable:
    """The refusal to append onto an unkeyed last record that follows keyed ones."""
    return AuditChainUnusable(
        f"{where}: its last record (seq {last.get('seq')}) carries no key, yet records before "
        f"it are keyed: {DOWNGRADE.split(': ', 1)[0]}; nothing is appended onto it. Run "
        "`heal audit verify` to see the record, keep the log as evidence and find who wrote "
        "it; then remove the record (or move the log aside so heal starts a new chain)")


def _last_whole_record(lines: list[bytes]) -> dict[str, Any] | None:
    """The last line of ``lines`` that is a JSON object (None when none is)."""
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            return record
    return None


def _full(exc: OSError, settings: Settings, what: str, path: Path) -> AuditError | None:
    """The AuditError for a write under HEAL_HOME that found no space left, in the words of
    pipeline.homedir (free space, or move HEAL_HOME; not "fix the file"); None otherwise."""
    translated = home_write_error(exc, settings.home, what, path)
    if not isinstance(translated, StateHomeFull):
        return None
    return AuditError(f"{translated}; nothing is applied until the audit log can be written")


#: free bytes :meth:`AuditLog.ensure_room` asks of the audit log's file system
ROOM_BYTES = 64 * 1024


def legacy_log_id(path: Path) -> str:
    """The name heal gave a file's anchors before logs had an id of their own: host and
    absolute path (what a log written then is anchored under; adopted as its id)."""
    return f"{socket.gethostname()}:{path.resolve()}"


def id_file(path: Path) -> Path:
    """Where the id of the log ``path`` is kept: ``audit.id`` beside ``audit.jsonl``, and
    ``<name>.id`` beside a log of another name (two logs of one folder never share one)."""
    return path.with_name("audit.id" if path.name == FILE_NAME else path.name + ".id")


#: longest id heal reads from an id file (a legacy id holds an absolute path)
_ID_MAX = 4096


def read_log_id(path: Path) -> str | None:
    """The id stored for the log ``path`` (None when its id file does not exist).

    Raises:
        ConfigError: the id file is not the operator's own (tracked by git, another user's,
            writable by others), cannot be read, or does not hold one id (one printable line).
    """
    where = id_file(path)
    try:
        st = where.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"audit log id {where} cannot be read: {exc.strerror or exc}; fix "
                          "its permissions") from exc
    stamp = (st.st_ino, st.st_mtime_ns, st.st_mode, st.st_uid)
    if _PRIVATE_IDS.get(where) != stamp:
        check_private(where, "audit log id", if_tracked=(
            "a repository must not choose the name the audit log's anchors are kept under; "
            "remove it from git (git rm --cached) and set HEAL_HOME to a folder outside the "
            "repository"))
    try:
        text = where.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"audit log id {where} cannot be read: {exc}") from exc
    if not text or len(text) > _ID_MAX or not text.isprintable():
        raise ConfigError(
            f"audit log id {where} does not hold one id (one printable line of at most "
            f"{_ID_MAX} characters): it was edited; put back the id the log's anchors are "
            "kept under (heal audit verify lists the anchored ones)")
    if not is_log_id(text):
        raise ConfigError(
            f"audit log id {where} holds {text[:80]!r}, which is not an id heal gives a log "
            "(32 hex digits, or a legacy <host>:<absolute path>; "
            f"{TABLE_LOG!r} names the audit_log table's anchors): it was edited; put back "
            "the id the log's anchors are kept under (heal audit verify lists the anchored "
            "ones)")
    _PRIVATE_IDS[where] = stamp
    return text


#: id files found private and well formed, by their stat
_PRIVATE_IDS: dict[Path, tuple[int, int, int, int]] = {}

_NEW_ID = re.compile(r"[0-9a-f]{32}")


def is_log_id(text: str) -> bool:
    """Whether ``text`` has the shape of a file log's id: 32 hex digits (what heal makes), or
    the legacy ``<host>:<absolute path>``; never :data:`TABLE_LOG`, the table's own name."""
    if _NEW_ID.fullmatch(text):
        return True
    host, sep, where = text.partition(":")
    return bool(host) and bool(sep) and where.startswith("/") and text != TABLE_LOG


# -- the locator: which log id this place (host and absolute path) last anchored ----------
#
# The id file travels with the log, so whoever can write HEAL_HOME can delete both, or write
# a fresh id beside a truncated log: the new id has no anchors, and the old id's anchors
# look like another log's. At every anchored append heal also records in Redis, under the
# place the log lives (:func:`legacy_log_id`), the id it anchored; a log here that does not
# continue the id this place last anchored (its head is not in the log) was deleted or
# truncated. After a move the locator of the new place is written at the first append, and
# the old place's is dropped (so a new home made there later is not blamed); ``heal audit
# restart`` is the deliberate fresh start, which Redis and the table record.


def locator_key(settings: Settings, path: Path) -> str:
    """The Redis key naming the log id this place (host and absolute path) last anchored."""
    return settings.key("audit", "locator", legacy_log_id(path))


def retired_key(settings: Settings, log_id: str) -> str:
    """The Redis key recording that ``heal audit restart`` retired the log ``log_id``."""
    return settings.key("audit", "retired", log_id)


def _place_key(settings: Settings, log_id: str) -> str:
    return settings.key("audit", "place", log_id)


#: Set the locator of this place (KEYS[1]) to the id (ARGV[1]); when it changes, the place
#: the id was last seen at (KEYS[2]: "host:path") whose path differs (a move) loses its
#: locator if it still names this id. ARGV[2]: this place, ARGV[3]: this path, ARGV[4]: the
#: locator keys' prefix.
_LOCATE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
local old = redis.call('GET', KEYS[2])
if old and old ~= ARGV[2] then
  local i = string.find(old, ':', 1, true)
  if i and string.sub(old, i + 1) ~= ARGV[3] then
    local k = ARGV[4] .. old
    if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k) end
  end
end
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""


def write_locator(client: Any, settings: Settings, path: Path, log_id: str) -> None:
    """Record that this place's log is ``log_id`` (:data:`_LOCATE`)."""
    place = legacy_log_id(path)
    client.eval(_LOCATE, 2, locator_key(settings, path), _place_key(settings, log_id),
                log_id, place, str(path.resolve()), settings.key("audit", "locator", ""))


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def read_locator(client: Any, settings: Settings, path: Path) -> str | None:
    """The log id this place last anchored (None: none recorded, or no Redis)."""
    if client is None:
        return None
    return _text(client.get(locator_key(settings, path)))


def read_retired(client: Any, settings: Settings, log_id: str) -> dict[str, Any] | None:
    """What ``heal audit restart`` recorded in Redis when it retired ``log_id`` (None: not
    retired there)."""
    if client is None:
        return None
    raw = _text(client.get(retired_key(settings, log_id)))
    if not raw:
        return None
    try:
        found = json.loads(raw)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def head_of(settings: Settings, client: Any, db: Any, log_id: str) -> tuple[int, str] | None:
    """The highest head anchored for ``log_id`` in Redis and PostgreSQL (None: none read)."""
    found: list[tuple[int, str]] = []
    if client is not None:
        try:
            found += read_anchor(client, settings, log_id)
        except Exception as exc:  # noqa: BLE001 - PostgreSQL's remains
            log.debug("audit anchor of %s not read from Redis: %s", log_id, exc)
    if db is not None:
        try:
            rows = db.fetch("SELECT seq, hash FROM audit_anchor WHERE log = $1", log_id)
            found += [(int(row["seq"]), str(row["hash"])) for row in rows]
        except Exception as exc:  # noqa: BLE001 - down, or migrated before the anchors
            log.debug("audit anchor of %s not read from PostgreSQL: %s", log_id, exc)
    return max(found) if found else None


@dataclass(frozen=True)
class Displaced:
    """The log this place last anchored (``located``, its head ``head``), which the log here
    does not continue."""

    located: str
    head: tuple[int, str]


def displaced(settings: Settings, client: Any, db: Any, path: Path, log_id: str | None,
              spare: str | None = None) -> Displaced | None:
    """The anchored log this place's locator names when the log ``path`` (under ``log_id``;
    None: no id file) does not continue it: the locator names another id, anchored, whose
    head the log does not hold, while ``log_id`` has no anchors of its own and the located
    log was not retired by ``heal audit restart`` (``spare``: the one being retired now).
    That is a log deleted or truncated with its id file deleted or rewritten. None otherwise,
    or when Redis (which holds the locator) was not given."""
    located = read_locator(client, settings, path)
    if located is None or located in (log_id, spare):
        return None
    head = head_of(settings, client, db, located)
    if head is None or head[0] < 1:
        return None
    if _record_hashes(path).get(head[0]) == head[1]:
        return None
    if log_id is not None and head_of(settings, client, db, log_id) is not None:
        return None  # a log with anchors of its own: they check it
    # (decides when the restart's first append anchored nothing, e.g. PostgreSQL unreachable
    # and Redis dropping the script: the locator still names the retired log)
    if read_retired(client, settings, located) is not None:
        return None
    return Displaced(located, head)


def displaced_error(path: Path, log_id: str | None, found: Displaced) -> AuditChainUnusable:
    """The refusal to append to a log that does not continue the one its place anchored."""
    where = id_file(path)
    held = _record_hashes(path)
    what = (f"holds {len(held)} record(s) and not that head" if held else
            "has no record" if path.exists() else "does not exist")
    ident = (f"{where} names {log_id}, which nothing anchors" if log_id is not None and
             where.exists() else f"{where} does not exist")
    return AuditChainUnusable(
        f"audit log {path}: this place ({legacy_log_id(path)}) last anchored the log "
        f"{found.located} up to record {found.head[0]}, but the log here {what} and {ident}: "
        "the log was deleted or truncated and its id file deleted or rewritten; nothing is "
        "appended, since a new chain would hide it. Run `heal audit verify`, and restore the "
        f"log and {where} (id {found.located}) from a backup; to start a new log "
        "deliberately, run `heal audit restart --reason TEXT`, which records the retirement "
        "where a file writer cannot")


def _record_hashes(path: Path) -> dict[int, str]:
    """The hash of every record of the log ``path``, by seq (lines that are not records are
    skipped: verify judges them)."""
    held: dict[int, str] = {}
    try:
        with open(path, "rb") as fh:
            for line in fh:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and type(record.get("seq")) is int:
                    held[record["seq"]] = str(record.get("hash"))
    except OSError:
        pass
    return held


def anchored_heads(settings: Settings, client: Any, db: Any
                   ) -> dict[str, tuple[int, str]] | None:
    """The highest head ``(seq, hash)`` anchored for every file log id in PostgreSQL's
    ``audit_anchor`` (``db``) and in Redis (``client``); None when neither was read."""
    heads: dict[str, tuple[int, str]] = {}
    read = False

    def keep(name: str, seq: int, digest: str) -> None:
        if name != TABLE_LOG and (name not in heads or heads[name][0] < seq):
            heads[name] = (seq, digest)

    if db is not None:
        try:
            rows = db.fetch("SELECT log, seq, hash FROM audit_anchor")
            read = True
        except Exception as exc:  # noqa: BLE001 - down, or migrated before the anchors
            log.debug("audit anchors not read from PostgreSQL: %s", exc)
            rows = []
        for row in rows:
            keep(str(row["log"]), int(row["seq"]), str(row["hash"]))
    if client is not None:
        base = head_key(settings, "")
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in base) + "*"
        try:
            for name in client.scan_iter(match=pattern, count=1000):
                text = name.decode() if isinstance(name, bytes) else str(name)
                raw = client.hget(name, "head")
                if not raw:
                    continue
                try:
                    head = json.loads(raw)
                    keep(text[len(base):], int(head["seq"]), str(head["hash"]))
                except (ValueError, KeyError, TypeError):
                    continue
            read = True
        except Exception as exc:  # noqa: BLE001 - Redis down or refusing: PostgreSQL's
            log.debug("audit anchors not read from Redis: %s", exc)
    return heads if read else None


def adopted_log_id(path: Path, heads: dict[str, tuple[int, str]] | None) -> str | None:
    """The id a log ``path`` without an id file takes: a fresh random one for a log with no
    record; for a log with records (written before logs had ids, or whose id file was
    deleted), the legacy id (host and path) when it is anchored, when no anchor was read
    (``heads`` None) or when none exists at all; else the id whose highest anchored head the
    log still holds, unchanged (HEAL_HOME moved, or its host renamed, since the log was
    written under its legacy id). None when other logs are anchored and none of their heads
    is in this log: its own anchors cannot be told (truncated, or its id file deleted)."""
    held = _record_hashes(path)
    if not held:
        return secrets.token_hex(16)
    legacy = legacy_log_id(path)
    if heads is None or not heads or legacy in heads:
        return legacy
    matching = [(seq, name) for name, (seq, digest) in heads.items() if held.get(seq) == digest]
    return max(matching)[1] if matching else None


def unknown_id_error(path: Path, heads: dict[str, tuple[int, str]]) -> AuditChainUnusable:
    """The refusal to give the log ``path`` an id when none of the anchored ones is its."""
    return AuditChainUnusable(
        f"audit log {path} has no id file ({id_file(path)}), and none of the logs anchored "
        f"in Redis and PostgreSQL, {others_text(heads)}, has its head in it: its own anchors "
        "cannot be told (the log was truncated and its id file deleted?); "
        "nothing is appended, since a new id would leave its anchors unchecked. Run `heal "
        f"audit verify`, keep the log as evidence, and write this log's id into {id_file(path)} "
        "(one line, mode 0600); or move the log aside so heal starts a new chain")


def others_text(heads: dict[str, tuple[int, str]], limit: int = 5) -> str:
    """Up to ``limit`` anchored log ids with their heads, highest first."""
    ranked = sorted(heads.items(), key=lambda item: -item[1][0])
    text = ", ".join(f"{name} (head {seq})" for name, (seq, _digest) in ranked[:limit])
    return text + (f" and {len(ranked) - limit} more" if len(ranked) > limit else "")


def canonical(record: dict[str, Any]) -> str:
    """The exact text that is hashed and stored (sorted keys, no spaces, UTF-8)."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


def record_hash(record: dict[str, Any], key: bytes | None = None) -> str:
    """HMAC-SHA256 for keyed records (``alg``), plain SHA-256 for records made before keys."""
    body = canonical({k: v for k, v in record.items() if k != "hash"}).encode()
    if record.get("alg") == ALG:
        return hmac.new(key or b"", body, hashlib.sha256).hexdigest()
    return hashlib.sha256(body).hexdigest()


def _seal(prev: dict[str, Any] | None, kind: str, subject: str,
          data: dict[str, Any], key: bytes | None, anchor: dict[str, Any] | None = None
          ) -> dict[str, Any]:
    record: dict[str, Any] = {
        "seq": (prev["seq"] + 1) if prev else 1,
        "ts": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
        "kind": kind,
        "subject": subject,
        "data": data,
        "prev": prev["hash"] if prev else GENESIS,
    }
    if key is not None:
        record["alg"] = ALG
    if anchor is not None:
        record["file"] = anchor
    record["hash"] = record_hash(record, key)
    return record


def _table_head(row: Any) -> dict[str, Any] | None:
    """The ``audit_log`` table's last record, from its row (None for an empty table).

    Raises:
        AuditChainUnusable: the row's body is not a record heal wrote (edited by hand: not
            JSON, without an integer ``seq`` and a ``hash``, or with a ``seq`` or ``hash``
            other than the row's own columns: appending onto it would reuse a seq or
            overflow the column, a raw PostgreSQL error). Unlike the file's torn last
            line, which a crash leaves, a table row is written whole in a transaction: a bad
            one was changed, so the chain's head cannot be trusted to append onto.
    """
    if row is None:
        return None
    try:
        body = json.loads(row["body"])
    except (ValueError, TypeError):
        what = "not JSON"
    else:
        if not isinstance(body, dict):
            what = f"a JSON {type(body).__name__}, not an object"
        elif type(body.get("seq")) is not int:
            what = "no integer seq"
        elif not isinstance(body.get("hash"), str):
            what = "no hash"
        elif body["seq"] != row["seq"]:
            what = f"its body says seq {body['seq']}, not the row's own"
        elif body["hash"] != row["hash"]:
            what = "its body's hash is not the row's hash column"
        else:
            record: dict[str, Any] = body
            return record
    raise AuditChainUnusable(
        f"the audit_log table's last row (seq {row['seq']}) is not an audit record ({what}): "
        "it was edited, so nothing is appended onto it; run `heal audit verify` to see where "
        "the chain breaks, and restore the row from a backup (or find who changed it) before "
        "heal can audit to the table again")


def _is_keyed(body: Any) -> bool:
    """``body`` (an ``audit_log`` row's) is a keyed record."""
    try:
        record = json.loads(body)
    except (ValueError, TypeError):
        return False
    return isinstance(record, dict) and record.get("alg") == ALG


async def _usable_table_head(conn: Any, key: bytes | None) -> dict[str, Any] | None:
    """The ``audit_log`` table's last record, when a record sealed with ``key`` (None:
    unkeyed) may be appended onto it (None for an empty table).

    Raises:
        AuditChainUnusable: the last row was edited (:func:`_table_head`); or it is keyed and
            ``key`` is None (a host without the HEAL_AUDIT_KEY the others use would append an
            unkeyed record after keyed ones, which verify calls a downgrade); or it is
            unkeyed and keyed rows come before it (a forged downgrade): with ``key`` given,
            any keyed row before it; whatever the key, a keyed row just before it (the last
            two rows are read, so a host without HEAL_AUDIT_KEY refuses it too, without
            scanning the table at each append).
    """
    rows = await conn.fetch("SELECT seq, hash, body FROM audit_log ORDER BY seq DESC LIMIT 2")
    prev = _table_head(rows[0] if rows else None)
    if prev is None:
        return None
    if prev.get("alg") != ALG and len(rows) > 1 and _is_keyed(rows[1]["body"]):
        raise _downgraded(f"the audit_log table (row seq {prev['seq']})", prev)
    if prev.get("alg") == ALG and key is None:
        raise AuditChainUnusable(
            f"the audit_log table is sealed with {KEY_ENV} (its last row, seq {prev['seq']}, "
            f"is keyed), and {KEY_ENV} is unset here; nothing is appended (an unkeyed record "
            f"after keyed ones fails `heal audit verify`). Set {KEY_ENV} to the key the other "
            "hosts and workers use")
    if prev.get("alg") != ALG and key is not None:
        # an unkeyed head under a key: once, at the first keyed append onto a table of
        # records made before keys (or without HEAL_AUDIT_KEY); or a forged downgrade
        async for candidate in conn.cursor(
                "SELECT body FROM audit_log WHERE strpos(body, $1) > 0 ORDER BY seq",
                f'"alg":"{ALG}"'):
            try:
                record = json.loads(candidate["body"])
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("alg") == ALG:
                raise _downgraded(f"the audit_log table (row seq {prev['seq']})", prev)
    return prev


class AuditLog:
    """Append-only, keyed hash-chained decision log, anchored outside its file.

    Raises (from ``append``):
        AuditError: the record could not be written (the caller must not act unaudited).
        DatabaseUnavailable: PostgreSQL was given and cannot be reached.
    """

    def __init__(self, settings: Settings, db: Any = None, path: Path | None = None,
                 redis_client: Any = None, *, anchored: bool = True) -> None:
        self.settings = settings
        self.path = path or settings.home / FILE_NAME
        self.db = db
        self._redis = redis_client
        #: False only for a bare file chain (the chain's own unit tests, the overhead bench):
        #: otherwise every append anchors the head in Redis, the configured or embedded one
        self.anchored = anchored

    def ensure_room(self) -> None:
        """Refuse up front a change whose records are written after it is made (``heal
        learn``, ``heal import``: one transaction stores what the records then name): the
        audit key must be there (or be made) and the log's file system must have
        :data:`ROOM_BYTES` free, else nothing is stored.

        Raises:
            AuditError: as ``append`` would (the same "no space left in HEAL_HOME" words).
        """
        if os.environ.get(KEY_ENV) is None:
            audit_key(self.settings, self.path)
        try:
            folder = self.path.parent
            folder.mkdir(mode=dir_mode(), parents=True, exist_ok=True)
            fs = os.statvfs(folder)
            if fs.f_bavail * fs.f_frsize < ROOM_BYTES:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        except OSError as exc:
            raise _full(exc, self.settings, "appending to the audit log", self.path) or \
                AuditError(f"audit log {self.path}: cannot append ({exc}); nothing is "
                           "applied until it can (free space or fix the file)") from exc

    def check_extendable(self) -> None:
        """Refuse now, appending nothing, what ``append`` would refuse because the chain
        cannot be extended here until the operator acts (the key that sealed the file is
        not here, the table's last row was edited): a stage whose records of what it did are
        written after it acted (the apply stage) checks first, so it stops before doing
        anything. Any other failure (a key file unreadable, PostgreSQL down) is left to the
        append and its caller.

        Raises:
            AuditChainUnusable: as ``append`` would.
        """
        try:
            audit_key(self.settings, self.path)
        except AuditChainUnusable:
            raise
        except HealError:
            return
        try:
            self.log_id()
        except AuditChainUnusable:
            raise
        except HealError:
            return
        if self.db is not None:
            self._check_table(env_key())  # what the append checks before its file record

    def append(self, kind: str, subject: str, data: dict[str, Any] | None = None, *,
               once: str = "") -> dict[str, Any]:
        """Append one decision; returns the file record (with its ``seq`` and ``hash``).

        ``once``: a stable name of this decision (e.g. ``lifecycle.outcome:<event id>``). A
        retry of an append that wrote the file record but not the table's (PostgreSQL went
        down in between) then writes only the table record, naming the first file record,
        and never a second file record. Remembered in Redis for a week: first the intent
        (where the file ended), then the file record, then that the table took it; a retry
        after Redis failed in between finds the file record past that point and the table
        record naming it (:meth:`witness`) instead of writing them again. A Redis that
        refuses the intent raises its error with nothing written."""
        # a person's override says who did it (pipeline.guardrails.actor)
        data = json.loads(canonical(stamped(data or {})))  # fails early on what cannot hash
        if once:
            return self._append_once(kind, subject, data, once)
        return self._append(kind, subject, data)

    def _append_once(self, kind: str, subject: str, data: dict[str, Any],
                     once: str) -> dict[str, Any]:
        try:
            client = self._redis if self._redis is not None else anchor_client(self.settings)
            name = self.settings.key("audit", "once",
                                     hashlib.sha256(once.encode()).hexdigest()[:32])
            raw = client.get(name)
        except Exception as exc:  # noqa: BLE001 - without Redis: a plain append
            log.warning("audit %s: no Redis to remember it by (%s): appended as is", once, exc)
            return self._append(kind, subject, data)
        mark = json.loads(raw) if raw else {}
        if "record" not in mark and "offset" in mark:  # the file record may be there
            found = self._appended_since(int(mark["offset"]), kind, subject, data)
            if found is not None:
                mark = {"record": {"seq": found["seq"], "hash": found["hash"]},
                        "table": self.db is None}
        if "record" in mark:
            if not mark.get("table") and self.db is not None:
                self.witness(kind, subject, data, mark["record"])
                client.set(name, json.dumps({**mark, "table": True}), ex=_ONCE_TTL_S)
            return dict(mark["record"])
        try:
            offset = self.path.stat().st_size
        except FileNotFoundError:
            offset = 0
        # the intent, before the file record: a retry knows from where to look for it
        client.set(name, json.dumps({"offset": offset}), ex=_ONCE_TTL_S)
        record = self._append(kind, subject, data, remember=(client, name))
        client.set(name, json.dumps({"record": {"seq": record["seq"], "hash": record["hash"]},
                                     "table": True}), ex=_ONCE_TTL_S)
        return record

    def _appended_since(self, offset: int, kind: str, subject: str,
                        data: dict[str, Any]) -> dict[str, Any] | None:
        """The file record of this decision appended at or after byte ``offset`` (an append
        whose mark Redis did not take), or None. From the start of the file when it is
        shorter than ``offset`` now (a torn tail moved aside)."""
        try:
            with self.path.open("rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                start = offset if offset <= size else 0
                fh.seek(max(start - 1, 0))
                if start > 0 and fh.read(1) != b"\n":
                    fh.readline()  # (inside a line: from the next one)
                for line in fh:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(record, dict) and record.get("kind") == kind and \
                            record.get("subject") == subject and record.get("data") == data:
                        return record
        except FileNotFoundError:
            return None
        return None

    def _append(self, kind: str, subject: str, data: dict[str, Any],
                remember: tuple[Any, str] | None = None) -> dict[str, Any]:
        key = audit_key(self.settings, self.path)
        log_id = self.log_id()  # before the file record: a log with no record gets a new id
        if self.db is not None:
            self._check_table(env_key())
        try:
            record = self._append_file(kind, subject, data, key)
        except OSError as exc:  # disk full, read-only, permissions
            raise _full(exc, self.settings, "appending to the audit log", self.path) or \
                AuditError(f"audit log {self.path}: cannot append ({exc}); nothing is "
                           "applied until it can (free space or fix the file)") from exc
        anchor = {"log": log_id, "seq": record["seq"], "hash": record["hash"]}
        if remember is not None:  # the file record exists: a retry must not write another
            client, name = remember
            client.set(name, json.dumps({"record": {"seq": record["seq"],
                                                    "hash": record["hash"]},
                                         "table": self.db is None}), ex=_ONCE_TTL_S)
        # anchored before the table is written: a PostgreSQL outage below (the caller
        # retries the table record) leaves the file record anchored all the same
        self._anchor_redis(anchor, None)
        if self.db is not None:
            # the table is shared by every host: keyed only with a shared HEAL_AUDIT_KEY
            # (a per-home key would make other hosts' records unverifiable)
            table_head = self._append_db(kind, subject, data, env_key(), anchor)
            self._anchor_redis(None, table_head)
        return record

    def log_id(self) -> str:
        """The id this log's anchors are kept under (:func:`id_file`), made at its first use:
        a random one for a new log; for a log with records, the one its anchors are under
        (:func:`adopted_log_id`: the legacy host and path of a log written before logs had
        ids). Stable when HEAL_HOME moves or its host is renamed.

        Raises:
            AuditChainUnusable: the id file is missing and the anchored logs are all
                another's (:func:`unknown_id_error`), or the id file is not the operator's
                own or not an id (the message says what to change).
            AuditError: the id file cannot be made.
        """
        where = id_file(self.path)
        try:
            stored = read_log_id(self.path)
            if stored is not None:
                self._check_place(stored)
                return stored
            heads = None
            if _record_hashes(self.path):
                heads = anchored_heads(self.settings, self._witness_client(), self.db)
            chosen = adopted_log_id(self.path, heads)
            if chosen is None:
                raise unknown_id_error(self.path, heads or {})
            self._check_place(None)
            where.parent.mkdir(mode=dir_mode(), parents=True, exist_ok=True)
            create_private_file(where, chosen.encode() + b"\n")  # a racing maker's wins
            adopted = read_log_id(self.path)
        except AuditError:
            raise
        except ConfigError as exc:
            raise AuditChainUnusable(str(exc)) from exc
        except OSError as exc:
            raise _full(exc, self.settings, "making the audit log id", where) or AuditError(
                f"audit log id {where}: {exc}; fix the folder's permissions") from exc
        if adopted is None:
            raise AuditError(f"audit log id {where} vanished as it was made")
        if adopted != chosen or not _record_hashes(self.path):
            return adopted
        log.warning("audit log %s: its anchors are kept under %s from now on (%s)", self.path,
                    adopted, where)
        return adopted

    #: the log id ``heal audit restart`` is retiring (its place's locator still names it
    #: until the restart's first append moves it to the new id)
    restart_of: str | None = None

    def _check_place(self, stored: str | None) -> None:
        """Refuse a log that does not continue the log its place last anchored
        (:func:`displaced`): deleted or truncated with its id file deleted or rewritten.
        Checked once per process and id (one Redis read, more only when the locator names
        another id).

        Raises:
            AuditChainUnusable: :func:`displaced_error`.
        """
        stamp = (self.path, stored)
        if stored is not None and stamp in _PLACED:
            return
        client = self._witness_client()
        if client is None:
            return
        try:
            found = displaced(self.settings, client, self.db, self.path, stored,
                              self.restart_of)
        except Exception as exc:  # noqa: BLE001 - Redis failing: the anchors report it
            log.debug("audit locator not read: %s", exc)
            return
        if found is not None:
            raise displaced_error(self.path, stored, found)
        if stored is not None:
            _PLACED.add(stamp)

    def _witness_client(self) -> Any:
        """The Redis the heads are anchored in, or None (not anchored, or unreachable)."""
        if self._redis is not None:
            return self._redis
        if not self.anchored:
            return None
        try:
            return anchor_client(self.settings)
        except Exception as exc:  # noqa: BLE001 - PostgreSQL's anchors remain
            log.debug("audit anchors not read from Redis: %s", exc)
            return None

    def _check_table(self, key: bytes | None) -> None:
        """Refuse up front, before the file record is written, a table heal would refuse to
        append to (:func:`_usable_table_head`): a refused command then changes nothing, its
        file record included. Read without the table's lock (the append checks again under
        it); any other failure (PostgreSQL down) is left to the append, which reports it
        after the file record as before (a retry writes only the table record).

        Raises:
            AuditChainUnusable: the table's last row cannot be appended onto.
        """
        async def check(conn: Any) -> None:
            async with conn.transaction(readonly=True):
                await _usable_table_head(conn, key)

        try:
            self.db.run(check)
        except AuditChainUnusable:
            raise
        except Exception as exc:  # noqa: BLE001 - the append below reports it
            log.debug("audit table not checked before the file record: %s", exc)

    def witness(self, kind: str, subject: str, data: dict[str, Any],
                file_record: dict[str, Any]) -> None:
        """The table record of a file record appended earlier (by ``append`` on an
        AuditLog without a database, while PostgreSQL was down): it names that file record,
        so a retry completes the audit without a second file record; nor a second table
        record, when the table already holds one naming that file record (written before
        Redis could remember it).

        Raises:
            DatabaseUnavailable: PostgreSQL still cannot be reached.
        """
        if self.db is None:
            return
        anchor = {"log": self.log_id(), "seq": int(file_record["seq"]),
                  "hash": str(file_record["hash"])}
        data = json.loads(canonical(data))
        head = self._append_db(kind, subject, data, env_key(), anchor, once=True)
        self._anchor_redis(None, head)

    def _append_file(self, kind: str, subject: str, data: dict[str, Any],
                     key: bytes) -> dict[str, Any]:
        self.path.parent.mkdir(mode=dir_mode(), parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file closes
            try:
                prev = _last_record_or_repair(fh, self.path)
                if prev is not None and prev.get("alg") != ALG and _holds_keyed(self.path):
                    raise _downgraded(self.path, prev)
                record = _seal(prev, kind, subject, data, key)
                fh.seek(0, os.SEEK_END)
                fh.write(canonical(record).encode() + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return record

    def _append_db(self, kind: str, subject: str, data: dict[str, Any], key: bytes | None,
                   anchor: dict[str, Any], *, once: bool = False) -> dict[str, Any]:
        """Append the table record and anchor the file's head; returns the table's head.
        ``once``: unless a record of this kind and subject names the same file record (then
        returns that record's seq and hash)."""
        async def insert(conn: Any) -> dict[str, Any]:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('heal:audit_log'))")
                if once:
                    for row in await conn.fetch(
                            "SELECT seq, hash, body FROM audit_log WHERE subject = $1"
                            " AND kind = $2", subject, kind):
                        try:
                            named = json.loads(row["body"]).get("file")
                        except (ValueError, AttributeError):
                            continue
                        if named == anchor:
                            return {"seq": int(row["seq"]), "hash": str(row["hash"])}
                prev = await _usable_table_head(conn, key)
                record = _seal(prev, kind, subject, data, key, anchor)
                await conn.execute(
                    "INSERT INTO audit_log (seq, kind, subject, prev_hash, hash, body)"
                    " VALUES ($1, $2, $3, $4, $5, $6)",
                    record["seq"], kind, subject, record["prev"], record["hash"],
                    canonical(record),
                )
                await conn.execute(
                    "INSERT INTO audit_anchor (log, seq, hash) VALUES ($1, $2, $3)"
                    " ON CONFLICT (log) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash,"
                    " updated_at = now() WHERE audit_anchor.seq < EXCLUDED.seq",
                    anchor["log"], anchor["seq"], anchor["hash"])
                return {"seq": record["seq"], "hash": record["hash"]}

        head: dict[str, Any] = self.db.run(insert)
        return head

    def _anchor_redis(self, anchor: dict[str, Any] | None,
                      table_head: dict[str, Any] | None) -> None:
        """The file's head (and the table's, when a table record was written) in Redis: the
        given client, else the configured or embedded Redis. A second witness beside
        PostgreSQL: a failure here is only logged (the file and the table hold the record)."""
        if not self.anchored and self._redis is None:
            return
        try:
            client = self._redis if self._redis is not None else anchor_client(self.settings)
            heads = [] if anchor is None else [(head_key(self.settings, anchor["log"]), anchor)]
            if table_head is not None:
                heads.append((head_key(self.settings, TABLE_LOG), table_head))
            for name, head in heads:
                client.eval(_ANCHOR, 1, name, int(head["seq"]),
                            json.dumps({"seq": head["seq"], "hash": head["hash"]}),
                            MARK_EVERY, head["hash"])
            if anchor is not None:  # where this log lives (:func:`displaced`)
                write_locator(client, self.settings, self.path, str(anchor["log"]))
        except Exception as exc:  # noqa: BLE001 - the file and the table hold the record
            log.warning("audit head not anchored in Redis: %s", exc)


_ONCE_TTL_S = 7 * 24 * 3600

#: (log path, id) found to continue their place's log in this process (AuditLog._check_place)
_PLACED: set[tuple[Path, str | None]] = set()

#: the anchor of the ``audit_log`` table in Redis (one table per installation and prefix)
TABLE_LOG = "postgres:audit_log"
#: besides the head, every MARK_EVERY-th record's hash stays in the anchor: a chain re-sealed
#: and then extended by later appends still differs at every mark before the tampering
MARK_EVERY = 16

#: One Redis hash per log: ``head`` (JSON seq and hash; it only moves forward, concurrent
#: appenders may finish out of order) and the marks (field: seq, value: hash).
_ANCHOR = """
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then redis.call('DEL', KEYS[1]) end
local seq = tonumber(ARGV[1])
if seq % tonumber(ARGV[3]) == 0 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[4]) end
local cur = redis.call('HGET', KEYS[1], 'head')
if cur then
  local ok, head = pcall(cjson.decode, cur)
  if ok and type(head) == 'table' and tonumber(head['seq']) and
     tonumber(head['seq']) >= seq then return 0 end
end
redis.call('HSET', KEYS[1], 'head', ARGV[2])
return 1
"""


def read_anchor(client: Any, settings: Settings, log_id: str) -> list[tuple[int, str]]:
    """The heads ``(seq, hash)`` anchored in Redis for ``log_id``: the marks and the head."""
    raw = client.hgetall(head_key(settings, log_id))
    heads: list[tuple[int, str]] = []
    for name, value in (raw or {}).items():
        field_name = name.decode() if isinstance(name, bytes) else str(name)
        text = value.decode() if isinstance(value, bytes) else str(value)
        if field_name == "head":
            head = json.loads(text)
            heads.append((int(head["seq"]), str(head["hash"])))
        elif field_name.isdigit():
            heads.append((int(field_name), text))
    return sorted(heads)


_clients: dict[tuple[int, str | None, str], Any] = {}
_clients_lock = threading.Lock()


def head_key(settings: Settings, log_id: str) -> str:
    """The Redis key holding the anchored head of ``log_id`` (a file, or :data:`TABLE_LOG`)."""
    return settings.key("audit", "head", log_id)


def anchor_client(settings: Settings) -> Any:
    """This process's client of the Redis that anchors audit heads: ``HEAL_REDIS_URL``, else
    the embedded Redis under ``HEAL_HOME`` (started or reused, under a lease like every
    other user of it). Raises what ``connect_redis`` raises (StreamUnavailable, ConfigError)."""
    from storage.engines import connect_redis

    ident = (os.getpid(), settings.redis_url, str(settings.home))
    with _clients_lock:
        client = _clients.get(ident)
        if client is None:
            client = _clients[ident] = connect_redis(settings)
    return client


def _last_record_or_repair(fh: Any, path: Path) -> dict[str, Any] | None:
    """The last whole record; a torn last line is moved to ``<file>.torn`` first."""
    try:
        return _last_record(fh, path)
    except HealError as exc:
        end = fh.seek(0, os.SEEK_END)
        fh.seek(0)
        content = fh.read()
        cut = content.rstrip(b"\n").rfind(b"\n") + 1
        torn = content[cut:]
        quarantine = path.with_name(path.name + ".torn")
        fd = os.open(quarantine, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as out:
            out.write(torn + (b"" if torn.endswith(b"\n") else b"\n"))
        os.truncate(fh.fileno(), cut)
        prev = _last_record(fh, path)
        log.warning("audit log %s: the last line was torn (%s); its %d bytes were moved to %s"
                    " and the chain goes on from record %d", path, exc, end - cut, quarantine,
                    prev["seq"] if prev else 0)
        return prev


def _last_record(fh: Any, path: Path) -> dict[str, Any] | None:
    """The last record of the file, read from its end (the log can be large)."""
    end = fh.seek(0, os.SEEK_END)
    if end == 0:
        return None
    pos, tail = end, b""
    while pos > 0 and tail.rstrip(b"\n").count(b"\n") == 0:
        step = min(_TAIL_BLOCK, pos)
        pos -= step
        fh.seek(pos)
        tail = fh.read(step) + tail
    line = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    try:
        record: dict[str, Any] = json.loads(line)
        record["seq"] = int(record["seq"])
        str(record["hash"])
    except (ValueError, KeyError, TypeError) as exc:
        raise HealError(
            f"audit log {path}: the last line is not a record ({exc}); "
            "run `heal audit verify` and repair or move the file aside"
        ) from exc
    return record


@dataclass(frozen=True)
class Verification:
    ok: bool
    records: int
    #: 1-based position (line number for the file) of the first bad record, or None
    bad_at: int | None = None
    reason: str = ""
    bad_record: str = ""
    #: records that witness a file record (table records with ``file``), by seq
    kept: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: every record's hash, oldest first (for the anchor and cross checks)
    hashes: list[str] = field(default_factory=list)
    #: every record's kind, oldest first (for the records past the anchored head)
    kinds: list[str] = field(default_factory=list)
    #: the word a failure is reported with: TAMPERED, or NOT ANCHORED for records past
    #: every anchored head (which a crash between appending and anchoring can leave too)
    verdict: str = "TAMPERED"


#: why a record fails its seal (``verify`` adds the key to check when it is the very first)
SEAL_MISMATCH = "hash does not match the record's content (record edited or re-sealed)"


def verify_lines(lines: Iterator[str], key: bytes | None = None) -> Verification:
    """Check a chain given as canonical JSON texts, oldest first. The result keeps every
    record's hash (``hashes``) and the records that witness a file record (``kept``)."""
    prev_hash, count = GENESIS, 0
    kept: dict[int, dict[str, Any]] = {}
    hashes: list[str] = []
    kinds: list[str] = []
    keyed = False
    for position, line in enumerate(lines, start=1):
        if not line.strip():
            return Verification(False, count, position, "empty line inside the log", line)
        try:
            record = json.loads(line)
        except ValueError:
            return Verification(False, count, position, "not JSON", line)
        reason = _check(record, prev_hash, count + 1, key, keyed)
        if reason:
            return Verification(False, count, position, reason, line)
        keyed = record.get("alg") == ALG
        prev_hash, count = record["hash"], count + 1
        hashes.append(prev_hash)
        kinds.append(str(record.get("kind", "")))
        if isinstance(record.get("file"), dict):
            kept[count] = record
    return Verification(True, count, kept=kept, hashes=hashes, kinds=kinds)


def _check(record: Any, prev_hash: str, seq: int, key: bytes | None,
           after_keyed: bool = False) -> str:
    """Why ``record`` breaks the chain ("" when it holds): ``after_keyed``, a keyed record
    came before it, so it must be keyed too (:data:`DOWNGRADE`)."""
    if not isinstance(record, dict) or "hash" not in record:
        return "not an audit record"
    if record.get("seq") != seq:
        return (f"sequence {record.get('seq')!r} where {seq} was expected "
                "(records reordered or removed?)")
    if record.get("prev") != prev_hash:
        return "prev does not match the previous record's hash (chain broken)"
    if after_keyed and record.get("alg") != ALG:
        return DOWNGRADE
    if record.get("alg") == ALG and key is None:
        return "keyed record but no audit key to check it (set HEAL_AUDIT_KEY)"
    if record_hash(record, key) != record["hash"]:
        return SEAL_MISMATCH
    return ""


def sealed_with_another_key(path: Path, key: bytes | None, first: int) -> int:
    """How many records, from record ``first`` to the end of the file ``path``, look sealed
    with a key other than ``key``: every one is keyed and fails its seal, yet names the hash
    of the one before it as heal writes it. That is what a writer with another key leaves (a
    command run without the HEAL_AUDIT_KEY the workers use made its own audit.key); an
    edit breaks one seal and the links after it. 0 when that is not the case."""
    count, prev = 0, None
    try:
        with open(path, encoding="utf-8") as fh:
            for position, line in enumerate(fh, start=1):
                if position < first - 1:
                    continue
                record = json.loads(line)
                if position == first - 1:
                    prev = record.get("hash")
                    continue
                if (not isinstance(record, dict) or record.get("alg") != ALG
                        or record.get("prev") != prev or "hash" not in record
                        or record_hash(record, key) == record["hash"]):
                    return 0
                prev, count = record["hash"], count + 1
    except (OSError, ValueError):
        return 0
    return count


def keyed_seals(path: Path, key: bytes | None) -> tuple[bool, int]:
    """Whether the first record of the file ``path`` is keyed, and how many of its keyed
    records match their seal under ``key`` (each alone, links not checked): what tells a
    wrong key (none matches) from a first record edited or sealed with an earlier key."""
    first_keyed, matching = False, 0
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for position, line in enumerate(fh, start=1):
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(record, dict) or record.get("alg") != ALG:
                    continue
                first_keyed = first_keyed or position == 1
                if record_hash(record, key) == record.get("hash"):
                    matching += 1
    except OSError:
        pass
    return first_keyed, matching


def verify_file(path: Path, key: bytes | None = None,
                anchor: tuple[int, str] | None = None) -> Verification:
    """Verify the JSONL chain, and against its anchored head ``(seq, hash)`` when known.

    A missing file is an empty, valid log only when no head was ever anchored. Without
    ``key``, ``HEAL_AUDIT_KEY`` or the ``audit.key`` beside the file is used
    (:func:`verify_key`: refused unless the operator's own; raises ConfigError)."""
    if key is None:
        key = verify_key(path)
    if not path.exists():
        if anchor is not None and anchor[0] > 0:
            return Verification(False, 0, 1, f"the file is missing, but its head was anchored "
                                             f"at record {anchor[0]} (deleted?)")
        return Verification(True, 0)
    with open(path, encoding="utf-8", errors="replace") as fh:
        result = verify_lines((line.rstrip("\n") for line in fh), key)
    if not result.ok or anchor is None:
        return result
    seq, head = anchor
    if result.records < seq:
        return Verification(False, result.records, result.records + 1,
                            f"the file ends at record {result.records}, but its head was "
                            f"anchored at record {seq} (truncated?)")
    if result.hashes[seq - 1] != head:
        return Verification(False, seq - 1, seq, f"record {seq} differs from the anchored head "
                                                  "(the chain was re-sealed)")
    return result


def check_head(result: Verification, head: tuple[int, str], what: str,
               path: Path | None = None, vouched: int = 0) -> Verification:
    """``result`` (a verified chain) against an anchored head ``(seq, hash)`` of it: the
    chain must still hold that record, unchanged. ``path``: the file the chain was read
    from, so an existing empty file is called empty, not missing. ``vouched``: the highest
    record an anchor checked before this one matched; a head that differs then names the
    records after it as the ones that may have been re-sealed (whoever re-sealed the chain
    knew the key, so nothing after the last matching anchor is vouched for)."""
    if not result.ok:
        return result
    seq, digest = head
    if seq < 1:
        return result
    if result.records < seq:
        how = (f"ends at record {result.records}" if result.records else
               "is empty" if path is not None and path.exists() else "is missing")
        return Verification(False, result.records, result.records + 1,
                            f"{what} {how}, but its head was anchored at record {seq} "
                            "(truncated or deleted?)")
    if result.hashes[seq - 1] != digest:
        where = (f"record {seq}" if vouched >= seq - 1 else
                 f"one of records {vouched + 1}..{seq}")
        return Verification(False, vouched, seq,
                            f"record {seq} of {what} differs from the anchored head (the chain "
                            f"was re-sealed at {where})"
                            + (f"; record {vouched} matches its anchor" if vouched else ""))
    return result


def check_heads(result: Verification, heads: list[tuple[int, str]], what: str,
                path: Path | None = None) -> Verification:
    """``result`` against every anchored head and mark of it, lowest seq first: the first
    that differs narrows the first bad record to the records after the last one that
    matched (a later head checked first would vouch for every record before it)."""
    vouched = 0
    for head in sorted(heads):
        result = check_head(result, head, what, path, vouched)
        if not result.ok:
            return result
        vouched = max(vouched, head[0])
    return result


#: the kinds heal appends only together with the database: each file record of one is
#: witnessed by an ``audit_log`` record naming it (written at once, or by the retry of an
#: append PostgreSQL interrupted); breaker, workflow-state and verdict records may be
#: appended without one
WITH_DATABASE = frozenset({
    "lifecycle.outcome", "lifecycle.transition", "fingerprint.ignore", "issue.pattern",
    "pattern.learn", "pattern.import", "approval.reject",
})


def check_tail(result: Verification, anchored: int, witnessed: set[int] | None,
               redis_head: bool, what: str) -> tuple[Verification, str]:
    """The records of a verified chain past every anchored head (``anchored``: the highest
    record an anchor or a table record vouches for; ``witnessed``: the file records the
    table names, None when the table was not read; ``redis_head``: Redis held a head of
    this file, which heal moves at every append).

    Heal anchors each record right after appending it, so only a crash (or a Redis outage)
    between the two leaves a record past the head, until heal's next append covers it; a
    record appended with the key but without heal looks the same. Returns the failure (a
    kind always written with the database that no table record witnesses; any record past
    a Redis head) and a note for what could not be judged (no Redis head: breaker and
    workflow records wait for the next decision to be anchored in PostgreSQL)."""
    if not result.ok or anchored < 1 or result.records <= anchored:
        return result, ""
    for seq in range(anchored + 1, result.records + 1):
        kind = result.kinds[seq - 1] if seq <= len(result.kinds) else ""
        if witnessed is not None and kind in WITH_DATABASE and seq not in witnessed:
            return Verification(False, anchored, seq, (
                f"record {seq} ({kind}) of {what} is past the anchored head {anchored}, and "
                "no audit_log table record witnesses it, though heal writes that kind with "
                "the database: appended without heal?"), verdict="NOT ANCHORED"), ""
    if redis_head:
        seq = anchored + 1
        return Verification(False, anchored, seq, (
            f"record {seq} ({result.kinds[seq - 1] if seq <= len(result.kinds) else '?'}) of "
            f"{what} is past the anchored head {anchored} and nothing witnesses it: appended "
            "without heal, or heal stopped (or lost Redis) between appending and anchoring "
            "it; if heal stopped, its next append anchors it"), verdict="NOT ANCHORED"), ""
    which = (f"record {result.records} is" if result.records == anchored + 1 else
             f"records {anchored + 1}..{result.records} are")
    return result, (f"{what}: {which} past the anchored head {anchored} and no Redis head of "
                    "it was read: not checked (heal anchors breaker and workflow records in "
                    "PostgreSQL with its next decision)")


def verify_key(path: Path) -> bytes | None:
    """The key that checks the audit log ``path``: ``HEAL_AUDIT_KEY``, else the ``audit.key``
    beside it (None when there is none: nothing is created to verify). The file must be the
    operator's own, as on the writing side (:func:`_check_key_file`): a repository shipping
    ``.heal/audit.key`` with a log it forged under that key would otherwise "verify".

    Raises:
        ConfigError: the key file is tracked by git, another user's, writable by others,
            cannot be read, or is too short, a placeholder or not text, or its folder was
            writable by others until this command's start-up made it private
            (:func:`pipeline.homedir.found_writable`); the message says what to do.
    """
    env = env_key()
    if env is not None:
        return env
    beside = path.parent / KEY_FILE
    if not beside.exists():
        return None
    loose = found_writable(beside)
    if loose is not None:  # heal made the folder private at start-up, just now
        raise ConfigError(
            f"audit key {beside}: its folder {beside.parent} was writable by other users "
            f"(mode {oct(loose)}) until this heal command made it private, so the key may "
            "have been replaced; check it (and that no other user can write the folders "
            f"above it), then run heal audit verify again, or set {KEY_ENV}")
    try:
        _check_key_file(beside)
        return audit_key_from_file(beside.read_bytes(), beside)
    except OSError as exc:
        raise ConfigError(f"audit key {beside} cannot be read: {exc.strerror or exc}; fix its "
                          f"permissions or set {KEY_ENV}") from exc


def verify_database(db: Any, key: bytes | None = None) -> Verification:
    """Verify the ``audit_log`` table's chain, in ``seq`` order (keyed records with
    ``key``, else ``HEAL_AUDIT_KEY``)."""
    if key is None:
        key = env_key()
    rows = db.fetch("SELECT body FROM audit_log ORDER BY seq")
    return verify_lines((str(row["body"]) for row in rows), key)


def cross_check(file_result: Verification, table_result: Verification,
                log_id: str) -> Verification:
    """Every table record that names a record of this file (``file``: log, seq, hash) must
    find it there, unchanged: the file and the table witness each other."""
    if not (file_result.ok and table_result.ok):
        return Verification(True, 0)  # each failure is already reported on its own
    checked = 0
    for record in table_result.kept.values():
        ref = record.get("file")
        if not isinstance(ref, dict) or ref.get("log") != log_id:
            continue
        checked += 1
        seq = int(ref.get("seq", 0))
        if seq > file_result.records:
            return Verification(False, checked - 1, seq, f"the table names file record {seq},"
                                " which the file no longer has (truncated or deleted)")
        if seq < 1 or file_result.hashes[seq - 1] != ref.get("hash"):
            return Verification(False, checked - 1, seq, f"file record {seq} differs from the"
                                " one the table witnessed (edited or re-sealed)")
    return Verification(True, checked)
