"""Issue groups by mined template: three `user X not found` fingerprints are one problem."""

from __future__ import annotations

import datetime as dt
import random

from pipeline.operator.groups import by_template

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def issue(fine: str, sample: str, count: int, minute: int) -> dict[str, object]:
    when = T0 + dt.timedelta(minutes=minute)
    return {"fine": fine, "coarse": "", "count": count, "first_seen": when, "last_seen": when,
            "sample": sample, "status": "open"}


ISSUES = [
    issue("fp-a", "ERROR user alice not found", 3, 1),
    issue("fp-b", "ERROR user bob not found", 2, 5),
    issue("fp-c", "ERROR user carol not found", 1, 3),
    issue("fp-d", "ERROR disk quota exceeded on volume", 4, 2),
]


def test_fingerprints_of_one_template_are_one_group() -> None:
    groups = by_template(ISSUES)
    users = next(g for g in groups if "not found" in g["template"])
    assert users["template"] == "ERROR: user <*> not found"
    assert users["count"] == 6 and sorted(users["fines"]) == ["fp-a", "fp-b", "fp-c"]
    assert users["first_seen"] == T0 + dt.timedelta(minutes=1)
    assert users["sample"] == "ERROR user bob not found"  # the newest
    assert [g["count"] for g in groups] == [6, 4]


def test_grouping_does_not_depend_on_order() -> None:
    shuffled = ISSUES[:]
    random.Random(7).shuffle(shuffled)
    def key(groups: list[dict[str, object]]) -> list[tuple[object, ...]]:
        return [(g["template"], g["count"], sorted(g["fines"]), g["cluster"])  # type: ignore[arg-type]
                for g in groups]
    assert key(by_template(shuffled)) == key(by_template(ISSUES))
    assert by_template([]) == []


def test_summary_counts_groups_and_keeps_the_fine_fingerprints() -> None:
    from pipeline.operator.groups import summary

    groups, top = summary(ISSUES, 1)
    assert groups == 2 and len(top) == 1
    users = top[0]
    assert users["template"] == "ERROR: user <*> not found" and users["count"] == 6
    assert users["fingerprints"] == 3
    assert users["fines"] == ["fp-a", "fp-b", "fp-c"]  # most frequent first: 3, 2, 1
    assert users["fine"] == "fp-a"
    assert summary([], 5) == (0, [])
