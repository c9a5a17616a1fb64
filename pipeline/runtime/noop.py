"""A pass-through stage handler: the in-package fake for runtime tests and the benchmark.

``decode`` reads the JSON and checks the ``id``; ``handle`` hands the event on unchanged
(same bytes, so the output can be compared with the input). Not a real stage: it measures
and exercises the runtime alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from pipeline.errors import DecodeError, EventValidationError
from pipeline.stage import Encodable


@dataclass
class PassEvent:
    id: str
    raw: bytes

    def encode(self) -> bytes:
        return self.raw


def decode_pass(raw: bytes) -> PassEvent:
    """Raises DecodeError (not JSON) or EventValidationError (no string ``id``)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not valid JSON: {exc}", raw) from exc
    ev_id = obj.get("id") if isinstance(obj, dict) else None
    if not isinstance(ev_id, str) or not ev_id:
        raise EventValidationError("missing required field 'id'", raw)
    return PassEvent(ev_id, raw)


class PassThroughHandler:
    """Hands every event on unchanged; ``on_event`` (optional) runs first, e.g. to inject
    failures or delays in tests."""

    def __init__(
        self,
        decode: Callable[[bytes], object] = decode_pass,
        on_event: Callable[[object], None] | None = None,
    ) -> None:
        self.decode = decode
        self.on_event = on_event

    def handle(self, event: object) -> Sequence[Encodable]:
        if self.on_event is not None:
            self.on_event(event)
        return [event] if isinstance(event, PassEvent) else []


def main(argv: Sequence[str] | None = None) -> int:
    """A pass-through worker process for reliability tests and the benchmark:
    ``python -m pipeline.runtime.noop REDIS_URL PREFIX [--index I] [--sleep-ms MS] ...``."""
    import argparse
    import time
    from pathlib import Path

    from pipeline.config import Settings
    from pipeline.runtime.connection import redis_client
    from pipeline.runtime.options import WorkerOptions
    from pipeline.runtime.partitions import PartitionedWorker
    from pipeline.runtime.runner import run_threads
    from pipeline.runtime.worker import StageWorker

    parser = argparse.ArgumentParser(prog="python -m pipeline.runtime.noop")
    parser.add_argument("url")
    parser.add_argument("prefix")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--sleep-ms", type=float, default=0.0)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--block-ms", type=int, default=200)
    parser.add_argument("--claim-idle-ms", type=int, default=60_000)
    parser.add_argument("--partitions", type=int, default=1)
    args = parser.parse_args(argv)
    delay = args.sleep_ms / 1000.0
    handler = PassThroughHandler(on_event=(lambda _e: time.sleep(delay)) if delay else None)
    settings = Settings(redis_url=args.url, database_url=None, home=Path("."), prefix=args.prefix,
                        partitions=args.partitions)
    options = WorkerOptions(
        batch_size=args.batch, block_ms=args.block_ms, claim_idle_ms=args.claim_idle_ms,
        claim_interval_s=min(5.0, args.claim_idle_ms / 2000.0),
    )
    client = redis_client(args.url, socket_timeout=args.block_ms / 1000 + 10)
    parts = [StageWorker(client, view, "fingerprint", handler, options=options,
                         index=args.index) for view in settings.partition_views()]
    return run_threads([parts[0] if len(parts) == 1 else PartitionedWorker(parts)])


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
