"""Native crash reports: a sanitizer's report (AddressSanitizer, LeakSanitizer,
ThreadSanitizer...) and a Swift runtime crash (``Fatal error: Unexpectedly found nil ...``).

A native crash is identified as a Python exception is: by what went wrong (the sanitizer's
bug kind, the runtime's message) and by where, the frames of the program that crashed, never
the runtime's own (``__interceptor_free``, ``libswiftCore``, ``__libc_start_main``). A
sanitizer's report also names its program (the binary in ``_start (/path/prog+0x10b0)``):
two programs built from one source are two crashes.

Every regex here is anchored at a line start and bounded: a name or path is a run of at most
a few hundred characters of one class, followed by a literal that class does not hold.
"""

from __future__ import annotations

import re

from pipeline.fingerprint.model import Extraction, Frame
from pipeline.fingerprint.paths import is_library, normalize_path

# --- sanitizers -----------------------------------------------------------------------------

#: ``==9467==ERROR: AddressSanitizer: heap-use-after-free on address 0x6020... at pc ...``,
#: ``==1==ERROR: LeakSanitizer: detected memory leaks``, ``WARNING: ThreadSanitizer: data
#: race (pid=42)``
_SANITIZER = re.compile(r"^(?:==\d{1,9}==\s?)?(?:ERROR|WARNING): "
                        r"(?P<tool>[A-Za-z]{1,40}Sanitizer): (?P<rest>.{1,2000})$")
#: a frame of a sanitizer's stack: ``#0 0x55d1 in read_buf /src/buf.c:3:7``, ``#4 0x55d1 in
#: _start (/app/netd+0x10b0)``, ``#1 0x7f2a  (/lib/x86_64-linux-gnu/libc.so.6+0x29d90)``
_SANITIZER_FRAME = re.compile(
    r"^\s{0,16}#\d{1,4} 0x[0-9a-fA-F]{1,20}(?: in (?P<func>[^\n]{1,500}?))?"
    r"(?: (?P<file>[^\s()]{1,1000}?):(?P<line>\d{1,9})(?::\d{1,9})?"
    r"| \((?P<module>[^\s()]{1,1000})\+0x[0-9a-fA-F]{1,20}\))?$")
#: ``READ of size 4 at 0x6020... thread T0``: what the bad access did
_ACCESS = re.compile(r"^(?P<op>READ|WRITE) of size \d{1,12} at ")
#: the words of the bug kind, up to the first word that is not one (``on``, an address)
_KIND_WORD = re.compile(r"[A-Za-z][A-Za-z_-]{0,60}")
_NOT_KIND = frozenset(("on", "at", "in", "of", "for", "from", "by", "to", "pc", "address"))
_KIND_WORDS = 4
#: the sanitizer runtime, the C library and the start-up code: never the program's frames
_RUNTIME_FUNCTIONS = ("__interceptor_", "__asan", "__lsan", "__tsan", "__msan", "__ubsan",
                      "__sanitizer", "__libc_start", "_start", "__GI_", "___interceptor_")
_RUNTIME_FILE = re.compile(
    r"(?:^|/)(?:libsanitizer|compiler-rt|sysdeps|csu|nptl|sanitizer_common)/"
    r"|(?:^|/)(?:lib(?:asan|tsan|lsan|ubsan|msan|clang_rt[\w.-]{0,40}|c|stdc\+\+|pthread|m|gcc_s"
    r"|dl)|ld-linux[\w.-]{0,40})(?:[.-][\w.-]{0,40})?\.(?:so|dylib)(?:\.[\d.]{1,20})?$")
#: a library file by its name (``libfoo.so.1``, ``libbar.dylib``): the module of a shared
#: library, not of the program
_SHARED_OBJECT = re.compile(r"\.(?:so|dylib)(?:\.[\d.]{1,20})?$")


