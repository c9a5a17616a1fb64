"""Stack traces of the JVM (Java/Kotlin, with ``Caused by``), Node.js and Go panics."""

from __future__ import annotations

import re

from pipeline.fingerprint.model import Extraction, Frame
from pipeline.fingerprint.paths import is_library, normalize_path

_JAVA_HEAD = re.compile(
    r"^(?:Exception in thread \"[^\"]*\" |Caused by: |\s*)"
    r"(?P<type>(?:[a-z_$][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error|Throwable)\w*)"
    r"(?::\s?(?P<msg>.*))?$"
)
#: ``at com.x.Y.m(Y.java:5)``; Java 9+ prefixes the class loader and module (with its
#: version): ``at java.base/java.net.SocketInputStream.read(...)``, ``at app//com.x.Y.m(...)``,
#: ``at com.foo@1.2/com.foo.Bar.m(...)`` (each prefix part a bounded run without "/")
_JAVA_FRAME = re.compile(
    r"^\s+at (?:[\w$.@-]{0,200}/){0,2}(?P<cls>[\w$.]+)\.(?P<func>[\w$<>]+)"
    r"\((?P<file>[^:)]*)(?::(?P<line>\d+))?\)"
)
_JVM_LIBRARY = re.compile(r"^(?:java|javax|jdk|sun|com\.sun|kotlin|kotlinx|scala|org\.junit"
                          r"|org\.gradle|org\.apache\.maven|org\.springframework)\.")
_NODE_HEAD = re.compile(r"^(?:Uncaught )?(?P<type>[A-Z]\w*(?:Error|Exception)|Error)"
                        r"(?: \[(?P<code>[A-Z_]+)\])?: (?P<msg>.*)$")
_NODE_FRAME = re.compile(r"^\s+at (?:(?P<func>.+?) \()?(?P<file>[^()\s]+?):(?P<line>\d+):\d+\)?$")
#: (for the test runners' parsers, which read Node errors inside a test's block)
NODE_FRAME = _NODE_FRAME
_GO_PANIC = re.compile(r"^(?:panic|fatal error): (?P<msg>.*)$")
#: a Go frame's function line, ``pkg.(*T).Method(0x1, 0x2)``: the leading run of name
#: characters, cut at its last "(" (as ``^(?P<func>[\w./*()-]+)\(.*\)$`` would, but linear:
#: that regex was quadratic on "a()()()..." lines)
_GO_NAME_RUN = re.compile(r"[\w./*()-]+")


def _go_func(line: str) -> str | None:
    """The function of a Go frame line (ending in ``)``), or None."""
    if not line.endswith(")"):
        return None
    run = _GO_NAME_RUN.match(line)
    cut = run.group(0).rfind("(") if run else -1
    return run.group(0)[:cut] if run and cut >= 1 else None
_GO_LOC = re.compile(r"^\s+(?P<file>\S+\.go):(?P<line>\d+)")


def parse_java(text: str, repo: str = "") -> Extraction | None:
    """The root cause (last ``Caused by``) with the frames printed under it."""
    if "at " not in text:
        return None  # no frames, no JVM stack trace
    heads: list[tuple[str, str, list[Frame]]] = []
    causes: set[int] = set()  # the heads printed as "Caused by:"
    for line in text.splitlines():
        frame = _JAVA_FRAME.match(line)
        if frame and heads:
            cls = frame.group("cls")
            heads[-1][2].append(Frame(
                file=frame.group("file") or cls, function=f"{cls}.{frame.group('func')}",
                line=int(frame.group("line")) if frame.group("line") else None,
                in_project=not _JVM_LIBRARY.match(cls),
            ))
            continue
        head = _JAVA_HEAD.match(line)
        if head and (line.startswith(("Caused by:", "Exception in")) or not heads):
            if line.startswith("Caused by:"):
                causes.add(len(heads))
            heads.append((head.group("type"), (head.group("msg") or "").strip(), []))
    # a head without frames is a stray line that looked like one, unless it is a cause: a
    # cause printed with only "... N more" shares its wrapper's frames (and is often the
    # root cause)
    heads = [h for i, h in enumerate(heads) if h[2] or i in causes or len(heads) == 1]
    if not heads or not any(h[2] for h in heads):
        return None
    error_type, message, frames = heads[-1]
    if not frames:  # "... N more": the root cause shares the frames of its wrapper
        frames = next(h[2] for h in reversed(heads) if h[2])
    chain = tuple((t, m) for t, m, _ in heads[:-1])
    # printed innermost first; an Extraction's frames run outermost to innermost (as a
    # Python traceback's), so the key's frames and its top function are the failing ones
    return Extraction("java", error_type, message, tuple(reversed(frames)), chain, tool="jvm")


