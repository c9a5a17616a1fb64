"""Parameters fix templates need (module, package, file, command, port, host, signal...).

A table of named regexes like the masking rules: the first match of each name wins.
Event text is hostile: the rules run on the ``regex`` engine within one time budget per
text, over a window of each line (``boundedre.MAX_LINE_CHARS``), and none backtracks
super-linearly (``tests/security/test_regex_bounds.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pipeline.boundedre import BoundedPattern, Budget, clip_lines, compile_bounded
from pipeline.fingerprint.model import Extraction
from pipeline.literals import literal_alternation

_NETWORK = ("in use", "refused", "eaddrinuse", "econnrefused", "bind", "listen", "connect",
            "timed out", "timeout", "unreachable", "resolve", "host")


#: what a host name never ends in: a source file's extension (``conn.c:229``,
#: ``ruby_connection.rb:109``, ``Db.php:57`` are a file and its line)
_NOT_SOURCE = (r"(?<!\.(?:c|cc|cpp|cxx|h|hh|hpp|py|pyx|rb|js|mjs|cjs|jsx|ts|tsx|go|rs|java|kt"
               r"|kts|scala|groovy|cs|fs|vb|php|pl|pm|ex|exs|erl|hrl|hs|swift|m|mm|lua|r|R|sh"
               r"|sql|cr|clj|dart|zig|nim|ml|vue|svelte|erb|rake|gradle))")


@dataclass(frozen=True)
class ParamRule:
    """``pattern`` names its value ``v`` (or ``v2``...); it is tried only when the lowered
    text contains one of ``hints`` (context, and a cheap pre-filter), or always without."""

    name: str
    pattern: BoundedPattern
    hints: tuple[str, ...] = ()


def _rx(source: str, flags: int = 0) -> BoundedPattern:
    return compile_bounded(source, flags)


PARAM_RULES: tuple[ParamRule, ...] = (
    # Python: ModuleNotFoundError: No module named 'yaml' (top-level package of a dotted name)
    ParamRule("module", _rx(r"No module named '(?P<v>[\w.]+)'"), ("no module",)),
    # Python: cannot import name 'x' from 'pkg'
    ParamRule("import_name", _rx(r"cannot import name '(?P<v>\w+)'"), ("cannot import",)),
    # Node: Cannot find module 'express' (a path, './lib/x', '/app/x.mjs' or 'C:\\x.js', is a
    # file of the project: no package to install). The package is the specifier's name, the
    # scope kept and the subpath cut ('lodash/fp' is lodash, '@babel/core/lib/x' @babel/core):
    # one package to install, however much of it was imported
    ParamRule("package", _rx(r"Cannot find module ['\"](?![./\\~]|[A-Za-z]:[/\\])"
                             r"(?P<v>(?:@[\w.-]++/)?[^'\"/@\s:]++)(?:/[^'\"]*+)?['\"]", re.I),
              ("cannot find",)),
    # Go: cannot find package "github.com/x/y" (its whole import path)
    ParamRule("package", _rx(r"Cannot find package ['\"](?![./\\~]|[A-Za-z]:[/\\])"
                             r"(?P<v>[^'\"]+)['\"]", re.I), ("cannot find",)),
    # Bundler: Could not find nokogiri-1.16.0[-x86_64-linux] in locally installed gems: the
    # gem is the name before its version (another release, the same missing gem)
    ParamRule("package", _rx(r"Could not find (?P<v>[A-Za-z][\w.]*+(?:-(?!\d)[\w.]++)*+)"
                             r"-\d[\w.-]*+ in locally installed gems"),
              ("locally installed gems",)),
    # PostgreSQL: a role that does not exist or one the user must be a member of
    ParamRule("role", _rx(r"\brole ['\"](?P<v>[^'\"\s]{1,64})['\"] does not exist"
                          r"|member of role ['\"](?P<v2>[^'\"\s]{1,64})['\"]"),
              ("role",)),
    # pip: No matching distribution found for foo==1.0
    ParamRule("package", _rx(r"(?:No matching distribution found for|satisfies the "
                                    r"requirement) (?P<v>[\w.-]+)"),
              ("distribution", "requirement")),
    # npm E404: '@scope/name@*' is not in this registry (npm 6: ... in the npm registry)
    ParamRule("package", _rx(r"'(?P<v>(?:@[\w.-]++/)?[\w.-]++)(?:@[^'\s]{0,100})?' is not "
                             r"in (?:this|the npm) registry"), ("is not in th",)),
    # npm ERESOLVE: the installed version of the package in conflict ("Found: react@18.2.0")
    ParamRule("package", _rx(r"\bFound: (?P<v>(?:@[\w.-]++/)?[\w.-]++)@"), ("eresolve",)),
    # apt: E: Unable to locate package x / E: Package 'x' has no installation candidate
    ParamRule("package", _rx(r"Unable to locate package (?P<v>[\w.+:-]++)"
                             r"|Package '(?P<v2>[\w.+:-]++)' has no installation candidate"),
              ("unable to locate package", "no installation candidate")),
    # shell: foo: command not found / sh: 1: foo: not found
    ParamRule("command", _rx(r"(?:^|\s)(?P<v>[\w./+-]+): (?:command )?not found", re.M),
              ("not found",)),
    # a port in a network error: "port 8080", "host:8080", ":::3000" (not 10:00:01)
    # (the EADDRINUSE tail is bounded: unbounded, "EADDRINUSE" repeated was quadratic.
    # "name:port" is tried where a run of [\w.-] starts, up to its first letter, not at every
    # letter: each start scanned to the run's end, so a 512-character word cost 1.5 ms.
    # Skipped starts could only fail the same way, so the value found is the one of
    # "[A-Za-z\]][\w.-]*+:", unless "port 80" matches at that first letter: it did first.)
    # (a source file's line, conn.c:229 or loader.js:1210, is no port, nor is a path's last
    # component: node:internal/modules/cjs/loader:1210; a URL's host after :// is a host)
    ParamRule("port", _rx(r"(?:\bport\s*[=:]?\s*"
                          r"|(?:\]|(?<![\w.-])(?<![\w.-][/\\])(?:(?![A-Za-z])[\w.-])*+"
                          r"(?!\bport\s*[=:]?\s*\d{2,5}\b)[A-Za-z])[\w.-]*+" + _NOT_SOURCE + ":"
                          r"|:::|EADDRINUSE[^\n]{0,200}?:)(?P<v>\d{2,5})\b", re.I), _NETWORK),
    # host names in connection / resolution errors
    ParamRule("host", _rx(r"(?:resolve host:?\s*|host ['\"]?|connect(?:ion)? to |Host )"
                                 r"(?P<v>[A-Za-z][\w-]*(?:\.[\w-]+)+|localhost)", re.I), _NETWORK),
    # (possessive: giving back a label never lets ":port" match, and backtracking into
    # "a.aa.aa..." was quadratic. Tried where a dotted run of [\w-] starts, up to its first
    # letter: every later letter reached the same end, so "a.ba.b..." was quadratic too;
    # the first letter's value is the one "[A-Za-z][\w-]*+(?:\.[\w-]++)++" finds first.)
    ParamRule("host", _rx(r"(?<![\w-])(?<![\w-]\.)(?:(?![A-Za-z])[\w-]|\.(?=[\w-]))*+"
                          r"(?P<v>[A-Za-z][\w-]*+(?:\.[\w-]++)++)" + _NOT_SOURCE
                          + r":\d{2,5}\b"), _NETWORK),
    # signals and the exit codes that mean one
    ParamRule("signal", _rx(r"\b(?P<v>SIG[A-Z]{2,6})\b|signal:? (?P<v2>killed|\d+)"
                                   r"|(?P<v3>Killed)\b"
                                   r"|exit (?:code|status) (?P<v4>13[0-9]|14[0-3])"),
              ("sig", "killed", "exit")),
    # (tried only where a path token starts, then from its first "/": the same leftmost
    # match as the plain pattern, but "./////..." no longer restarts at every slash)
    ParamRule("permission_path", _rx(r"(?<![\w./-])[\w.-]*?(?P<v>\.{0,2}/[\w./-]*+): "
                                     r"Permission denied"),
              ("permission denied",)),
)


#: every rule's hints in one scan (literals: linear): most texts hold none, and then no rule
#: is tried (None when a rule has no hints: it is always tried, so the scan decides nothing)
_ANY_HINT = (re.compile(literal_alternation(h for r in PARAM_RULES for h in r.hints))
             if all(r.hints for r in PARAM_RULES) else None)


def _searched(text: str) -> dict[str, Any]:
    """The first match of each parameter rule whose hints the text holds (bounded)."""
    params: dict[str, Any] = {}
    window = clip_lines(text)
    lowered = window.lower()
    if _ANY_HINT is not None and _ANY_HINT.search(lowered) is None:
        return params
    budget: Budget | None = None
    hinted: dict[tuple[str, ...], bool] = {}  # several rules share one hint list (_NETWORK)
    for rule in PARAM_RULES:
        name = rule.name
        if name in params:
            continue
        if rule.hints:
            found = hinted.get(rule.hints)
            if found is None:
                found = hinted[rule.hints] = any(h in lowered for h in rule.hints)
            if not found:
                continue
        budget = budget or Budget()
        match = budget.search(rule.pattern, window, f"param:{name}")
        if match:
            value = next((v for v in match.groups() if v), None)
            if value:
                params[name] = value
    return params


def extract_params(text: str, extraction: Extraction) -> dict[str, Any]:
    """Parameters found in ``text`` plus the ones the extraction identified."""
    params = _searched(text)
    if "module" in params:
        params.setdefault("package", params["module"].split(".")[0])
    project = extraction.project_frames()
    if project:
        # where the error is: the innermost project frame with a line (a test runner's
        # innermost frame is the test, named by its module or file, with no line of its
        # own: cargo's ``tests::adds`` panicked at ``src/lib.rs:14``)
        where = next((f for f in reversed(project) if f.line is not None), project[-1])
        params["file"] = where.file
        if where.line is not None:
            params["line"] = where.line
    if extraction.kind in ("compiler", "python", "pytest", "java", "node", "go", "rust", "test",
                           "gradle", "dotnet"):
        params["error_type"] = extraction.error_type
    if extraction.kind == "compiler":
        params["code"] = extraction.error_type
    if extraction.tool:
        params["tool"] = extraction.tool
    return params
