"""Consumer-group bookkeeping: creation on start, stable consumer names, done markers."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import redis

from pipeline.config import Settings

#: the default dedupe window (WorkerOptions.dedupe_ttl_s)
DEFAULT_DEDUPE_WINDOW_S = 6 * 3600


def consumer_name(index: int = 0) -> str:
    """``host-pid-index``: stable for the life of one worker, unique across machines."""
    return f"{socket.gethostname()}-{os.getpid()}-{index}"


def ensure_group(client: Any, stream: str, group: str) -> None:
    """Create the group at the start of the stream (MKSTREAM), unless it exists.

    Starting at ``0`` rather than ``$`` means events published before the first worker
    started are still handled.

    Raises:
        redis.exceptions.ConnectionError: Redis unreachable (the caller retries).
    """
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.exceptions.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def dedupe_keys(
    settings: Settings, stage: str, window_s: int, now: float | None = None
) -> tuple[str, str]:
    """The current and previous windows' marker sets (``<prefix>:done:<stage>:<n>``, with
    the partition's hash tag in a partition's view: one slot with its streams)."""
    window = int((time.time() if now is None else now) // max(window_s, 1))
    return (
        settings.partition_key("done", stage, str(window)),
        settings.partition_key("done", stage, str(window - 1)),
    )


def already_done(
    client: Any, settings: Settings, stage: str, event_id: str,
    window_s: int = DEFAULT_DEDUPE_WINDOW_S,
) -> bool:
    """True when this stage already handed off an event with this id (within the dedupe
    window: between one and two ``window_s``).

    A handler with side effects (applying a fix) checks this before acting, so an event
    published twice acts once.

    Raises:
        redis.exceptions.ConnectionError: Redis unreachable.
    """
    pipe = client.pipeline(transaction=False)
    # partitioned: the event's partition is not known from its id, so every one is asked
    views = [settings] if settings.partition is not None else settings.partition_views()
    for view in views:
        for key in dedupe_keys(view, stage, window_s):
            pipe.sismember(key, event_id)
    return any(pipe.execute())
