"""Redis Cluster hash tags: heal's reading of a key is Redis's own (the first ``{``, the first
``}`` after it, non-empty content), and the cluster layout check decides on the keys the
hand-off really touches."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from redis.crc import key_slot

from pipeline.config import Settings
from pipeline.errors import ConfigError
from pipeline.runtime.connection import hash_tag
from storage.engines import _check_cluster_keys


@pytest.mark.parametrize(("key", "tag"), [
    ("heal:errors", None),
    ("{heal}:errors", "heal"),
    ("heal:errors:{2}", "2"),
    ("{}:errors:{0}", None),          # an empty tag is no tag: the whole key is hashed
    ("he{}al:errors:{0}", None),
    ("a{b:errors:{0}", "b:errors:{0"),  # the first } after the first {
    ("a}b:errors:{0}", "0"),
    ("{{heal}}:errors", "{heal"),
    ("{a}{b}", "a"),
    ("{", None),
    ("}{", None),
])
def test_hash_tag_follows_redis(key: str, tag: str | None) -> None:
    assert hash_tag(key) == tag


def test_hash_tag_gives_the_slot_redis_gives_on_random_keys() -> None:
    rng = random.Random(7)
    for _ in range(20_000):
        key = "".join(rng.choice("ab{}:0") for _ in range(rng.randint(0, 9)))
        tag = hash_tag(key)
        assert key_slot((tag if tag is not None else key).encode()) == key_slot(key.encode()), key


def cluster(prefix: str, partitions: int) -> Settings:
    return Settings(redis_url="redis+cluster://127.0.0.1:1", database_url=None,
                    home=Path("/nonexistent"), prefix=prefix, partitions=partitions)


@pytest.mark.parametrize(("prefix", "partitions"), [
    ("{heal}", 1), ("x{heal}y", 1), ("{{}}", 1),
    ("heal", 3), ("a}b", 3),
])
def test_layouts_whose_hand_off_keys_share_a_slot_are_accepted(prefix: str,
                                                               partitions: int) -> None:
    _check_cluster_keys(cluster(prefix, partitions))


@pytest.mark.parametrize(("prefix", "partitions", "message"), [
    ("heal", 1, "give HEAL_STREAM_PREFIX a hash tag"),
    ("{}", 1, r"give HEAL_STREAM_PREFIX a hash tag \(HEAL_STREAM_PREFIX=\{heal\}\).*empty \{\}"),
    ("he{}al", 1, "give HEAL_STREAM_PREFIX a hash tag.*empty"),
    ("a{b", 1, "give HEAL_STREAM_PREFIX a hash tag"),
    ("{heal}", 3, "has a hash tag: with HEAL_PARTITIONS=3 every partition would land"),
    ("a{b", 3, "hide the partitions' {k} tags"),
    # not "has a hash tag": Redis ignores an empty {}, but it is still the first {, so the
    # whole key is hashed and the partition's {k} is never looked at
    ("{}", 3, r"hide the partitions' \{k\} tags.*ignores an empty \{\}"),
    ("he{}al", 3, "hide the partitions' {k} tags"),
])
def test_cross_slot_layouts_are_refused_with_what_to_change(prefix: str, partitions: int,
                                                            message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _check_cluster_keys(cluster(prefix, partitions))
