"""Hooks: the single extension point of the stage runtime (metrics, tracing, breaker checks).

Subclass :class:`Hook` and override what you need; every method is a no-op by default.
A hook that raises is logged and contained, so a broken metrics exporter never stops a
stage. The one exception is our own control flow: a hook may raise
:class:`~pipeline.errors.Retry` or :class:`~pipeline.errors.PermanentError` from
``before_handle`` (e.g. a breaker that is open), and the runtime treats it exactly as if
the handler had raised it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.errors import StageControl

log = logging.getLogger("heal.runtime.hooks")


@dataclass(slots=True)  # not frozen: built once per event, frozen init is 2x slower
class Delivery:
    """One stream entry as delivered to this consumer."""

    stream: str
    entry_id: str
    #: the raw ``event`` field (None when the entry has no such field)
    raw: bytes | None
    #: how many times the entry has been delivered, this delivery included
    deliveries: int = 1
    #: still pending, but deleted from the stream (trimmed) before it was handled
    deleted: bool = False
    #: the entry has no ``event`` field (``raw`` then holds all its fields as JSON)
    missing_event: bool = False
    #: with ``missing_event``: why the entry has no usable ``event`` field when it is not
    #: the lack of one (two ``event`` fields)
    problem: str = ""


class Hook:
    """Base hook; override any of these (all are called in the worker's thread)."""

    def before_handle(self, stage: str, event: Any, delivery: Delivery) -> None:
        """Before the handler runs. May raise Retry / PermanentError."""

    def after_handle(
        self, stage: str, event: Any, outputs: Sequence[Any], elapsed_s: float
    ) -> None:
        """After the handler returned (outputs not yet handed off)."""

    def after_handle_batch(
        self, stage: str, events: Sequence[Any], outputs: Sequence[Sequence[Any]],
        elapsed_s: float,
    ) -> None:
        """After a batch handler (``handle_batch``, see ``pipeline.stage.BatchHandler``)
        returned ``outputs[i]`` for ``events[i]``; ``elapsed_s`` is the batch's mean time per
        event. By default :meth:`after_handle` for each event."""
        for event, produced in zip(events, outputs, strict=True):
            self.after_handle(stage, event, produced, elapsed_s)

    def on_retry(self, stage: str, delivery: Delivery, reason: str, delay_s: float) -> None:
        """The event will be tried again after ``delay_s``."""

    def on_dead_letter(self, stage: str, delivery: Delivery, reason: str) -> None:
        """The event went to the dead-letter stream."""

    def after_handoff(self, stage: str, acked: int, emitted: int, duplicates: int) -> None:
        """A batch's hand-off committed: ``acked`` inputs, ``emitted`` outputs, ``duplicates``
        inputs skipped because their event id was already handed off."""

    def on_reconnect(self, stage: str, error: BaseException, attempt: int) -> None:
        """Redis was unreachable; the worker waits and retries (attempt counts from 1)."""


class HookChain(Hook):
    """Calls every hook in order and contains their failures."""

    def __init__(self, hooks: Sequence[Hook] = ()) -> None:
        self.hooks: list[Hook] = []
        #: one list per method, for the chain's life (the runtime holds on to them)
        self._bound: dict[str, list[Any]] = {name: [] for name in _HOOK_METHODS}
        for hook in hooks:
            self.add(hook)

    def add(self, hook: Hook) -> None:
        self.hooks.append(hook)
        # only overridden methods are called: the per-event cost of an empty hook is zero
        # (a batch reaches an ``after_handle`` override through the default batch method)
        for name in _HOOK_METHODS:
            if _overrides(hook, name) or (name == "after_handle_batch"
                                          and _overrides(hook, "after_handle")):
                self._bound[name].append(getattr(hook, name))

    def bound(self, name: str) -> list[Any]:
        """The hooks' overrides of method ``name`` (the live list: empty means none, so a
        caller may skip the call, and the work of preparing its arguments, per event)."""
        return self._bound[name]

    def _call(self, name: str, *args: Any) -> None:
        for method in self._bound[name]:
            try:
                method(*args)
            except StageControl:
                raise  # our own control flow (Retry / PermanentError) passes through
            except Exception:
                log.exception("hook %s failed (contained)", method.__qualname__)

    def before_handle(self, stage: str, event: Any, delivery: Delivery) -> None:
        self._call("before_handle", stage, event, delivery)

    def after_handle(
        self, stage: str, event: Any, outputs: Sequence[Any], elapsed_s: float
    ) -> None:
        self._call("after_handle", stage, event, outputs, elapsed_s)

    def after_handle_batch(
        self, stage: str, events: Sequence[Any], outputs: Sequence[Sequence[Any]],
        elapsed_s: float,
    ) -> None:
        self._call("after_handle_batch", stage, events, outputs, elapsed_s)

    def on_retry(self, stage: str, delivery: Delivery, reason: str, delay_s: float) -> None:
        self._call("on_retry", stage, delivery, reason, delay_s)

    def on_dead_letter(self, stage: str, delivery: Delivery, reason: str) -> None:
        self._call("on_dead_letter", stage, delivery, reason)

    def after_handoff(self, stage: str, acked: int, emitted: int, duplicates: int) -> None:
        self._call("after_handoff", stage, acked, emitted, duplicates)

    def on_reconnect(self, stage: str, error: BaseException, attempt: int) -> None:
        self._call("on_reconnect", stage, error, attempt)


def _overrides(hook: Hook, name: str) -> bool:
    return getattr(type(hook), name) is not getattr(Hook, name)


_HOOK_METHODS = tuple(
    name for name in vars(Hook) if name.startswith(("before_", "after_", "on_"))
)