def _bug_kind(rest: str) -> str:
    """The bug kind a sanitizer's header names: its first words up to an address or a
    preposition (``heap-use-after-free``, ``SEGV``, ``attempting double-free``, ``detected
    memory leaks``, ``data race``)."""
    words = []
    for token in rest.split()[:_KIND_WORDS]:
        if token in _NOT_KIND or not _KIND_WORD.fullmatch(token):
            break
        words.append(token)
    return " ".join(words)


def _runtime_frame(func: str, path: str) -> bool:
    return func.startswith(_RUNTIME_FUNCTIONS) or bool(_RUNTIME_FILE.search(path))


def parse_sanitizer(text: str, repo: str = "") -> Extraction | None:
    """A sanitizer's report: its bug kind as the class (``AddressSanitizer:
    heap-use-after-free``), its header's message with the access (``READ``) and the program
    (``in netd``), and the program's frames of the first stack (the faulting access's; for a
    leak, the allocation's), innermost last. Else UndefinedBehaviorSanitizer's ``runtime
    error:`` line (:func:`parse_ubsan`)."""
    if "Sanitizer: " not in text and "runtime error: " not in text:
        return None
    lines = text.splitlines()
    start, header = next(((index, found) for index, found in enumerate(
        map(_SANITIZER.match, map(str.strip, lines))) if found is not None), (0, None))
    if header is None:
        return parse_ubsan(lines, repo)
    tool, rest = header.group("tool"), header.group("rest").strip()
    kind = _bug_kind(rest)
    stack, program, access = _first_stack(lines[start + 1:], repo)
    message = " ".join(part for part in (rest[len(kind):].strip(), access) if part)
    if program:
        message = f"{message} in {program}".strip()
    error_type = f"{tool}: {kind}" if kind else tool
    return Extraction("sanitizer", error_type, message, stack,
                      tool=tool.removesuffix("Sanitizer").lower() + "san")


def _first_stack(lines: list[str], repo: str) -> tuple[tuple[Frame, ...], str, str]:
    """The frames of the first stack under a sanitizer's header (outermost first), the
    program that crashed (from a frame's module) and the bad access (``READ``)."""
    access = program = ""
    stack: list[Frame] = []
    in_first_stack = True
    for line in lines:
        stripped = line.strip()
        if not access and (found := _ACCESS.match(stripped)):
            access = found.group("op")
        frame = _SANITIZER_FRAME.match(stripped) if stripped.startswith("#") else None
        if frame is None:
            if stack and not stripped:
                in_first_stack = False  # (the first stack ends at its blank line)
            if (_SANITIZER.match(stripped) or stripped.startswith("SUMMARY: ")
                    or _UBSAN.match(stripped)):
                break
            continue
        func = (frame.group("func") or "").strip()
        module = frame.group("module") or ""
        if module and not program and not _SHARED_OBJECT.search(module):
            program = module.replace("\\", "/").rsplit("/", 1)[-1]
        if not in_first_stack:
            continue
        raw = frame.group("file") or module
        own = not (_runtime_frame(func, raw) or is_library(raw)
                   or (module and _SHARED_OBJECT.search(module)))
        file = normalize_path(raw, repo) if frame.group("file") else program or raw
        line_no = int(frame.group("line")) if frame.group("line") else None
        stack.append(Frame(file, func, line_no, own))
    return tuple(reversed(stack)), program, access


#: UndefinedBehaviorSanitizer's report: ``src/calc.c:12:5: runtime error: signed integer
#: overflow: 2147483647 + 1 cannot be represented in type 'int'`` (a run-time failure, never
#: a compiler's diagnostic), then with ``print_stacktrace=1`` its stack
_UBSAN = re.compile(r"^(?P<file>[^\s:]{1,1000}):(?P<line>\d{1,9})(?::\d{1,9})?: runtime error: "
                    r"(?P<msg>[^\n]{1,2000})$")
