"""The audit log's chain in a real PostgreSQL, with concurrent writers."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis

from pipeline.config import Settings
from pipeline.fingerprint.hashing import ALGORITHM_VERSION
from pipeline.guardrails.audit import AuditLog, verify_database

MIGRATIONS = Path(__file__).resolve().parents[2] / "storage" / "migrations"


class PgShim:
    """The slice of ``storage.db.Database`` the guardrails use, on one schema per test."""

    def __init__(self, url: str, schema: str) -> None:
        self.url, self.schema = url, schema

    async def _conn(self) -> Any:
        conn = await asyncpg.connect(self.url)
        await conn.execute(f"SET search_path TO {self.schema}, public")
        return conn

    def run(self, fn: Any) -> Any:
        async def go() -> Any:
            conn = await self._conn()
            try:
                return await fn(conn)
            finally:
                await conn.close()
        return asyncio.run(go())

    def fetch(self, sql: str, *args: Any) -> Any:
        return self.run(lambda conn: conn.fetch(sql, *args))

    def execute(self, sql: str, *args: Any) -> Any:
        return self.run(lambda conn: conn.execute(sql, *args))


def audit_schema(database_url: str) -> Iterator[PgShim]:
    """The audit tables in a schema of their own, dropped when the generator is closed."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    shim = PgShim(database_url, schema)
    shim.run(lambda conn: conn.execute(f"CREATE SCHEMA {schema}"))
    shim.execute((MIGRATIONS / "0300_audit_log.sql").read_text())
    shim.execute((MIGRATIONS / "0330_audit_anchor.sql").read_text())
    yield shim
    shim.run(lambda conn: conn.execute(f"DROP SCHEMA {schema} CASCADE"))


@pytest.fixture
def db(database_url: str) -> Iterator[PgShim]:
    yield from audit_schema(database_url)


def test_database_chain_and_tamper_detection(db: PgShim, tmp_path: Path, redis_url: str,
                                             prefix: str) -> None:
    log = AuditLog(Settings(None, None, tmp_path, prefix), db=db,
                   redis_client=redis.Redis.from_url(redis_url))
    results: list[Exception] = []

    def writer(n: int) -> None:
        try:
            for i in range(10):
                log.append("race", f"w{n}", {"i": i})
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == []
    good = verify_database(db)
    assert good.ok and good.records == 30
    db.execute("UPDATE audit_log SET body = replace(body, '\"race\"', '\"edit\"') WHERE seq = 7")
    bad = verify_database(db)
    assert not bad.ok and bad.bad_at == 7 and "edited" in bad.reason


#: a fingerprint ignored in advance (a whole one of the current version: heal ignore refuses
#: any other text it has not seen)
_AUDITED = f"{ALGORITHM_VERSION}:0a0d17ed0a0d17ed"


def test_cli_verifies_file_and_database(heal_env: dict[str, str],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import main

    assert main(["ignore", _AUDITED, "--reason", "noise"]) == 0  # audits to both chains
    capsys.readouterr()
    assert main(["audit", "verify"]) == 0
    out = capsys.readouterr().out
    assert "audit.jsonl: ok, 1 record(s)" in out
    assert "postgres:audit_log: ok" in out


def test_cli_does_not_call_the_cross_check_ok_when_the_file_is_tampered(
        heal_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import main

    assert main(["ignore", _AUDITED, "--reason", "noise"]) == 0
    path = Path(heal_env["HEAL_HOME"]) / "audit.jsonl"
    path.write_text(path.read_text().replace("noise", "nois3"))
    capsys.readouterr()
    assert main(["audit", "verify"]) == 1
    out = capsys.readouterr().out
    assert "audit.jsonl: TAMPERED at record 1" in out
    assert "file vs table: ok" not in out
    assert "file vs table: not checked (a chain above is broken)" in out
