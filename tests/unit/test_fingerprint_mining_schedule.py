"""Online mining stays cheap as groups grow: a large group is mined again on a schedule
(``MinerConfig.exact_group_size``, ``regrowth``), a full one never per sequence, and what
arrives in between is placed against the last mining (``GroupMining.place``).

Before, a group was mined again whenever it changed and a full group once for every
sequence it refused: on a stream of new user and host names, 14 ms per event once groups
filled (``bench/mining_growth.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from pipeline.fingerprint.cluster import (
    WILDCARD,
    GroupMining,
    TemplateMiner,
    Tokens,
    mine,
    mine_group,
    render,
)
from pipeline.fingerprint.columns import DEFAULT_CONFIG, templates
from pipeline.fingerprint.store import MemoryTemplateStore

W = WILDCARD


def users(names: Sequence[str]) -> list[Tokens]:
    return [("Invalid", "user", name, "from", W) for name in names]


NAMES = [f"u{chr(97 + i)}{chr(97 + j)}" for i in range(8) for j in range(8)]


class CountingStore(MemoryTemplateStore):
    """The in-memory store, counting whole-group reads."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def members(self, group: str) -> Sequence[Tokens]:
        self.reads += 1
        return super().members(group)


def test_a_mined_group_gives_mine_group_s_templates() -> None:
    lines = users(NAMES[:5]) + [("session", "opened", "for", "root", W)]
    assert GroupMining(lines).result == mine_group(lines) == mine(lines)


def test_an_instance_of_a_mined_template_is_placed_in_it() -> None:
    mining = GroupMining(users(NAMES[:5]))
    assert render(mining.result[users(NAMES[:1])[0]]) == "Invalid user <*> from <*>"
    newcomer = users(["mallory"])[0]
    assert newcomer not in mining.result
    assert mining.template(newcomer) == ("Invalid", "user", W, "from", W)


def test_a_sequence_of_no_cluster_is_its_own_template() -> None:
    mining = GroupMining(users(NAMES[:5]))
    stranger = ("Disk", "quota", "exceeded", "on", "/home")
    assert mining.template(stranger) == stranger


def test_a_sequence_fitting_no_template_is_judged_with_its_cluster() -> None:
    # Given a cluster whose third column is wording (two values only: constants)
    lines = [("Wake", "reason:", "RTC", "(Alarm)", "now"), ("Wake", "reason:", "USB", "(Alarm)",
                                                             "now")]
    mining = GroupMining(lines)
    assert set(mining.result.values()) == set(lines)
    # When a third value arrives: no template holds it
    third = ("Wake", "reason:", "LID", "(Alarm)", "now")
    # Then it is judged with the cluster, as mining the group with it would judge it
    root = {0, 1, 3, 4}
    assert mining.template(third) == templates(sorted([*lines, third]), root)[third]
    assert mining.template(third) == mine_group([*lines, third])[third]


def test_a_large_group_is_mined_again_only_as_it_grows_by_the_regrowth() -> None:
    # Given a miner mining exactly up to 4 sequences, then at every doubling, up to 40
    config = dataclasses.replace(DEFAULT_CONFIG, exact_group_size=4, regrowth=2.0,
                                 max_group_size=40)
    store = CountingStore()
    miner = TemplateMiner(store, config)
    sizes, given = [], []
    # When one new user arrives per batch
    for name in NAMES[:48]:
        before = miner.minings
        miner.prepare(users([name]))
        given.append(miner.template(users([name])[0]))
        if miner.minings > before:
            sizes.append(miner._cache["5"].size)
    # Then it was mined at every change up to 4, then at 8, 16, 32, and once full (40)
    assert sizes == [1, 2, 3, 4, 8, 16, 32, 40]
    # and from the third user on (two values are still wording), mined or placed, every
    # user got the template a batch mining of the set gives
    assert given[2:] == [("Invalid", "user", W, "from", W)] * 46
    assert given[:2] == users(NAMES[:2])
    # and the 8 users the full group refused were placed: no read of the group for them
    assert len(store._groups["5"]) == 40
    reads = store.reads
    for name in NAMES[48:56]:
        miner.prepare(users([name]))
    assert miner.minings == len(sizes) and store.reads == reads


def test_the_per_event_path_keeps_the_same_schedule() -> None:
    config = dataclasses.replace(DEFAULT_CONFIG, exact_group_size=4, regrowth=2.0,
                                 max_group_size=40)
    miner = TemplateMiner(MemoryTemplateStore(), config)
    for name in NAMES[:56]:
        miner.template(users([name])[0])
    assert miner.minings == 8  # 1, 2, 3, 4, 8, 16, 32 and 40 sequences


def test_within_the_exact_size_miners_sharing_one_store_object_stay_exact() -> None:
    # Given two miners reading one in-memory store object (the store tells "changed" once)
    store = MemoryTemplateStore()
    first, second = TemplateMiner(store), TemplateMiner(store)
    lines = users(NAMES[:3])
    first.prepare(lines[:2])
    second.prepare(lines[2:])  # (the second reads the change the first has not seen)
    # When the first is asked about a sequence only the second added
    first.prepare(lines[2:])
    # Then it mined the group again: the template of the whole set, not a placement
    assert first.template(lines[2]) == mine(lines)[lines[2]]