#: where the words of UB's kind end: a value's type (``for type 'int [5]'``, ``of type``),
#: a clause about it (``, which requires ...``), its values (``: 2147483647 + 1 ...``)
_UB_KIND_END = re.compile(r"[:,]| (?:for|of|from|to|in) type\b| cannot be\b| is too\b")
#: a value in UB's message: a number, an address, a quoted type (``'int'``), a width
_UB_VALUE = re.compile(r"^(?:[-+]?\d[\w.-]{0,40}|0x[0-9a-fA-F]{1,20}|'[^']{0,200}'|\(.{0,40}\))$")


def ub_kind(message: str) -> str:
    """The kind of undefined behaviour a ``runtime error:`` names, without its values:
    ``signed integer overflow``, ``index out of bounds``, ``load of null pointer``, ``shift
    exponent``, ``division by zero``, ``load of misaligned address``."""
    end = _UB_KIND_END.search(message[:_UB_KIND_CHARS])
    head = message[:end.start() if end else _UB_KIND_CHARS]
    return " ".join(word for word in head.split() if not _UB_VALUE.match(word))


#: characters of a ``runtime error:`` message its kind is read from
_UB_KIND_CHARS = 200


_UBSAN_TOOL = "UndefinedBehaviorSanitizer"


def parse_ubsan(lines: list[str], repo: str = "") -> Extraction | None:
    """UndefinedBehaviorSanitizer's first ``runtime error:`` (kind ``sanitizer``): the kind
    of undefined behaviour as the class (``UndefinedBehaviorSanitizer: signed integer
    overflow``), its message (its values masked by the rules), and where: the program's
    frames of the stack printed under it, else the location the line names."""
    for index, line in enumerate(lines):
        stripped = line.strip()
        found = _UBSAN.match(stripped) if "runtime error: " in stripped else None
        if found is None:
            continue
        message = found.group("msg").strip()
        stack, program, _ = _first_stack(lines[index + 1:], repo)
        if not any(frame.in_project for frame in stack):
            raw = found.group("file")
            stack = (Frame(normalize_path(raw, repo), "", int(found.group("line")),
                           not is_library(raw)),)
        kind = ub_kind(message)
        if kind and message.startswith(kind):  # (the class says it: the rest is the detail)
            message = message[len(kind):].lstrip(": ") or message
        if program:
            message = f"{message} in {program}"
        error_type = f"{_UBSAN_TOOL}: {kind}" if kind else _UBSAN_TOOL
        return Extraction("sanitizer", error_type, message, stack, tool="ubsan")
    return None


# --- Swift runtime crashes ------------------------------------------------------------------

#: ``Shop/ProfileView.swift:54: Fatal error: Unexpectedly found nil while unwrapping an
#: Optional value`` (Swift 5.x), Xcode's ``Thread 1: Fatal error: ...``, the older ``Fatal
#: error: Index out of range: file Shop/Cart.swift, line 12``, and ``Precondition failed``,
#: ``Assertion failed``; after a log prefix too (``2024-01-13 ... Shop[33183:405960] ``)
_SWIFT_KIND = re.compile(r"Fatal error|Precondition failed|Assertion failed")
#: what may precede the kind on its line (bounded: the kind is found first)
_SWIFT_BEFORE = re.compile(r"(?:^|\s)(?P<thread>Thread \d{1,4}: )?"
                           r"(?:(?P<file>[^\s:]{1,500}\.swift):(?P<line>\d{1,9}): )?$")
#: and what follows it: the message, and the older runtime's ``: file X.swift, line N``
_SWIFT_AFTER = re.compile(
    r"(?:: (?P<msg>[^\n]{0,2000}?))?"
    r"(?:: file (?P<file>[^\s,]{1,500}\.swift), line (?P<line>\d{1,9}))?$")
