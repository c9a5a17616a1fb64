"""The README's raw-producer routing recipe, run verbatim, routes every event exactly as heal's
own producers do (``producers.publisher``), ``null`` and missing sub-objects included: one
event id published by both paths must land in one partition."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.config import Settings
from pipeline.events import ErrorEvent
from producers.publisher import Publisher, routing_key

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def recipe() -> str:
    """The python block of the README that publishes to a partition."""
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    (found,) = [b for b in blocks if "zlib.crc32" in b and "heal:errors:{" in b]
    return found


class Recorder:
    """Stands for the recipe's redis client ``r``: records the stream of each XADD."""

    def __init__(self) -> None:
        self.streams: list[str] = []

    def xadd(self, stream: str, fields: dict[str, Any]) -> None:
        self.streams.append(stream)


def run_recipe(event: dict[str, Any], n: int) -> tuple[str, str]:
    r = Recorder()
    namespace: dict[str, Any] = {"event": event, "N": n, "r": r}
    exec(compile(recipe(), "README.md recipe", "exec"), namespace)  # noqa: S102 - our README
    (stream,) = r.streams
    return namespace["routing_key"](event), stream


VALUES: list[Any] = [None, "", "/srv/app", "nightly", "runner-3", "ci", 0, 7, "ünïcode ✓",
                     " spaced ", "a:b", "{x}"]


def sub(rng: random.Random, names: tuple[str, ...]) -> Any:
    roll = rng.random()
    if roll < 0.15:
        return None  # "repo": null
    if roll < 0.3:
        return "MISSING"
    return {name: rng.choice(VALUES) for name in names if rng.random() < 0.7}


def generated(count: int) -> list[dict[str, Any]]:
    rng = random.Random(20261201)
    events = []
    for i in range(count):
        event: dict[str, Any] = {"v": 1, "id": f"ev-{i}-{rng.randrange(10**6)}", "text": "boom"}
        for key, names in (("repo", ("path", "commit", "branch")),
                           ("workflow", ("id", "run_id", "phase", "step")),
                           ("source", ("name", "host"))):
            value = sub(rng, names)
            if value != "MISSING":
                event[key] = value
        if isinstance(event.get("source"), dict) and rng.random() < 0.5:
            event["source"]["kind"] = rng.choice(["subprocess", "log", "api", "hook"])
        events.append(event)
    return events


@pytest.mark.parametrize("n", [2, 3, 7, 64])
def test_the_readme_recipe_routes_like_heal_emit(n: int) -> None:
    settings = Settings(None, None, Path("/nonexistent"), "heal", partitions=n)
    publisher = Publisher(None, settings)
    for raw in generated(3000):
        event = ErrorEvent.decode(orjson.dumps(raw))  # what heal emit publishes
        key, stream = run_recipe(raw, n)
        assert key == routing_key(event), raw
        assert stream == publisher.stream_for(event), raw


def test_events_with_no_repository_workflow_or_source_spread_by_id() -> None:
    # (the source kind's default "api" once sent all of them to one partition)
    settings = Settings(None, None, Path("/nonexistent"), "heal", partitions=8)
    publisher = Publisher(None, settings)
    streams = {publisher.stream_for(ErrorEvent(id=f"bare-{i}", text="boom")) for i in range(200)}
    assert len(streams) == 8
    kinds = {publisher.stream_for(ErrorEvent.decode(orjson.dumps(
        {"v": 1, "id": f"k-{i}", "text": "x", "source": {"kind": "log"}}))) for i in range(200)}
    assert len(kinds) == 8


def test_one_producer_s_events_without_repository_stay_together() -> None:
    settings = Settings(None, None, Path("/nonexistent"), "heal", partitions=8)
    publisher = Publisher(None, settings)
    streams = {publisher.stream_for(ErrorEvent.decode(orjson.dumps(
        {"v": 1, "id": f"s-{i}", "text": "x",
         "source": {"kind": "log", "name": "syslog", "host": "web-1"}}))) for i in range(50)}
    assert len(streams) == 1
