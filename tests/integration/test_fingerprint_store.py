"""The Redis template store shared by several workers (real Redis via ``redis_url``)."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import redis

from consumers import fingerprint as stage
from pipeline.config import Settings
from pipeline.events import ErrorEvent
from pipeline.fingerprint import Fingerprinter
from pipeline.fingerprint.cluster import mine, tokenize
from pipeline.fingerprint.hashing import ALGORITHM_VERSION
from pipeline.fingerprint.rules import DEFAULT_NORMALIZER
from pipeline.fingerprint.store import MemoryTemplateStore, RedisTemplateStore
from pipeline.stage import StageContext

USERS = ["alice", "bob", "carol", "dave", "erin", "frank"]
MESSAGES = [f"Invalid user {u} from 10.0.0.{i}" for i, u in enumerate(USERS)] + [
    "session opened for user root",
    "session closed for user root",
]


def test_two_workers_sharing_redis_agree_with_a_single_batch(redis_url: str, prefix: str) -> None:
    # Given two workers (separate clients and miners) sharing one Redis template store
    workers = [
        Fingerprinter(RedisTemplateStore(redis.Redis.from_url(redis_url), f"{prefix}:fp"))
        for _ in range(2)
    ]
    # When the messages arrive shuffled, alternating between the workers
    shuffled = MESSAGES[:]
    random.Random(7).shuffle(shuffled)
    for index, message in enumerate(shuffled):
        workers[index % 2].fingerprint(message)
    # Then, afterwards, both workers give every message the template a single batch gives
    batch = mine(tokenize(DEFAULT_NORMALIZER.normalize(m)) for m in MESSAGES)
    for message in MESSAGES:
        expected = " ".join(batch[tokenize(DEFAULT_NORMALIZER.normalize(message))])
        assert {w.fingerprint(message).template for w in workers} == {expected}
    assert workers[0].fingerprint(MESSAGES[0]).template == "Invalid user <*> from <*>"


def test_redis_store_matches_memory_store(redis_url: str, prefix: str) -> None:
    shared = RedisTemplateStore(redis.Redis.from_url(redis_url), f"{prefix}:fp")
    local = MemoryTemplateStore()
    for store in (shared, local):
        for message in MESSAGES:
            store.add("g", tokenize(message), limit=4)
    assert list(shared.members("g")) == list(local.members("g"))
    assert len(shared.members("g")) == 4  # the limit holds


def test_stage_workers_share_templates_through_redis(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    # Given two fingerprint-stage handlers built with the runtime's redis resource
    settings = Settings(redis_url=redis_url, database_url=None, home=tmp_path, prefix=prefix)
    handlers = [
        stage.build(StageContext(settings, "fingerprint", resources={"redis": client}))
        for client in (redis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url))
    ]
    # When each handles some of the events
    events = [ErrorEvent(id=f"e{i}", text=m) for i, m in enumerate(MESSAGES)]
    for index, event in enumerate(events):
        handlers[index % 2].handle(event)
    # Then a redelivered event gets the template mined from everything both have seen
    out = handlers[1].handle(events[0])[0]
    assert out.id == "e0:fingerprint"
    assert out.template == "Invalid user <*> from <*>"
    assert out.params["cluster"] == handlers[0].handle(events[1])[0].params["cluster"]
    keys = redis.Redis.from_url(redis_url).keys(f"{prefix}:fp:{ALGORITHM_VERSION}:tpl:*")
    assert keys  # the templates live under the stream prefix, per algorithm version


class CountingClient:
    """A real redis client that counts round trips (pipelines and script calls)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.round_trips = 0

    def register_script(self, script: str) -> object:
        return self.client.register_script(script)

    def pipeline(self, transaction: bool = True) -> object:
        pipe = self.client.pipeline(transaction=transaction)
        execute = pipe.execute

        def counted() -> list[object]:
            self.round_trips += 1
            return execute()

        pipe.execute = counted  # type: ignore[method-assign]
        return pipe

    def evalsha(self, *args: object) -> object:
        self.round_trips += 1
        return self.client.evalsha(*args)  # type: ignore[arg-type]


