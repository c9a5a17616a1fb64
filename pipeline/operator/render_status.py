"""``heal status`` on a colour terminal: rich tables, states in colour. Non-terminals,
``NO_COLOR`` and ``TERM=dumb`` get the plain text of :func:`pipeline.cli.status.render`."""

from __future__ import annotations

from typing import IO, Any

from rich.markup import escape

from pipeline.cli.status import consumers_cell
from pipeline.console import print_table, rich_console
from storage.engines import engine_label

#: colours of the words people scan for
STATE_STYLE = {"CLOSED": "green", "OPEN": "bold red", "HALF_OPEN": "yellow",
               "unknown": "yellow", "not built yet": "dim"}


def _engine_rows(engines: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, info in engines.items():
        label = engine_label(info)
        if label is not None:
            rows.append([name, str(info.get("mode", "?")), f"[bold red]{label}[/]",
                         escape(str(info.get("url") or "")), ""])
            continue
        count = len(info.get("users") or ())
        users = f"{count} heal process{'' if count == 1 else 'es'}" if count else ""
        rows.append([name, str(info.get("mode")), f"[green]{info.get('version') or '?'}[/]",
                     escape(str(info.get("url"))), users])
    return rows


def _stream_rows(streams: dict[str, Any]) -> list[list[str]]:
    rows = []
    for stream, info in streams.items():
        groups = info["groups"] or {"-": None}
        for i, (group, g) in enumerate(groups.items()):
            head = [escape(stream), str(info["length"])] if i == 0 else ["", ""]
            if g is None:
                rows.append([*head, "-", "", "", ""])
                continue
            lag = f"{g['lag']}{'' if g['lag_exact'] else '+'}"
            pending = f"[yellow]{g['pending']}[/]" if g["pending"] else "0"
            rows.append([*head, escape(group), pending, lag, consumers_cell(g)])
    return rows


def _stranded_rows(stranded: dict[str, Any]) -> list[list[str]]:
    """Streams of another partition layout holding work nobody reads (as the plain table)."""
    rows = []
    for item in stranded.get("streams") or []:
        lag = f"{item['unread']}{'' if item['unread_exact'] else '+'}"
        rows.append([escape(str(item["stream"])), str(item["length"]),
                     "[bold red](no reader)[/]", str(item["pending"]), lag,
                     "another partition layout"])
    return rows


def print_rich(status: dict[str, Any], plain_lines: list[str],
               stream: IO[str] | None = None) -> None:
    """Everything the plain text of :func:`pipeline.cli.status.render` says, in colour;
    ``plain_lines`` (already :func:`~pipeline.console.visible`) are printed without markup."""
    console = rich_console(stream)
    if status.get("state"):
        console.print(f"[bold]state[/] {escape(status['state']['describe'])}")
    print_table(["engine", "mode", "version", "url", "attached"],
                _engine_rows(status["engines"]), stream=stream, markup=True)
    print_table(["stream", "length", "group", "pending", "lag", "consumers"],
                [*_stream_rows(status["streams"]), *_stranded_rows(status.get("stranded") or {})],
                right=(1, 3, 4, 5), stream=stream, markup=True)
    dead = status["dead_letters"]
    dead_text = "unknown" if dead is None else str(dead)
    console.print(f"[bold]dead letters[/] {'[red]' + dead_text + '[/]' if dead else dead_text}")
    breaker = status["breaker"]
    state = str(breaker.get("state"))
    console.print(f"[bold]breaker[/] [{STATE_STYLE.get(state, 'white')}]{state}[/]")
    for scope in breaker.get("open_scopes") or []:
        console.print(f"  open: [red]{escape(str(scope))}[/]")
    for line in plain_lines:  # budget, held workflows and outbox, as in the plain table
        console.print(line, markup=False)
