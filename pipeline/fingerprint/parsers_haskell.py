"""A Haskell program's run-time error with its call stack (GHC's ``HasCallStack``)::

    shop: Prelude.head: empty list
    CallStack (from HasCallStack):
      error, called at libraries/base/GHC/List.hs:1646:3 in base:GHC.List
      errorEmptyList, called at libraries/base/GHC/List.hs:85:11 in base:GHC.List
      head, called at src/Cart.hs:12:5 in main:Cart

Identified as a Python exception is: by what went wrong (the message above the block, the
exception's type ``ErrorCall`` unless GHC names another) and by where, the program's own
frames: each ``FUNC, called at FILE:L:C in PACKAGE:MODULE`` line is a frame of ``FILE``
calling ``FUNC``, the program's when its package is not GHC's own (``base``, ``ghc-prim``,
``ghc-internal``, ``ghc-bignum``) and its file no installed library's. So one failing call
made from two places of a program is two errors, while line numbers stay out of the key.

Every regex here is anchored and bounded.
"""

from __future__ import annotations

import re

from pipeline.fingerprint.model import Extraction, Frame
from pipeline.fingerprint.paths import is_library, normalize_path

_HEADER = "CallStack (from HasCallStack):"
#: ``  head, called at src/Cart.hs:12:5 in main:Cart``
_FRAME = re.compile(r"^(?P<func>[^\s,]{1,300}), called at (?P<file>[^\s:]{1,1000}):"
                    r"(?P<line>\d{1,9}):\d{1,9} in (?P<package>[^\s:]{1,300}):"
                    r"(?P<module>[\w.']{1,300})$")
#: GHC's own packages: their frames are the runtime's, never the program's
_GHC_PACKAGES = re.compile(r"^(?:base|ghc-prim|ghc-internal|ghc-bignum|ghc|integer-gmp)"
                           r"(?:-\d[\d.]{0,40})?$")
#: ``Uncaught exception ghc-internal:GHC.Internal.Exception.ErrorCall:`` (GHC 9.10+)
_UNCAUGHT = re.compile(r"(?:^|: )Uncaught exception (?:[\w-]{1,200}:)?"
                       r"(?P<type>[\w.']{1,300}):$")
#: the exception ``error``, ``undefined`` and the partial functions raise
_ERROR_CALL = "ErrorCall"
#: lines above the call stack searched for the message (and GHC 9.10's type line)
_ABOVE = 6
#: GHCi's ``*** Exception: `` before the message
_GHCI = "*** Exception: "


def parse_haskell(text: str, repo: str = "") -> Extraction | None:
    """The first ``CallStack (from HasCallStack):`` block and the error above it: its
    message (the nearest line above, GHCi's ``*** Exception:`` left out), its type
    (``ErrorCall``, or the one GHC 9.10+ names), and the call stack's frames, outermost
    first, the program's own marked as the project's."""
    if _HEADER not in text:
        return None
    lines = text.splitlines()
    at = next((index for index, line in enumerate(lines) if line.strip() == _HEADER), None)
    if at is None:
        return None
    above = [line.strip() for line in lines[max(0, at - _ABOVE):at]]
    message, error_type = "", _ERROR_CALL
    for line in reversed(above):
        uncaught = _UNCAUGHT.search(line)
        if uncaught is not None:
            error_type = uncaught.group("type").rsplit(".", 1)[-1]
            break
        if line and not message:
            message = line.split(_GHCI, 1)[-1].strip()
    frames = []
    for line in lines[at + 1:]:
        found = _FRAME.match(line.strip())
        if found is None:
            break
        raw = found.group("file")
        own = not (_GHC_PACKAGES.match(found.group("package")) or is_library(raw))
        frames.append(Frame(normalize_path(raw, repo), found.group("func"),
                            int(found.group("line")), own))
    if not message and not frames:
        return None
    frames.reverse()  # (printed innermost first)
    return Extraction("haskell", error_type, message, tuple(frames), tool="ghc")
