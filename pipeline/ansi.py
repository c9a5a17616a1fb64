"""Terminal escape sequences in event text: what a terminal would not show as text.

CI runners and test tools colour their output (``--color=yes``, ``FORCE_COLOR``,
``PY_COLORS=1``), so the same error arrives with and without ``ESC [ 31 m``. Every reader
that takes meaning from the text (fingerprints, detection rules, log records, CI step logs)
removes them first through :func:`strip_ansi`. The pattern is linear: each repetition is
bounded and none can backtrack into another.
"""

from __future__ import annotations

import re

#: CSI (colours, cursor moves: ``ESC [ 1 ; 31 m``), OSC (titles, hyperlinks: ``ESC ] 8 ;;
#: url BEL``, ended by BEL or ``ESC \\``) and the two-character escapes (``ESC ( B``
#: character sets, ``ESC =`` keypad modes, a bare ``ESC 7``)
ANSI = re.compile(
    r"\x1b\[[0-9:;<=>?]{0,32}[ -/]{0,4}[@-~]"
    r"|\x1b\][^\x07\x1b]{0,2048}(?:\x07|\x1b\\)"
    r"|\x1b[()*+][0-9A-Za-z]"
    r"|\x1b[0-9=>@-Z\\^_]"
)


def strip_ansi(text: str) -> str:
    """``text`` without its terminal escape sequences (unchanged, fast, when it has none)."""
    return ANSI.sub("", text) if "\x1b" in text else text