def test_batched_workers_agree_with_a_single_batch_in_one_round_trip_per_batch(
    redis_url: str, prefix: str
) -> None:
    # Given two workers sharing the Redis store, each preparing its batches in one go
    clients = [CountingClient(redis.Redis.from_url(redis_url)) for _ in range(2)]
    workers = [Fingerprinter(RedisTemplateStore(c, f"{prefix}:fp")) for c in clients]
    messages = MESSAGES * 3
    random.Random(11).shuffle(messages)
    # When the shuffled messages arrive in batches of 5, alternating between the workers
    for index, start in enumerate(range(0, len(messages), 5)):
        batch = messages[start:start + 5]
        worker = workers[index % 2]
        worker.prepare([(m, "") for m in batch])
        for message in batch:
            worker.fingerprint(message)
    # Then the store was reached once per batch (adds and new members together), never
    # per event
    batches = -(-len(messages) // 5)
    assert sum(c.round_trips for c in clients) == batches
    # And a last batch on each worker gives every message the single-batch template
    expected = mine(tokenize(DEFAULT_NORMALIZER.normalize(m)) for m in MESSAGES)
    for worker in workers:
        worker.prepare([(m, "") for m in MESSAGES])
        for message in MESSAGES:
            want = " ".join(expected[tokenize(DEFAULT_NORMALIZER.normalize(message))])
            assert worker.fingerprint(message).template == want


def test_the_store_survives_redis_losing_its_scripts(redis_url: str, prefix: str) -> None:
    # Given a worker that added templates (its add script is loaded once, then run by SHA)
    client = redis.Redis.from_url(redis_url)
    worker = Fingerprinter(RedisTemplateStore(client, f"{prefix}:fp"))
    worker.prepare([(m, "") for m in MESSAGES[:3]])
    # When Redis forgets its scripts (a restart, SCRIPT FLUSH) and new messages arrive
    client.script_flush()
    worker.prepare([(m, "") for m in MESSAGES])
    # Then nothing is lost: every message is in the shared store and mined from all of them
    assert worker.fingerprint(MESSAGES[0]).template == "Invalid user <*> from <*>"
    fresh = RedisTemplateStore(redis.Redis.from_url(redis_url), f"{prefix}:fp")
    assert sum(len(fresh.members(str(n))) for n in range(1, 12)) == len(set(MESSAGES))


def test_a_stream_of_new_names_is_mined_on_a_schedule_not_per_event(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    # Given the fingerprint stage on the real store (default miner: groups of at most 5,000
    # sequences, mined exactly up to 64, then each time they grow by half), every batch's
    # round trips counted
    client = CountingClient(redis.Redis.from_url(redis_url))
    settings = Settings(redis_url=redis_url, database_url=None, home=tmp_path, prefix=prefix)
    handler = stage.build(StageContext(settings, "fingerprint", resources={"redis": client}))
    miner = handler.fingerprinter.miner
    assert miner is not None
    # When 5,600 events each name a new user, in batches of 500 (the stage's batch size)
    names = ["".join(letters) for letters in itertools.product("abcdefghij", repeat=4)]
    events = [ErrorEvent(id=f"e{i}", text=f"Invalid user {names[i]} from 10.0.{i % 250}.1")
              for i in range(5600)]
    batches = [events[s:s + stage.BATCH_SIZE] for s in range(0, len(events), stage.BATCH_SIZE)]
    outputs = []
    for batch in batches:
        handler.prepare(batch)
        outputs += [out for produced in handler.handle_batch(batch) for out in produced]
    # Then the group was mined at 500, 1,000, 1,500, 2,500, 4,000 and 5,000 (full) sequences:
    # 6 times, not once per batch, and never for each of the 600 the full group refused
    # (that was 600 minings of 5,000 sequences, tens of milliseconds each)
    assert miner.minings == 6
    # And the store was reached once per batch (no read of the whole group per event)
    assert client.round_trips == len(batches)
    # And every event, mined or placed, got the template the names share
    assert {out.template for out in outputs} == {"Invalid user <*> from <*>"}
    assert len(RedisTemplateStore(redis.Redis.from_url(redis_url), f"{prefix}:fp:"
                                  f"{ALGORITHM_VERSION}").members("5")) == 5000
