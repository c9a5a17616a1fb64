"""One decision per suggestion at a time: ``heal apply``, ``POST /api/approvals/<id>/approve``
and ``.../reject`` each hold this Redis lock (``serve:approving:<id>``, one per attempt) while
they decide, and re-read the suggestion's state inside it.

Without it a reject (or a ``heal apply``) read the row as still ``suggested`` while an approve
was running the failing step again: both were told they won, the commit landed and the record
said ``rejected`` (or ``skipped``).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import redis

from pipeline.config import Settings
from pipeline.errors import AccessRefused, HealError, StreamUnavailable
from pipeline.runtime.connection import redis_failure

T = TypeVar("T")

#: longest a decision may hold the lock (applying runs the failing step again); a holder that
#: died leaves it for at most this long
DECISION_LOCK_S = 3600

# deletes the lock only while it is still this holder's (not one taken after it expired)
_RELEASE = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
            "return redis.call('del', KEYS[1]) else return 0 end")

RedisCall = Callable[[Callable[[redis.Redis], Any]], Any]


class BeingDecided(HealError):
    """Another request (``heal apply``, an approve or a reject) holds the suggestion's lock
    (exit 1: the work was not done; the API answers 409)."""


def lock_key(settings: Settings, attempt_id: str) -> str:
    # the name predates ``heal apply`` taking it too; kept so a serve and a CLI of different
    # versions still exclude each other
    return settings.key("serve", "approving", attempt_id)


def direct(client: redis.Redis, prefix: str) -> RedisCall:
    """Run a Redis call on ``client``: a refusal by the ACL of its user (NOPERM) becomes
    AccessRefused saying what to grant (keys under HEAL_STREAM_PREFIX ``prefix``, or the
    command), any other Redis error StreamUnavailable (``redis_failure``)."""
    def call(fn: Callable[[redis.Redis], T]) -> T:
        try:
            return fn(client)
        except redis.RedisError as exc:
            raise redis_failure(exc, "decision lock", prefix) from exc
    return call


@contextlib.contextmanager
def deciding(settings: Settings, attempt_id: str, call: RedisCall) -> Iterator[None]:
    """Hold the decision lock of ``attempt_id`` for the block; the caller re-reads the
    suggestion's state inside it.

    Raises: BeingDecided (held by another request), StreamUnavailable, AccessRefused (the
    ACL of Redis's user refused the lock).
    """
    key = lock_key(settings, attempt_id)
    token = uuid.uuid4().hex.encode()
    if not call(lambda c: c.set(key, token, nx=True, ex=DECISION_LOCK_S)):
        raise BeingDecided(f"attempt {attempt_id!r} is being applied by another request "
                           "(heal apply, or an approve or reject through heal serve); "
                           f"`heal apply {attempt_id}` once it is done shows how it was decided")
    ok = False
    try:
        yield
        ok = True
    finally:
        try:
            call(lambda c: c.eval(_RELEASE, 1, key, token))
        except (StreamUnavailable, AccessRefused):
            if ok:  # the decision stands; the lock would block the next one until it expires
                raise
            # the block's own failure is the one to report (the lock expires by itself)
