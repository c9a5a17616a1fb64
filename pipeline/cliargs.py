"""An option that takes one value refuses to be given twice; an option a command does not
know is reported with that command's usage.

argparse keeps the last of ``--command A --command B`` without a word, so a person who
meant both silently gets B. :class:`Once` makes the second one bad usage (exit 2) that says
which values were given and what to do instead. argparse also hands a subcommand's unknown
options up to the top parser, which printed ``usage: heal [-h] [--version] COMMAND ...``
for ``heal status --jsn``: :class:`CommandParser` makes the command refuse them itself.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from pipeline.spelling import spelled


class CommandParser(argparse.ArgumentParser):
    """The parser of ``heal`` and (``add_subparsers`` makes them of its class) of every
    command and verb: each refuses an option it does not know with its own usage
    (``usage: heal status [-h] [--json]``), exit 2, instead of passing it up to the top
    parser, whose usage names no option of that command."""

    #: called as ``on_usage_error(args, message)`` with the arguments this parser was given
    #: when it refuses them (an unknown choice, an option given twice, an unknown option),
    #: before it exits 2: ``heal run`` writes the refusal as its decision JSON. Never raises.
    on_usage_error: Callable[[list[str], str], None] | None = None

    def parse_known_args(  # type: ignore[override]
            self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None,
    ) -> tuple[argparse.Namespace, list[str]]:
        self._given = list(args) if args is not None else []
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:  # (a verb's own are refused by the verb first: what is left is ours)
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras

    def error(self, message: str) -> NoReturn:
        """argparse's: the usage and ``PROG: error: MESSAGE`` on stderr, exit 2; then
        :attr:`on_usage_error`, when set, is told."""
        hook = self.on_usage_error
        if hook is None:
            super().error(message)
        self.print_usage(sys.stderr)
        self._print_message(f"{self.prog}: error: {message}\n", sys.stderr)
        with contextlib.suppress(Exception):  # (the refusal itself is said above)
            hook(getattr(self, "_given", []), message)
        self.exit(2)


#: reST roles of the docstrings some descriptions are (``:func:`x```, ``:mod:`~a.b```)
_ROLE = re.compile(r":(?:func|mod|class|meth|data|attr|exc|obj):`~?([^`\n]{1,200})`")
#: reST inline literals (````heal run````)
_LITERAL = re.compile(r"``([^`\n]{1,200})``")


def plain(text: str) -> str:
    """``text`` without reST markup, as a terminal shows help: ``:func:`a.b``` -> ``a.b``,
    double backquotes -> none (the docstrings double as the commands' descriptions)."""
    return _LITERAL.sub(r"\1", _ROLE.sub(r"\1", text))


class Once(argparse.Action):
    """``store`` that refuses a second occurrence of the same option.

    ``hint`` (a keyword of ``add_argument``) is added to the message, e.g. how to give
    several steps."""

    def __init__(self, option_strings: Sequence[str], dest: str, hint: str = "",
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.hint = hint

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        seen: set[str] = namespace.__dict__.setdefault("_given_once", set())
        written: dict[str, str] = namespace.__dict__.setdefault("_written_once", {})
        # the value as the user typed it ("5", not 5.0), when one word gave it
        typed = getattr(self, "_typed", None)
        self._typed = None
        now = spelled(typed) if typed is not None and not isinstance(values, list) \
            else spelled(values)
        if self.dest in seen:
            first = written.get(self.dest) or spelled(getattr(namespace, self.dest))
            parser.error(f"{option_string} given twice ({first}, then {now}); it takes one "
                         "value" + (f": {self.hint}" if self.hint else ""))
        seen.add(self.dest)
        written[self.dest] = now
        setattr(namespace, self.dest, values)


def _record_typed(action: argparse.Action) -> None:
    """Make ``action``'s type conversion keep the word it converts (argparse converts just
    before it calls the action), so a message quotes the user's own text."""
    convert = action.type

    def typed(text: str) -> Any:
        action._typed = text  # type: ignore[attr-defined]
        if convert is None:
            return text
        return convert(text)  # type: ignore[operator]

    # argparse names the type in its own message ("invalid float value: 'x'")
    typed.__name__ = getattr(convert, "__name__", "str")
    action.type = typed
    action._recording = True  # type: ignore[attr-defined]


class _StoreOnce(argparse._StoreAction):
    """A plain ``store`` option made :class:`Once` (see :func:`once_everywhere`)."""

    hint = ""
    __call__ = Once.__call__


def once_everywhere(parser: argparse.ArgumentParser) -> None:
    """Every plain ``store`` option of ``parser`` and its subcommands refuses a second
    occurrence, as :class:`Once` does: ``heal report --since 7d --since 1d`` is bad usage
    (exit 2), not the last value silently. (Flags, counts and ``append`` options keep their
    meaning.) Also the one place help texts are readied for a terminal: reST markup removed
    (:func:`plain`), and a command without a description gets its one-line help as one."""
    # (help is text for a terminal: the reST of the docstrings it reuses is removed here,
    # before argparse wraps it)
    if parser.description:
        parser.description = plain(parser.description)
    for action in parser._actions:
        if isinstance(action.help, str):
            action.help = plain(action.help)
        if type(action) is argparse._StoreAction and action.option_strings:
            action.__class__ = _StoreOnce
        if isinstance(action, Once | _StoreOnce) and not getattr(action, "_recording", False):
            _record_typed(action)
        if isinstance(action, argparse._SubParsersAction):
            # a command without a description of its own is described by its one-line help
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                if not sub.description and helps.get(name):
                    text = plain(str(helps[name]))
                    sub.description = text[:1].upper() + text[1:] + "."
            for sub in set(action.choices.values()):
                once_everywhere(sub)
