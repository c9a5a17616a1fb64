"""Error extraction: find the part of a raw event text that matters, and its structure.

Parsers are tried from the most structured to the least; the first that recognises the text
wins. Each parser is a pure function ``(text, repo) -> Extraction | None``.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.ansi import strip_ansi
from pipeline.fingerprint.model import Extraction
from pipeline.fingerprint.parsers_android import parse_anr
from pipeline.fingerprint.parsers_beam import parse_elixir
from pipeline.fingerprint.parsers_haskell import parse_haskell
from pipeline.fingerprint.parsers_lines import (
    parse_diagnostic,
    parse_log,
    parse_shell,
    parse_text,
)
from pipeline.fingerprint.parsers_native import parse_sanitizer, parse_swift_crash
from pipeline.fingerprint.parsers_python import parse_pytest, parse_python
from pipeline.fingerprint.parsers_runners import (
    parse_go_test,
    parse_gradle,
    parse_jest,
    parse_node_test,
    parse_phpunit,
    parse_rspec,
    parse_rust,
    parse_vitest,
)
from pipeline.fingerprint.parsers_stacks import parse_dotnet, parse_go, parse_java, parse_node
from pipeline.fingerprint.parsers_structured import parse_structured
from pipeline.fingerprint.parsers_xctest import parse_xctest
from pipeline.fingerprint.service_lines import by_service
from pipeline.runnerlines import strip_stamps

Parser = Callable[[str, str], Extraction | None]

#: order matters: a test runner's output holds the error its test raised, so each runner
#: goes before the error's own parser (pytest before Python, go test before Go panics, jest,
#: vitest and node:test before Node, PHPUnit and rspec before the text fallback); a Rust
#: panic goes before the diagnostics (cargo prints its build warnings first); Gradle after
#: them (javac's own error lines say more than its summary); a JSON or logfmt line before
#: the one-line parsers (its message field is the message, not the whole line); a sanitizer's
#: report and a Swift runtime crash before the diagnostics too (``x.swift:54: Fatal error:``
#: reads like a compiler's line, and a sanitizer's frames like a compiler's locations; so do
#: UBSan's ``x.c:12:5: runtime error:`` and XCTest's ``x.swift:42: error: -[C test] :``); a
#: GHC call stack before the one-line parsers too (its message is the line above it); and
#: Elixir's exceptions and ExUnit's failures (Elixir's frames read like severity-less
#: diagnostics); an Android ANR after the JVM's traces (a crash's trace says more than another
#: process's ANR in the same logcat dump, and an exception's message may name an ANR) and
#: before the rest (its thread dump reads like Go's or a log's lines)
PARSERS: tuple[Parser, ...] = (
    parse_pytest,
    parse_python,
    parse_java,
    parse_anr,
    parse_go_test,
    parse_go,
    parse_rust,
    parse_jest,
    parse_vitest,
    parse_node_test,
    parse_node,
    parse_dotnet,
    parse_phpunit,
    parse_rspec,
    parse_xctest,
    parse_sanitizer,
    parse_swift_crash,
    parse_haskell,
    parse_structured,
    parse_elixir,
    parse_diagnostic,
    parse_shell,
    parse_gradle,
    parse_log,
)


def readable(text: str) -> str:
    """``text`` as the program that wrote it printed it: without terminal escapes (a coloured
    and a plain copy of one error are one error) and without the CI runner's per-line
    timestamp and byte order mark (a GitHub Actions job log excerpt and the step's own output
    are one error too; see :mod:`pipeline.runnerlines`), and a multi-service log's lines
    by service without the service's prefix (:mod:`pipeline.fingerprint.service_lines`: an
    error reads the same whether or not another service's line cut it, and whether or not
    ``docker compose logs`` printed it; ``-t``'s timestamps go as a runner's do). Linear in
    the text."""
    plain = strip_ansi(strip_stamps(text))
    grouped = by_service(plain)
    return plain if grouped is None else strip_stamps(grouped)


def extract(text: str, repo: str = "") -> Extraction:
    """The structured error found in ``text`` (kind ``text`` when no parser recognises it);
    ``text`` is :func:`readable` already (the fingerprinter cleans it once for every step)."""
    for parser in PARSERS:
        found = parser(text, repo)
        if found is not None and (found.error_type or found.message):
            return found
    return parse_text(text, repo)
