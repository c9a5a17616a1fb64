"""A SIGKILLed lookup stage loses no write: real `heal worker lookup` processes, the real
embedded Redis and PostgreSQL.

The lookup stage buffers its PostgreSQL writes (occurrences, the issue queue, learned
fingerprints, rankings) in memory before they reach its SQLite outbox. A batch's hand-off
acknowledges its entries, and an acknowledged entry is never handled again, so those writes
must be on disk before the hand-off: killed at any moment, the stage either left an entry
pending (a peer handles it again; the outbox's op ids keep its writes counted once) or wrote
its writes to the outbox (synchronized to PostgreSQL by the next process).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import string
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from pipeline.config import Settings
from pipeline.events import ErrorEvent, FingerprintEvent
from pipeline.runtime.drain import drain_inline
from storage.db import Database
from storage.engines import open_database
from tests.integration._drills import kill_while_holding, wait_for

ROOT = Path(__file__).resolve().parents[2]
TOTAL = 300


@pytest.fixture
def settings(heal_env: dict[str, str]) -> Settings:
    return Settings.from_env(heal_env)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = open_database(settings)
    yield database
    database.close()


def start_lookup(heal_env: dict[str, str], *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())",
         "worker", "lookup", "--block-ms", "200", "--claim-idle-ms", "1000", *extra],
        cwd=ROOT, env={**os.environ, **heal_env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def pending_of(client: redis.Redis, stream: str, consumer: bytes) -> int:
    return sum(int(c["pending"]) for c in client.xpending(stream, "lookup")["consumers"]
               if c["name"] == consumer)


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["mid-stream", "after-the-last-hand-off"])
def test_a_sigkilled_lookup_stage_loses_no_unmatched_error(
    heal_env: dict[str, str], settings: Settings, db: Database, redis_url: str, moment: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    # an error class no pattern knows, and error ids no other test uses (the outbox's op ids,
    # remembered in the session's database, derive from them): every event is unmatched
    word = "".join(random.choices(string.ascii_lowercase, k=8))
    marker = f"Zorble{word.capitalize()}Fault"
    pipe = client.pipeline(transaction=False)
    for i in range(TOTAL):
        text = f"{marker}: widget{i} frobnicated the quux{i} bundle"
        raw = ErrorEvent(id=f"{word}-{i}", text=text).encode()
        pipe.xadd(settings.stream("errors"), {"event": raw})
    pipe.execute()
    assert drain_inline(settings, client, stages=["fingerprint"]) == TOTAL
    fingerprints, candidates = settings.stream("fingerprints"), settings.stream("candidates")
    # the issue queue is the session's (rows per fine fingerprint, whatever the prefix):
    # count what this test adds to its fingerprints' rows
    fines = sorted({FingerprintEvent.decode(f[b"event"]).fine
                    for _, f in client.xrange(fingerprints)})

    def queued() -> int:
        return int(db.fetchval("SELECT coalesce(sum(count), 0) FROM issue_queue "
                               "WHERE fine = ANY($1::text[])", fines))

    before = queued()

    victim = start_lookup(heal_env, "--batch", "20")
    survivor: subprocess.Popen[bytes] | None = None
    try:
        if moment == "mid-stream":
            name = f"{socket.gethostname()}-{victim.pid}-0".encode()
            wait_for(lambda: client.xlen(candidates) >= 20 or victim.poll() is not None, 180,
                     "the victim's first hand-off")
            assert victim.poll() is None, victim.stderr.read().decode() if victim.stderr else ""
            assert kill_while_holding(victim, lambda: pending_of(client, fingerprints, name),
                                      lambda: client.xlen(candidates) >= TOTAL) > 0
        else:
            # QA's drill: killed as soon as every candidate is out, before the stage's
            # background sync (every 2 s) could have moved a buffered write to the outbox
            deadline = time.monotonic() + 180
            while client.xlen(candidates) < TOTAL:
                assert victim.poll() is None, (
                    victim.stderr.read().decode() if victim.stderr else "")
                assert time.monotonic() < deadline, "the victim did not hand off everything"
                time.sleep(0.002)
            victim.send_signal(signal.SIGKILL)
            victim.wait(60)
        handed_off = client.xlen(candidates)
        assert 0 < handed_off <= TOTAL
        # a new worker (another consumer) takes over the victim's pending entries and
        # synchronizes the outbox the victim left in the shared home
        survivor = start_lookup(heal_env)
        try:
            wait_for(lambda: client.xlen(candidates) >= TOTAL
                     and client.xpending(fingerprints, "lookup")["pending"] == 0
                     and queued() >= before + TOTAL, 180,
                     "every unmatched error in the issue queue after the restart")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}: {client.xlen(candidates)} candidates (victim: {handed_off}), "
                f"{client.xpending(fingerprints, 'lookup')['pending']} pending, "
                f"{queued() - before} in the issue queue of {TOTAL}") from None
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(120) == 0
        assert client.xlen(settings.stream("dead")) == 0
    finally:
        for proc in (victim, survivor):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(30)
        client.close()
    # every unmatched error counted once: none lost with the victim, none counted twice
    assert queued() == before + TOTAL
