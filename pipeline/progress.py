"""Progress of long work (backfill, shadow replay) on stderr.

On a colour terminal (see :func:`pipeline.console.colour_enabled`) a rich progress bar with
the rate (bytes/s or records/s) and the time left when the total is known; anywhere else
(pipes, CI logs, ``NO_COLOR``, ``TERM=dumb``) one plain line at most every ``every_s``
seconds, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, Any

from pipeline.console import colour_enabled, rich_console

DEFAULT_EVERY_S = 2.0


class ProgressReporter:
    """``update(done, total, message)`` as work advances; ``close()`` at the end."""

    def __init__(self, label: str, unit: str = "records", stream: IO[str] | None = None,
                 every_s: float = DEFAULT_EVERY_S) -> None:
        self.label, self.unit = label, unit
        self.out = stream or sys.stderr
        self.every_s = every_s
        self._last = time.monotonic()
        self._bar: Any = None
        self._task: Any = None
        self._rich = colour_enabled(self.out)

    def update(self, done: float, total: float | None = None,
               message: Callable[[], str] | None = None) -> None:
        if self._rich:
            self._update_bar(done, total)
            return
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            text = message() if message else f"{done:,.0f} {self.unit}"
            print(f"{self.label}: {text}", file=self.out, flush=True)

    def _update_bar(self, done: float, total: float | None) -> None:
        if self._bar is None:
            self._bar = _make_bar(self.unit, self.out, total is not None)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=total)
        self._bar.update(self._task, completed=done, total=total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> ProgressReporter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _make_bar(unit: str, stream: IO[str], bounded: bool) -> Any:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns: list[Any] = [TextColumn("[bold]{task.description}")]
    if unit == "bytes":
        columns += [BarColumn(), TaskProgressColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn()]
    else:
        columns += ([BarColumn(), MofNCompleteColumn()] if bounded else
                    [SpinnerColumn(), TextColumn("{task.completed:,.0f} " + unit)])
        columns.append(_RateColumn(unit))
    return Progress(*columns, console=rich_console(stream), transient=False)


def _rate_column_class() -> Any:
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):  # type: ignore[misc]
        """Records per second (rich's own rate column is for bytes)."""

        def __init__(self, unit: str) -> None:
            super().__init__()
            self.unit = unit

        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f} {self.unit}/s" if speed else "", style="cyan")

    return RateColumn


def _RateColumn(unit: str) -> Any:  # noqa: N802 - reads as the column it builds
    return _rate_column_class()(unit)
