"""Value types of fingerprinting: frames, extractions and the public ``Fingerprint``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Frame:
    """One stack frame; ``file`` is already normalized (project-relative when known)."""

    file: str
    function: str = ""
    line: int | None = None
    in_project: bool = True


@dataclass(frozen=True)
class Extraction:
    """The part of a raw text that matters, and its structure.

    ``kind`` is the parser that recognised it: python, pytest, java, node, go, rust,
    dotnet, test (go test, jest, vitest, rspec, PHPUnit, XCTest), gradle, sanitizer, swift,
    haskell, compiler, shell,
    log or text.
    ``error_type`` is the exception class / tool code / error class,
    ``message`` the raw (not yet normalized) message, ``chain`` the causes (type, message)
    from outermost to innermost for chained exceptions. ``frames`` run outermost to innermost
    (the failing frame last) whatever order the tool printed them in: a Python traceback
    prints that order, JVM, Node and Go traces the reverse.
    """

    kind: str
    error_type: str
    message: str
    frames: tuple[Frame, ...] = ()
    chain: tuple[tuple[str, str], ...] = ()
    tool: str = ""

    def project_frames(self) -> tuple[Frame, ...]:
        return tuple(f for f in self.frames if f.in_project)

    def to_dict(self) -> dict[str, Any]:
        # by hand: dataclasses.asdict deep-copies recursively, a fifth of the stage's time
        return {
            "kind": self.kind,
            "error_type": self.error_type,
            "message": self.message,
            "frames": [{"file": f.file, "function": f.function, "line": f.line,
                        "in_project": f.in_project} for f in self.frames],
            "chain": [list(c) for c in self.chain],
            "tool": self.tool,
        }


@dataclass(frozen=True)
class Fingerprint:
    """What ``fingerprint_text`` returns (and the fingerprint stage publishes).

    ``fine`` / ``coarse`` are versioned stable hashes; ``template`` the clustered template of
    the normalized headline; ``params`` the extracted parameters for fix templates;
    ``hints`` explain what the rules masked.
    """

    fine: str
    coarse: str
    version: str
    template: str
    normalized: str
    params: dict[str, Any] = field(default_factory=dict)
    extraction: Extraction | None = None
    hints: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "fine": self.fine,
            "coarse": self.coarse,
            "version": self.version,
            "template": self.template,
            "normalized": self.normalized,
            "params": dict(self.params),
            "extraction": self.extraction.to_dict() if self.extraction else {},
            "hints": list(self.hints),
        }