#: a frame of a Swift backtrace: Apple's crash report and the Linux runtime's ``0  Shop
#: 0x0000558 $s4Shop11ProfileViewV4bodyyyF + 123 (ProfileView.swift:54)``, and the Swift 5.9
#: backtracer's ``2 0x0000558 ProfileView.body() + 123 in Shop at /src/ProfileView.swift:54:20``
_SWIFT_FRAME = re.compile(
    r"^\s{0,8}\d{1,4}\s{1,40}(?:(?P<module>[^\s]{1,300})\s{1,80})?(?:\[\w{1,10}\]\s{1,4})?"
    r"0x[0-9a-fA-F]{1,20}\s{1,8}(?P<func>[^\n]{1,1000}?)(?: \+ \d{1,12})?"
    r"(?: in (?P<module2>[^\s]{1,300}))?"
    r"(?: at (?P<file>[^\s:]{1,500}):(?P<line>\d{1,9})(?::\d{1,9})?"
    r"| \((?P<file2>[^\s():]{1,500}):(?P<line2>\d{1,9})\))?$")
#: the Swift runtime and the system's libraries: never the program's frames
_SWIFT_RUNTIME = re.compile(
    r"^(?:libswift\w{0,60}|libsystem\w{0,60}|libdyld|dyld|libdispatch|libc|libc\+\+\w{0,20}"
    r"|Foundation|libFoundation|CoreFoundation|UIKitCore|SwiftUI|GraphicsServices|AppKit"
    r"|XCTest|libxctest|\?\?\?)(?:\.(?:so|dylib)[\d.]{0,20})?$")
#: what says a ``Fatal error:`` is Swift's when no ``.swift`` location comes with it
_SWIFT_HINT = re.compile(r"(?:\.swift:\d{1,9}: |Thread \d{1,4}: |: |^)(?:Fatal error|Precondition"
                         r" failed|Assertion failed)", re.MULTILINE)


def parse_swift_crash(text: str, repo: str = "") -> Extraction | None:
    """A Swift runtime crash: its message (``Unexpectedly found nil while unwrapping an
    Optional value``) under its kind (``Fatal error``), the program's frames of the crash's
    backtrace (innermost last), else the location the runtime printed."""
    if not _SWIFT_HINT.search(text):
        return None
    lines = text.splitlines()
    at, crash = next(((index, found) for index, found in enumerate(
        _swift_crash(line.rstrip(), text, repo) for line in lines) if found is not None),
        (0, None))
    if crash is None:
        return None
    kind, message, location = crash
    frames: list[Frame] = []
    for line in lines[at + 1:]:
        frame = _SWIFT_FRAME.match(line)
        if frame is None:
            continue
        module = frame.group("module") or frame.group("module2") or ""
        raw = frame.group("file") or frame.group("file2") or ""
        number = frame.group("line") or frame.group("line2")
        own = bool(module) and not _SWIFT_RUNTIME.match(module) and not is_library(raw)
        frames.append(Frame(normalize_path(raw, repo) if raw else module,
                            frame.group("func").strip(), int(number) if number else None, own))
    if not any(f.in_project for f in frames):
        frames = [location] if location is not None else []
    else:
        frames.reverse()  # (printed innermost first)
    return Extraction("swift", kind, message, tuple(frames), tool="swift")


def _swift_crash(line: str, text: str, repo: str) -> tuple[str, str, Frame | None] | None:
    """The kind, message and printed location of a Swift runtime crash's line, or None."""
    kind = _SWIFT_KIND.search(line)
    if kind is None:
        return None
    before = _SWIFT_BEFORE.search(line, 0, kind.start())
    after = _SWIFT_AFTER.match(line, kind.end())
    if before is None or after is None:
        return None
    raw = before.group("file") or after.group("file")
    if not (raw or before.group("thread") or "libswift" in text or "Program crashed" in text):
        return None  # (PHP's "Fatal error:" and the like: not Swift's)
    number = before.group("line") or after.group("line")
    location = Frame(normalize_path(raw, repo), "", int(number), True) if raw and number else None
    return kind.group(0), (after.group("msg") or "").strip(), location
