"""The Redis template store shared by several workers (real Redis via ``redis_url``)."""

from __future__ import annotations

import random

import redis

from pipeline.fingerprint import Fingerprinter
from pipeline.fingerprint.cluster import mine, tokenize
from pipeline.fingerprint.rules import DEFAULT_NORMALIZER
from pipeline.fingerprint.store import MemoryTemplateStore, RedisTemplateStore

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
