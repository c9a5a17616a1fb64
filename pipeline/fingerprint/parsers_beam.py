"""Elixir (and the Erlang frames it prints): an uncaught exception's ``** (Kind) message``
with its stack, and an ExUnit failure (the test, what failed in it, its stack).

An Elixir frame reads ``file:line: function`` (``    (my_app 0.1.0) lib/my_app/worker.ex:42:
MyApp.Worker.run/1``, ``test/foo_test.exs:12: (test)``): the shape of a compiler's
severity-less diagnostic. It is a frame (:func:`is_beam_frame`), never the error.
"""

from __future__ import annotations

import re

from pipeline.fingerprint.model import Extraction, Frame
from pipeline.fingerprint.paths import is_library, normalize_path

#: ``(app vsn) file.ex:line: function``: the function a module's ``Mod.fun/arity`` (Erlang's
#: ``:mod.fun/arity``, ``anonymous fn/2 in Mod.fun/1``), or ``(test)``, ``(module)``, ``(file)``
FRAME = re.compile(
    r"^(?:\((?P<app>\w{1,100}) [\w.+-]{1,40}\) )?"
    r"(?P<file>[^\s:()]{1,500}\.(?:exs?|erl|hrl)):(?P<line>\d{1,9}): "
    r"(?P<func>(?:anonymous fn(?:/\d{1,3})? in )?\S{0,300}/\d{1,3}|\((?:[\w.]{1,60})\))$")
#: ``** (KeyError) key :ttl not found in: %{}``: an exception as Elixir prints it
EXCEPTION = re.compile(r"^\*\* \((?P<type>[A-Z][\w.]{0,200})\) ?(?P<msg>.*)$")
#: ExUnit's failure header: ``  1) test name (MyApp.FooTest)``
_TEST = re.compile(
    r"^\s{0,8}\d{1,6}\) (?:test|doctest) (?P<test>.{1,500}?) \((?P<mod>[\w.]{1,300})\)$")
#: the test's location under the header: ``test/foo_test.exs:12``
_LOCATION = re.compile(r"^(?P<file>[^\s:()]{1,500}\.exs?):\d{1,9}$")
#: the runtime's and the standard tools' own applications: their frames are no program's
_PLATFORM = frozenset({"elixir", "stdlib", "kernel", "ex_unit", "mix", "iex", "logger", "eex",
                       "erts", "compiler", "crypto", "ssl", "inets", "public_key"})
#: lines of an ExUnit failure's own output (its labels) that say no more than its first line
_LABEL = re.compile(r"^(?:code|left|right|arguments|stacktrace|hint|message):")


def is_beam_frame(line: str) -> bool:
    """Whether ``line`` (stripped) is an Elixir/Erlang stack frame (:data:`FRAME`)."""
    return FRAME.match(line) is not None


def _frame(match: re.Match[str], repo: str) -> Frame:
    raw = match.group("file")
    app = match.group("app") or ""
    own = app not in _PLATFORM and not raw.startswith("deps/") and not is_library(raw)
    return Frame(normalize_path(raw, repo), match.group("func"), int(match.group("line")), own)


def parse_elixir(text: str, repo: str = "") -> Extraction | None:
    """An ExUnit failure (kind ``test``: the exception it raised, or its assertion's first
    line as an ``ExUnit.AssertionError``; its stack, then the test as its last frame), or the
    first uncaught exception with Elixir frames under it (kind ``elixir``).
    Elixir prints the innermost frame first: the frames run outermost first here."""
    if "** (" not in text and ") test " not in text and ") doctest " not in text:
        return None
    lines = [line.strip() for line in text.splitlines()]
    start = next((i for i, line in enumerate(lines) if _TEST.match(line)), -1)
    if start >= 0:
        return _exunit(lines, start, repo)
    at = next((i for i, line in enumerate(lines) if EXCEPTION.match(line)), -1)
    head = EXCEPTION.match(lines[at]) if at >= 0 else None
    frames = [_frame(m, repo) for m in map(FRAME.match, lines[at + 1:]) if m]
    if head is None or not frames:
        return None
    return Extraction("elixir", head.group("type"), head.group("msg").strip(),
                      tuple(reversed(frames)), tool="elixir")


def _exunit(lines: list[str], start: int, repo: str) -> Extraction:
    header = _TEST.match(lines[start])
    assert header is not None
    test_file = ""
    error_type = message = ""
    frames: list[Frame] = []
    for line in lines[start + 1:]:
        if _TEST.match(line):
            break  # the next failure
        location = _LOCATION.match(line)
        if location and not test_file and not error_type:
            test_file = location.group("file")
            continue
        frame = FRAME.match(line)
        if frame:
            frames.append(_frame(frame, repo))
            continue
        if error_type or not line or _LABEL.match(line):
            continue
        exception = EXCEPTION.match(line)
        if exception:
            error_type, message = exception.group("type"), exception.group("msg").strip()
        else:
            error_type, message = "ExUnit.AssertionError", line
    test = Frame(normalize_path(test_file, repo) if test_file else header.group("mod"),
                 header.group("test").strip(), None, True)
    return Extraction("test", error_type or "ExUnit.AssertionError", message,
                      (*reversed(frames), test), tool="exunit")
