"""Recognise genuine logic bugs, which must never receive a SAFE or MODERATE fix.

An assertion failure or a KeyError raised by application code says the code is wrong, not the
environment; no mechanical fix applies. The lookup refuses any SAFE/MODERATE match (in every
tier) for a text whose exceptions include one of these, and queues it for review instead.
"""

from __future__ import annotations

import re

#: exception types that point at the program's own logic (Python and JavaScript)
LOGIC_EXCEPTIONS = (
    "AssertionError",
    "KeyError",
    "IndexError",
    "LookupError",
    "TypeError",
    "ValueError",
    "AttributeError",
    "ZeroDivisionError",
    "ArithmeticError",
    "NameError",
    "UnboundLocalError",
    "RecursionError",
    "NotImplementedError",
    "ReferenceError",
    "RangeError",
    "StopIteration",
)

_NAMES = "|".join(LOGIC_EXCEPTIONS)
# where an exception is reported: a traceback's last line, pytest's "E   " lines and its
# short summary ("FAILED test_x.py::test_y - KeyError: 'a'"), Node's "TypeError: ..." and
# "AssertionError [ERR_ASSERTION]"; a bare pytest "assert x == y" failure line too; node:test's
# TAP report (the failed test's YAML block: "  name: 'AssertionError'", "  code:
# 'ERR_ASSERTION'") and its spec report (the exception indented under "✖ test name"), at any
# nesting depth: each describe() indents them 4 more spaces, so the indentation is bounded
# only by what a line can hold (one bounded run of blanks, never a nested repeat).
_INDENT = 400
_LOGIC = re.compile(
    rf"""^(?:E\s+)?(?:[\w.]+\.)?(?P<name>{_NAMES})(?:\s\[\w+\])?(?::|$)
       |^[\ \t]{{1,{_INDENT}}}name:\ '(?P<tap>{_NAMES})'$
       |^[\ \t]{{1,{_INDENT}}}code:\ '(?P<tapcode>ERR_ASSERTION)'$
       |^\u2716\ [^\n]{{0,300}}\n[\ \t]{{1,{_INDENT}}}
          (?:[\w.]{{1,200}}\.)?(?P<spec>{_NAMES})(?:\s\[\w+\])?:
       |^FAILED\s\S+\s-\s(?:[\w.]+\.)?(?P<summary>{_NAMES}|assert\b)
       |^E\s+assert\s
       |^>?\s*assert\s.*\n(?:E\s+)?AssertionError""",
    re.MULTILINE | re.VERBOSE,
)


#: the same verdict from other languages' tools: a JVM assertion or null dereference, a Rust
#: assertion panic, a failed Go test, a Ruby NoMethodError/TypeError/... or Minitest/RSpec
#: failure, a PHP uncaught TypeError/... or PHPUnit failure ("FAILURES!", "Failed asserting
#: that ..."), and compile errors in the
#: project's own code (a type error, an undeclared name; Gradle glues its task name to
#: javac's line); a missing header or module (javac's "package x does not exist") is the
#: environment, not logic
_OTHER_LOGIC = re.compile(
    r"""^Exception\ in\ thread\ "[^"\n]{0,200}"\ (?:[\w$]{1,80}\.){0,12}
          (?P<jvm>AssertionError|AssertionFailedError|ComparisonFailure|NullPointerException|
             ClassCastException|ArrayIndexOutOfBoundsException|IndexOutOfBoundsException)\b
       |^\s{0,12}(?:[\w$]{1,80}\.){1,12}
          (?P<jvm2>AssertionError|AssertionFailedError|ComparisonFailure)\b
       |^thread\ '[^'\n]{0,200}'(?:\ \(\d{1,10}\))?\ panicked\ at\ [^\n]{0,300}\n
          (?P<rust>assertion)
       |^thread\ '[^'\n]{0,200}'(?:\ \(\d{1,10}\))?\ panicked\ at\ '(?P<rust2>assertion)
       |^(?P<gotest>---\ FAIL:)\ \w
       |^[^\n]{1,300}?:\d{1,9}:in\ [`'][^\n]{0,500}\((?P<ruby>NoMethodError|NameError|TypeError
          |ArgumentError|ZeroDivisionError|KeyError|IndexError|FrozenError|NoMatchingPatternError
          |NoMatchingPatternKeyError)\)$
       |^\ {0,8}\d{1,6}\)\ (?P<minitest>Failure):\n
       |^\ {0,8}(?P<rspec>Failure/Error):
       |^(?:PHP\ )?Fatal\ error:\ {1,4}Uncaught\ (?P<php>TypeError|ArgumentCountError
          |DivisionByZeroError|ValueError|AssertionError|UnhandledMatchError)\b
       |^(?P<phpunit>FAILURES!)$
       |^(?P<phpunit2>Failed\ asserting\ that)\s
       |^(?P<compile>error\[E\d{4}\]:
          |[^\s:]{1,300}\.java:\d{1,9}:\ error:(?!\ package\ [\w.$]{1,300}\ does\ not\ exist$)
          |:[\w:-]{1,100}?/[^\s:]{1,300}\.java:\d{1,9}:\ error:
             (?!\ package\ [\w.$]{1,300}\ does\ not\ exist$)
          |[^\s:]{1,300}\.(?:c|cc|cpp|cxx|h|hh|hpp|m|mm):\d{1,9}:\d{1,9}:\ error:
          |[^\s(]{1,300}\.tsx?[(:]\d{1,9}[,:]\d{1,9}\)?:?\ (?:-\ )?error\ TS(?!2307\b)\d{4}:
          |(?:\./)?[^\s:]{1,300}\.go:\d{1,9}:\d{1,9}:\ (?:undefined:|cannot\ use|invalid\ operation
             |mismatched\ types|too\ many|not\ enough|missing\ return|\S+\ declared\ (?:and|but)
             \ not\ used))""",
    re.MULTILINE | re.VERBOSE,
)
_OTHER_NAMES = {"jvm": None, "jvm2": None, "rust": "assertion", "gotest": "test failure",
                "compile": "compile error", "ruby": None, "minitest": "test failure",
                "rspec": "test failure", "php": None, "phpunit": "test failure",
                "rust2": "assertion", "phpunit2": "test failure"}

#: messages that carry a logic exception's name but report the environment
_ENVIRONMENTAL = re.compile(r"bad marshal data|fetch failed")


def logic_bug(text: str) -> str | None:
    """The logic exception named in ``text`` (e.g. ``"KeyError"``), or None."""
    found = next((m for m in _LOGIC.finditer(text) if not _ENVIRONMENTAL.search(
        text, m.start(), text.find("\n", m.start()) % (len(text) + 1))), None)
    if found is None:
        return _other_logic(text)
    name = (found.group("name") or found.group("tap") or found.group("spec")
            or found.group("summary") or "AssertionError")
    return "AssertionError" if name == "assert" else name


def _other_logic(text: str) -> str | None:
    found = _OTHER_LOGIC.search(text)
    if found is None:
        return None
    group = found.lastgroup or "compile"
    label = _OTHER_NAMES.get(group)
    return label if label is not None else found.group(group)
