"""Success and failure records of workflow steps, so later stages can see a failure resolved.

Choice (documented in the README): successes are NOT published to ``<prefix>:errors`` (the
stages would have to filter them out of every read). Instead each step has a small Redis hash
``<prefix>:step:<key>`` (30-day TTL) holding its last status, and when a step succeeds after a
failure, an entry ``{error_id, step, ts}`` is appended to the stream ``<prefix>:resolutions``
(the failure ``error_id`` has been resolved by a later success of the same step).

The step key is a hash of (repository path, workflow id, step name), so the same step in two
checkouts or two workflows is tracked apart.

The hash and the resolution are written in ONE transaction (MULTI/EXEC): a success flips the
step's status and records the failure it resolved together, so a crash in between can neither
lose the resolution (status success, no entry: the next success resolves nothing) nor repeat
it (entry added, status still failure: the next success adds it again). A transaction's keys
must share a Redis Cluster slot, so with ``HEAL_PARTITIONS`` > 1 both belong to the step's
partition (CRC-32 of the step key, like an event's): ``<prefix>:step:<key>:{k}`` and
``<prefix>:resolutions:{k}``, one slot. Unpartitioned, the names stay
``<prefix>:step:<key>`` and ``<prefix>:resolutions`` (on a cluster the prefix's own hash
tag, ``{heal}``, puts them in one slot).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import redis

from pipeline.config import Settings
from pipeline.errors import StreamUnavailable
from pipeline.events import utc_now

STEP_TTL_S = 30 * 24 * 3600
RESOLUTIONS = "resolutions"
RESOLUTIONS_MAXLEN = 100_000


def step_key(repo_path: str, workflow_id: str, step: str) -> str:
    """The key of a step; a path that is not UTF-8 (surrogate escapes, PEP 383) hashes as
    its escapes, the same on the success and the failure path."""
    whole = f"{repo_path}\0{workflow_id}\0{step}"
    return hashlib.sha256(whole.encode("utf-8", "surrogatepass")).hexdigest()[:24]


@dataclass(frozen=True)
class StepStatus:
    status: str  # "success" | "failure" | ""
    last_error_id: str
    resolved_error_id: str


class StepRecorder:
    """Reads and writes the per-step records described in the module docstring."""

    def __init__(self, client: Any, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    def _view(self, key: str) -> Settings:
        """The settings view of the step's partition (itself when unpartitioned)."""
        return self.settings.in_partition(self.settings.partition_for(key))

    def _key(self, key: str) -> str:
        return self._view(key).partition_key("step", key)

    def resolutions_stream(self, key: str) -> str:
        """Where a success of step ``key`` records the failure it resolved."""
        return self._view(key).stream(RESOLUTIONS)

    def record_failure(self, key: str, step: str, error_id: str) -> None:
        """Raises: StreamUnavailable."""
        fields = {"step": step, "status": "failure", "last_error_id": error_id,
                  "last_failure_ts": utc_now()}
        self._write(key, fields, resolved=None)

    def record_success(self, key: str, step: str) -> str | None:
        """Record a success; returns the error id this success resolves, if the step had failed.

        Raises: StreamUnavailable.
        """
        previous = self.status(key)
        resolved = previous.last_error_id if previous.status == "failure" else None
        fields = {"step": step, "status": "success", "last_success_ts": utc_now()}
        if resolved:
            fields["resolved_error_id"] = resolved
        self._write(key, fields, resolved=(resolved, step) if resolved else None)
        return resolved

    def status(self, key: str) -> StepStatus:
        """Raises: StreamUnavailable."""
        try:
            raw = self.client.hgetall(self._key(key))
        except redis.RedisError as exc:
            raise StreamUnavailable(f"cannot read step record: {exc}") from exc
        data = {_s(k): _s(v) for k, v in raw.items()}
        return StepStatus(
            data.get("status", ""), data.get("last_error_id", ""),
            data.get("resolved_error_id", ""),
        )

    def _write(self, key: str, fields: dict[str, str], resolved: tuple[str, str] | None) -> None:
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(self._key(key), mapping=fields)
            pipe.expire(self._key(key), STEP_TTL_S)
            if resolved:
                pipe.xadd(
                    self.resolutions_stream(key),  # the step hash's slot (module docstring)
                    {"error_id": resolved[0], "step": resolved[1], "step_key": key,
                     "ts": utc_now()},
                    maxlen=RESOLUTIONS_MAXLEN, approximate=True,
                )
            pipe.execute()
        except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
            # (a cluster client's refusals, e.g. a cross-slot transaction, are no RedisError)
            raise StreamUnavailable(f"cannot record step status: {exc}") from exc


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
