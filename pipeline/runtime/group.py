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
    """The current and previous windows' marker sets (``<prefix>:done:<stage>:<n>``)."""
    window = int((time.time() if now is None else now) // max(window_s, 1))
    return (
        settings.key("done", stage, str(window)),
        settings.key("done", stage, str(window - 1)),
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
    current, previous = dedupe_keys(settings, stage, window_s)
    pipe = client.pipeline(transaction=False)
    pipe.sismember(current, event_id)
    pipe.sismember(previous, event_id)
    return any(pipe.execute())
