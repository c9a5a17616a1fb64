"""Consumer-group bookkeeping: creation on start, stable consumer names, done markers."""

from __future__ import annotations

import os
import socket
from typing import Any

import redis

from pipeline.config import Settings


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


def dedupe_key(settings: Settings, stage: str, event_id: str) -> str:
    """The marker set atomically with an event's hand-off (``<prefix>:done:<stage>:<id>``)."""
    return settings.key("done", stage, event_id)


def already_done(client: Any, settings: Settings, stage: str, event_id: str) -> bool:
    """True when this stage already handed off an event with this id (within the dedupe TTL).

    A handler with side effects (applying a fix) checks this before acting, so an event
    published twice acts once.

    Raises:
        redis.exceptions.ConnectionError: Redis unreachable.
    """
    return bool(client.exists(dedupe_key(settings, stage, event_id)))
