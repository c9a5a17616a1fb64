"""A fix's alternatives, each with its rendered command resolved the way the fix's own is.

The validate stage narrows a fix to the failing command's paths (pipeline.fixes.scope) and
runs a declared install with the repository's package manager (pipeline.validate.manager);
both apply the same change to every alternative, and an alternative that change cannot be
made to is dropped: it would otherwise run unresolved, without a person.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: rendered command -> the resolved one, or None when it cannot be resolved (dropped)
Resolve = Callable[[dict[str, Any]], "dict[str, Any] | None"]


def with_alternatives(fix: dict[str, Any], out: dict[str, Any],
                      resolve: Resolve) -> dict[str, Any]:
    """``out`` (the resolved ``fix``) with ``fix``'s alternatives resolved by ``resolve``;
    one without a rendered command is kept as it is."""
    alternatives = fix.get("alternatives")
    if not isinstance(alternatives, list):
        return out
    kept = []
    for alt in alternatives:
        rendered = alt.get("rendered") if isinstance(alt, dict) else None
        if not isinstance(rendered, dict):
            kept.append(alt)
            continue
        resolved = resolve(rendered)
        if resolved is not None:
            kept.append({**alt, "rendered": resolved})
    return {**out, "alternatives": kept}
