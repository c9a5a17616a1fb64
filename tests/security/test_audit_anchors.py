"""Attack 8, on the engines heal starts itself: the audit chain's head is anchored outside
the file in PostgreSQL and in Redis even when both are the embedded ones (no HEAL_REDIS_URL,
no HEAL_DATABASE_URL), and ``heal audit verify`` cross-checks file, table and anchors, so
an attacker who can write the file (and even wipe one of the witnesses) is still caught
truncating, deleting or re-sealing either chain.

Runs the installed ``heal`` as a subprocess with a fresh HEAL_HOME, as a user would.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis

from pipeline.fingerprint.hashing import ALGORITHM_VERSION as V
from pipeline.guardrails.audit import canonical
from storage.embedded import EmbeddedPostgres, EmbeddedRedis
from tests.security._support import reseal

HEAL = str(Path(sys.executable).parent / "heal")

pytestmark = pytest.mark.slow


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"HEAL_REDIS_URL", "HEAL_DATABASE_URL", "HEAL_STREAM_PREFIX",
                        "HEAL_AUDIT_KEY"}}
    env["HEAL_HOME"] = str(home)
    return env


def _heal(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HEAL, *args], env=_env(home), cwd=home.parent, capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.fixture
def home() -> Iterator[Path]:
    """A HEAL_HOME whose embedded engines heal started (pinned for the test, then stopped).

    Not under pytest's basetemp: as root the embedded PostgreSQL's own user must traverse
    every parent of its data, and a concurrent pytest session resets that folder to 0700."""
    base = Path(tempfile.mkdtemp(prefix="heal-anchors-"))
    path = base / "home"
    started = _heal(path, "engines", "start")
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        for i in range(3):  # `heal ignore` audits to the file and the table
            done = _heal(path, "ignore", f"{V}:{i:016x}", "--reason", "noise")
            assert done.returncode == 0, done.stdout + done.stderr
        yield path
    finally:
        _heal(path, "engines", "stop", "--force")
        shutil.rmtree(base, ignore_errors=True)


def _redis(home: Path) -> redis.Redis:
    return redis.Redis.from_url(EmbeddedRedis(home).url)


def _sql(home: Path, query: str) -> list[asyncpg.Record]:
    url = EmbeddedPostgres(home).url()
    assert url is not None, "the embedded PostgreSQL is not running"

    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url)
        try:
            return list(await conn.fetch(query))
        finally:
            await conn.close()

    return asyncio.run(run())


def _verify(home: Path) -> tuple[int, str]:
    done = _heal(home, "audit", "verify")
    return done.returncode, done.stdout + done.stderr


def _heads(home: Path) -> dict[str, dict[str, object]]:
    """The heads anchored in the embedded Redis, by log (a file's or the table's)."""
    client = _redis(home)
    return {k.decode().split(":audit:head:", 1)[1]: json.loads(client.hget(k, "head") or b"{}")
            for k in client.scan_iter(match="heal:audit:head:*")}


def test_the_head_is_anchored_in_the_embedded_redis_and_postgres(home: Path) -> None:
    path = home / "audit.jsonl"
    last = json.loads(path.read_text().splitlines()[-1])
    # the file's head, in the embedded Redis and in the embedded PostgreSQL
    heads = _heads(home)
    ident = (home / "audit.id").read_text().strip()  # the log's own id, stored beside it
    file_heads = [h for name, h in heads.items() if name == ident]
    assert file_heads == [{"seq": last["seq"], "hash": last["hash"]}], heads
    rows = _sql(home, "SELECT seq, hash FROM audit_anchor")
    assert [(r["seq"], r["hash"]) for r in rows] == [(last["seq"], last["hash"])]
    # and the table's head in Redis
    table = _sql(home, "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")[0]
    assert heads["postgres:audit_log"] == {"seq": table["seq"], "hash": table["hash"]}
    code, out = _verify(home)
    assert code == 0, out
    assert "file vs table: ok" in out


def test_a_truncated_file_is_caught_by_redis_alone(home: Path) -> None:
    # Given an attacker who truncates the file and also wipes PostgreSQL's anchor and table
    path = home / "audit.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")
    _sql(home, "DELETE FROM audit_anchor")
    _sql(home, "DELETE FROM audit_log")
    code, out = _verify(home)
    assert code == 1, out
    assert "truncated" in out and f"anchored at record {len(lines)}" in out


def test_a_deleted_file_is_caught_by_postgres_alone(home: Path) -> None:
    # Given an attacker who deletes the file and the Redis anchors
    (home / "audit.jsonl").unlink()
    client = _redis(home)
    for key in client.scan_iter(match="heal:audit:head:*"):
        client.delete(key)
    code, out = _verify(home)
    assert code == 1, out
    assert "missing" in out and "anchored" in out


def test_a_resealed_file_is_caught_by_redis_alone(home: Path) -> None:
    _sql(home, "DELETE FROM audit_anchor")
    reseal(home / "audit.jsonl")
    code, out = _verify(home)
    assert code == 1, out
    assert "re-sealed" in out


def test_a_truncated_table_is_caught(home: Path) -> None:
    # a table that lost its newest record no longer reaches the head anchored in Redis
    _sql(home, "DELETE FROM audit_log WHERE seq = (SELECT max(seq) FROM audit_log)")
    code, out = _verify(home)
    assert code == 1, out
    assert "the audit_log table ends at record" in out and "truncated" in out


def test_a_rechained_table_is_caught(home: Path) -> None:
    # Given an attacker who rewrites the table and re-chains it (no shared key: plain SHA-256)
    prev = "0" * 64
    for row in _sql(home, "SELECT body FROM audit_log ORDER BY seq"):
        record = json.loads(row["body"])
        record["subject"] = "rewritten"
        record["prev"] = prev
        record["hash"] = hashlib.sha256(
            canonical({k: v for k, v in record.items() if k != "hash"}).encode()).hexdigest()
        prev = record["hash"]
        body = canonical(record).replace("'", "''")
        _sql(home, f"UPDATE audit_log SET prev_hash = '{record['prev']}', "
                   f"hash = '{record['hash']}', body = '{body}' WHERE seq = {record['seq']}")
    code, out = _verify(home)
    assert code == 1, out
    assert "of the audit_log table differs from the anchored head" in out
