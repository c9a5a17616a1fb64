"""QA s15e D9 (and D2 through the stage): the fingerprint stage reads a published event's
text redacted; ``heal fingerprint`` reads its input the same way, so both give one text one
fingerprint. MySQL's ``(using password: YES)`` is a flag, not a secret: a wrong password
(YES) and none sent (NO) stay two errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import redis

from pipeline.config import Settings
from pipeline.events import FingerprintEvent
from pipeline.runtime.drain import drain_inline
from tests.integration.test_runtime_worker import publish

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]

DENIED = "ERROR 1045 (28000): Access denied for user 'ledger'@'172.19.0.4' (using password: {})"
#: two copies of one error that differ only in a secret the redaction rules replace
SECRETS = ["Error: could not connect: DB_PASSWORD=Wv9cLq2xTz rejected by the server",
           "Error: could not connect: DB_PASSWORD=p4ssHZ81mk rejected by the server"]
PSYCOPG = (
    "Traceback (most recent call last):\n"
    '  File "/srv/ledger/ledger/store.py", line 77, in {}\n'
    "    cursor.execute(sql, params)\n"
    'psycopg2.errors.UndefinedColumn: column "ammount" does not exist\n'
    "LINE 1: SELECT ammount FROM postings WHERE id = 9\n"
    "               ^\n")


def _heal_fingerprint(texts: list[str]) -> list[str]:
    """``heal fingerprint --json`` of each text (one message per line)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([*HEAL, "fingerprint", "--json"], input="\n".join(texts) + "\n",
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    return [json.loads(line)["fine"] for line in done.stdout.splitlines()]


def _through_the_stage(client: redis.Redis, settings: Settings, texts: list[str]
                       ) -> dict[str, FingerprintEvent]:
    publish(client, settings, *[orjson.dumps({"v": 1, "id": f"t{i}", "text": text})
                                for i, text in enumerate(texts)])
    assert drain_inline(settings, client, stages=["fingerprint"]) == len(texts)
    out = [FingerprintEvent.decode(f[b"event"])
           for _, f in client.xrange(settings.stream("fingerprints"))]
    return {event.error_id: event for event in out}


def test_the_stage_and_heal_fingerprint_agree_and_keep_mysql_s_password_flag(
        client: redis.Redis, settings: Settings) -> None:
    lines = [DENIED.format("YES"), DENIED.format("NO"), *SECRETS]
    stage = _through_the_stage(client, settings, lines)
    fines = [stage[f"t{i}"].fine for i in range(len(lines))]
    assert fines[0] != fines[1]  # a wrong password and none sent: two errors
    assert fines[2] == fines[3]  # the secret is not the error
    assert _heal_fingerprint(lines) == fines


def test_the_stage_reads_a_psycopg2_traceback_by_its_exception(
        client: redis.Redis, settings: Settings) -> None:
    texts = [PSYCOPG.format("load_postings"), PSYCOPG.format("post_entry")]
    stage = _through_the_stage(client, settings, texts)
    first, second = stage["t0"], stage["t1"]
    assert first.extraction["kind"] == "python"
    assert first.extraction["error_type"] == "psycopg2.errors.UndefinedColumn"
    assert first.extraction["message"] == 'column "ammount" does not exist'
    assert first.fine != second.fine  # raised in two functions: two errors
