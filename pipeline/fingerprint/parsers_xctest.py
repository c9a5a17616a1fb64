"""XCTest failures: ``path/CartTests.swift:42: error: -[AppTests.CartTests testTotal] :
XCTAssertEqual failed: ("3") is not equal to ("4")`` (Xcode, ``swift test`` on macOS) and the
Linux form ``... error: CartTests.testTotal : XCTAssertEqual failed: ...``.

Such a line reads like a compiler's diagnostic (``file:line: error: ...``), but it is a test
that failed: like the other runners' failures (``parsers_runners.py``) it is keyed by the
test (class and method: the innermost frame, its file as the frame's file) and by what it
said, the assertion's kind (``XCTAssertEqual``) and its message with the compared values
masked (they are the data the test saw, and change with every wrong answer). Two failing
tests never share a key; of several, the first by name decides (the order tests finish in
is no part of the failure).

Every regex here is anchored and bounded: a name or path is a run of at most a few hundred
characters of one class, followed by a literal that class does not hold.
"""

from __future__ import annotations

import re

from pipeline.fingerprint.model import Extraction, Frame
from pipeline.fingerprint.paths import is_library, normalize_path

#: a failed XCTest assertion's line; ``-[Module.Class method]`` (Objective-C runtime,
#: macOS) or ``Class.method`` (swift-corelibs-xctest, Linux)
_XCTEST = re.compile(
    r"^(?P<file>[^\s:]{1,1000}\.swift):(?P<line>\d{1,9}): error: "
    r"(?:-\[(?P<cls>[\w.]{1,300}) (?P<method>\w{1,300})\]"
    r"|(?P<cls2>[\w.]{1,300})\.(?P<method2>\w{1,300})) : (?P<msg>[^\n]{0,2000})$")
#: the assertion that failed (``XCTAssertEqual failed``), or XCTFail's bare ``failed``
_ASSERTION = re.compile(r"^(?:(?P<kind>XCT\w{1,60}) )?failed\b")
#: a compared value: ``("3")`` (XCTAssertEqual and its kin) or the one after ``failed: ``
#: (``XCTAssertNil failed: "Optional(5)"``); up to the space or end that follows its close
_VALUE = re.compile(r'\("[^\n]{0,500}?"\)(?=\s|$)|(?<=failed: )"[^\n]{0,500}?"(?=\s|$)')
#: what a compared value is in the message the key reads
VALUE = "<value>"
_XCTFAIL = "XCTFail"


def parse_xctest(text: str, repo: str = "") -> Extraction | None:
    """The first failing XCTest assertion by test name: the assertion's kind as the class
    (``XCTAssertEqual``), its message with the compared values masked (``failed: (<value>)
    is not equal to (<value>)``, a custom message after `` - `` kept) and the test as the
    innermost frame (``CartTests.testTotal``, with its file and line)."""
    if ": error: " not in text or ".swift:" not in text:
        return None
    failures = []
    for line in text.splitlines():
        stripped = line.strip()
        found = _XCTEST.match(stripped) if ".swift:" in stripped else None
        if found is None:
            continue
        cls = found.group("cls") or found.group("cls2") or ""
        method = found.group("method") or found.group("method2") or ""
        # (the class without its module: macOS prints ``AppTests.CartTests``, Linux
        # ``CartTests``; one test either way)
        failures.append((f"{cls.rsplit('.', 1)[-1]}.{method}", found))
    if not failures:
        return None
    test, found = min(failures, key=lambda failure: failure[0])
    message = found.group("msg").strip()
    assertion = _ASSERTION.match(message)
    error_type = (assertion.group("kind") or _XCTFAIL) if assertion else _XCTFAIL
    if assertion and assertion.group("kind"):
        message = message[len(assertion.group("kind")):].strip()
    message = _VALUE.sub(lambda value: "(" + VALUE + ")" if value.group(0)[:1] == "("
                         else VALUE, message)
    raw = found.group("file")
    frame = Frame(normalize_path(raw, repo), test, int(found.group("line")), not is_library(raw))
    return Extraction("test", error_type, message, (frame,), tool="xctest")
