"""``heal emit`` and the Python API: publish events given as JSON (lines).

Each line is validated with :meth:`ErrorEvent.from_dict`; a bad line is reported with its line
number and reason and does not stop the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pipeline.config import Settings
from pipeline.errors import DecodeError
from pipeline.events import SCHEMA_VERSION, ErrorEvent
from producers.context import hostname, new_id
from producers.publisher import PartlyPublished, Publisher, connect

_default_publisher: Publisher | None = None


def emit(
    text: str,
    id: str | None = None,  # noqa: A002 - the contract's field name
    *,
    publisher: Publisher | None = None,
    attest: bool = False,
    **fields: Any,
) -> str:
    """Publish one error to ``<prefix>:errors`` and return its event id.

    ``fields`` are the other contract fields (``source``, ``workflow``, ``repo``, ``command``,
    ``exit_code``, ``tags``, ``ts``); ``id`` defaults to a fresh ``api-<uuid>``. The publisher
    defaults to one connected from the environment (``HEAL_*`` variables), made once.

    Example::

        from producers import emit
        emit("ModuleNotFoundError: No module named 'yaml'", command=["pytest"], exit_code=1,
             workflow={"id": "nightly", "step": "pytest"})

    ``attest=True`` signs the event with the operator's key (pipeline.trust.attest), as
    ``heal run`` does: only for operator-side code that ran ``command`` itself in the
    repository it names (an orchestrator adapter such as :mod:`producers.dagster`); without
    it the event is data, diagnosed but acted on only where operator configuration allows.

    Raises:
        EventValidationError: the fields break the contract (the message says which and why).
        StreamUnavailable: Redis cannot be reached.
        ConfigError: ``attest`` and the signing key cannot be read or created.
    """
    obj: dict[str, Any] = {"v": SCHEMA_VERSION, "id": id or new_id("api"), "text": text}
    obj["source"] = {"kind": "api", "host": hostname()}
    obj.update(fields)
    event = ErrorEvent.from_dict(obj)
    out = publisher or _publisher()
    if attest:
        from pipeline.trust.attest import attest as sign

        event = sign(event, out.settings)
    out.publish(event)
    return event.id


def _publisher() -> Publisher:
    global _default_publisher
    if _default_publisher is None:
        settings = Settings.from_env()
        _default_publisher = Publisher(connect(settings), settings)
    return _default_publisher


@dataclass
class EmitReport:
    published: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)
    #: valid events read but not published because publishing them failed
    unpublished: int = 0
    #: the line numbers of those events, in order (exactly the ones to send again: Redis may
    #: refuse some events of a batch and take the others)
    unpublished_lines: list[int] = field(default_factory=list)
    #: the number of the last line read (the lines after it were not read)
    last_line: int = 0


def parse_lines(lines: Iterable[bytes | str]) -> Iterator[tuple[int, ErrorEvent | str]]:
    """(line number, event or the reason the line is bad); blank lines are skipped. A line is
    decoded as a stage decodes a raw XADD (:meth:`ErrorEvent.decode`): the same reasons."""
    for number, line in enumerate(lines, 1):
        raw = line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line
        if not raw.strip():
            continue
        try:
            yield number, ErrorEvent.decode(raw)
        except DecodeError as exc:  # (EventValidationError too)
            yield number, exc.reason


def emit_lines(lines: Iterable[bytes | str], publisher: Publisher, batch: int = 500,
               report: EmitReport | None = None) -> EmitReport:
    """Publish every valid line (in batches); collect the bad ones with their reasons.

    Pass ``report`` to keep the counts when this raises: when reading ``lines`` fails (an
    input error, an interrupt), the events read so far are published first and the error
    then propagates; events whose publishing failed are counted in ``report.unpublished``.

    Raises:
        StreamUnavailable: Redis cannot be reached or refused writes (the events of that
            batch it did not take are counted in ``report.unpublished``, their line numbers
            in ``report.unpublished_lines``; PartlyPublished when it took some).
        whatever reading ``lines`` raised, after the events read before it were published.
    """
    report = report if report is not None else EmitReport()
    pending: list[tuple[int, ErrorEvent]] = []
    try:
        for number, item in parse_lines(lines):
            report.last_line = number
            if isinstance(item, str):
                report.bad.append((number, item))
                continue
            pending.append((number, item))
            if len(pending) >= batch:
                events, pending = pending, []
                _publish(publisher, events, report)
    except BaseException as exc:  # (an interrupt too: what was read is not dropped)
        if pending:
            try:
                _publish(publisher, pending, report)
            except Exception as failed:  # the first error goes on; this one is noted on it
                exc.add_note(f"{len(pending)} event(s) read before it were not published: "
                             f"{failed}")
        raise
    _publish(publisher, pending, report)
    return report


def _publish(publisher: Publisher, events: list[tuple[int, ErrorEvent]],
             report: EmitReport) -> None:
    """Publish ``events`` (line number, event) into ``report``; on failure the ones not
    published are counted as such, with their line numbers: when Redis refused some and took
    others (PartlyPublished), exactly the refused ones."""
    if not events:
        return
    try:
        report.published += len(publisher.publish_many(event for _, event in events))
    except PartlyPublished as exc:
        missed = [number for (number, _), id_ in zip(events, exc.ids, strict=True)
                  if id_ is None]
        report.published += len(events) - len(missed)
        report.unpublished += len(missed)
        report.unpublished_lines.extend(missed)
        raise
    except BaseException:
        report.unpublished += len(events)
        report.unpublished_lines.extend(number for number, _ in events)
        raise


def line_ranges(numbers: list[int], most: int = 20) -> str:
    """``numbers`` (ascending) as ranges, ``3, 7-9, 12``; past ``most`` ranges, how many
    more lines."""
    ranges: list[tuple[int, int]] = []
    for number in numbers:
        if ranges and number == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], number)
        else:
            ranges.append((number, number))
    shown = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges[:most])
    rest = sum(b - a + 1 for a, b in ranges[most:])
    return shown + (f" and {rest} more line(s)" if rest else "")
