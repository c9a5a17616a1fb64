"""The one hint of the commands that publish errors (``heal emit``, ``heal watch``, ``heal
backfill``) when no running worker reads what they published: unlike ``heal run`` and ``heal
demo``, which drain inline, they only publish, and the events would wait unseen (QA s18b #10).
A worker counts as running while its heartbeat (``<prefix>:alive:<stage>:*``) is fresh."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from pipeline.config import STAGES, STREAM_ERRORS, Settings
from pipeline.errors import StreamUnavailable
from pipeline.runtime.heartbeat import live_workers

T = TypeVar("T")

#: the stages that read what the producers publish
READERS = tuple(stage for stage, (source, _) in STAGES.items() if source == STREAM_ERRORS)


def unserved_hint(client: Any, settings: Settings, published: int) -> str | None:
    """What to say when ``published`` events went to the error stream and no running worker
    reads it; None when one does, nothing was published, or Redis cannot tell (the publish
    itself reported any trouble)."""
    if published <= 0:
        return None
    try:
        live = live_workers(client, settings)
    except StreamUnavailable:
        return None
    if any(live.get(stage) for stage in READERS):
        return None
    stage = READERS[0]
    return (f"no worker is running to handle the {published} event(s) published to "
            f"{settings.stream(STREAM_ERRORS)}: start `heal up` or `heal worker {stage}` "
            "(they wait until one runs; `heal status` shows them)")


def say_unserved(command: str, client: Any, settings: Settings, published: int) -> None:
    """Print the hint on stderr (``heal COMMAND: ...``), if there is one."""
    hint = unserved_hint(client, settings, published)
    if hint:
        print(f"heal {command}: {hint}", file=sys.stderr)


def hint_once(command: str, client: Any, settings: Settings,
              publish: Callable[[list[Any]], T]) -> Callable[[Iterable[Any]], T]:
    """``publish`` that, after its first call that published events, checks once whether a
    worker reads them (a long ``heal watch`` says so when it starts publishing, not when it
    stops)."""
    checked = False

    def wrapped(events: Iterable[Any]) -> T:
        nonlocal checked
        batch = list(events)
        result = publish(batch)
        if batch and not checked:
            checked = True
            say_unserved(command, client, settings, len(batch))
        return result

    return wrapped