def parse_node_head(line: str) -> tuple[str, str] | None:
    """The error type (with its code) and message of a Node error's first line, or None."""
    head = _NODE_HEAD.match(line.strip())
    if head is None:
        return None
    code = head.group("code")
    return (f"{head.group('type')}[{code}]" if code else head.group("type")), head.group("msg")


def parse_node(text: str, repo: str = "") -> Extraction | None:
    if "    at " not in text:
        return None
    lines = text.splitlines()
    for index, line in enumerate(lines):
        head = _NODE_HEAD.match(line.strip())
        if not head:
            continue
        frames: list[Frame] = []
        for follow in lines[index + 1:]:
            frame = _NODE_FRAME.match(follow)
            if not frame:
                if frames:
                    break
                continue
            raw = frame.group("file").removeprefix("file://")
            frames.append(Frame(normalize_path(raw, repo), (frame.group("func") or "").strip(),
                                int(frame.group("line")), not is_library(raw)))
        if frames:
            error_type = head.group("type")
            if head.group("code"):
                error_type = f"{error_type}[{head.group('code')}]"
            # printed innermost first: outermost to innermost, as every Extraction's
            return Extraction("node", error_type, head.group("msg"), tuple(reversed(frames)),
                              tool="node")
    return None


def parse_go(text: str, repo: str = "") -> Extraction | None:
    if "goroutine " not in text:
        return None
    lines = text.splitlines()
    panic = next((m for m in map(_GO_PANIC.match, lines) if m), None)
    if panic is None or "goroutine " not in text:
        return None
    frames: list[Frame] = []
    seen = 0  # goroutine headers: only the first (the panicking one) is the error's stack
    for index, line in enumerate(lines[:-1]):
        if line.startswith("goroutine "):
            seen += 1
            if seen > 1:
                break
            continue
        func = _go_func(line)
        loc = _GO_LOC.match(lines[index + 1]) if func else None
        if func and loc:
            raw = loc.group("file")
            in_project = not (is_library(raw) or func.startswith("runtime."))
            frames.append(Frame(normalize_path(raw, repo), func, int(loc.group("line")),
                                in_project))
    message = panic.group("msg")
    error_type = "panic"
    if message.startswith("runtime error: "):
        error_type, message = "runtime error", message.removeprefix("runtime error: ")
    # printed innermost first: outermost to innermost, as every Extraction's
    return Extraction("go", error_type, message, tuple(reversed(frames)), tool="go")


#: .NET's report of an exception nobody caught: ``Unhandled exception. System.X: message``
#: (.NET 5+; ``Unhandled Exception: System.X: message`` before), and an inner exception
#: printed in it: `` ---> System.IO.IOException: message``
_DOTNET_HEAD = re.compile(
    r"^(?:Unhandled [Ee]xception[.:] |\s{0,8}---> )(?P<type>[A-Za-z_][\w.`]{0,300}): ?(?P<msg>.*)$")
#: ``   at Billing.TaxTable.RateFor(String region) in /src/TaxTable.cs:line 22`` (the
#: location only with debug symbols)
_DOTNET_FRAME = re.compile(
    r"^\s{1,16}at (?P<func>[^\s(]{1,500})\([^)]{0,1000}\)"
    r"(?: in (?P<file>[^:\n]{0,1000}(?::[\\/][^:\n]{0,1000})?):line (?P<line>\d{1,9}))?\s*$")
_DOTNET_LIBRARY = ("System.", "Microsoft.")


def parse_dotnet(text: str, repo: str = "") -> Extraction | None:
    """An unhandled .NET exception: the innermost exception (the last ``--->``, the root
    cause) with its type and message, its wrappers as the chain, and the frames printed
    under the report (innermost first, so reversed: outermost to innermost)."""
    if "nhandled " not in text or "   at " not in text:
        return None
    heads: list[tuple[str, str]] = []
    frames: list[Frame] = []
    for line in text.splitlines():
        head = _DOTNET_HEAD.match(line)
        if head and (heads or not line.startswith(" ")):
            heads.append((head.group("type"), head.group("msg").strip()))
            continue
        frame = _DOTNET_FRAME.match(line) if heads else None
        if frame:
            func, raw = frame.group("func"), frame.group("file") or ""
            frames.append(Frame(
                normalize_path(raw, repo) if raw else "", func,
                int(frame.group("line")) if frame.group("line") else None,
                not func.startswith(_DOTNET_LIBRARY) and not (raw and is_library(raw))))
    if not heads:
        return None
    error_type, message = heads[-1]
    return Extraction("dotnet", error_type, message, tuple(reversed(frames)),
                      tuple(heads[:-1]), tool="dotnet")
