"""``safe_load`` through libyaml when PyYAML was built with it (the seeds parse ~10x faster:
a one-shot ``heal diagnose`` reads every seed file), else through the pure-Python loader.
Both are PyYAML's safe loader: the same tags, the same errors (``yaml.YAMLError``).

Aliases are bounded: a document whose aliases expand it to more values than its text could
hold without them (:func:`value_limit`) is refused. Nine aliases of a list of nine aliases of
... nine strings ("billion laughs") are a few hundred bytes that every later reader (a copy,
a JSON dump, a database row) expands to millions or billions of values."""

from __future__ import annotations

from typing import Any

import yaml

_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: values any document may hold, whatever its length (room for a seed file's few aliases)
_BASE_VALUES = 10_000


class AliasBomb(yaml.YAMLError):
    """The document's aliases expand it far beyond what its text holds."""


def value_limit(text: str) -> int:
    """The most values (mappings, lists, keys, scalars) a document of ``text`` may expand
    to. Written out without aliases, every value takes at least one character of the text,
    a key with no value two: twice the length always fits an alias-free document."""
    return _BASE_VALUES + 2 * len(text)


def safe_load(text: str) -> Any:
    """Raises: yaml.YAMLError (also for a document nested too deeply for the parser);
    AliasBomb (a yaml.YAMLError) when aliases expand it beyond :func:`value_limit`."""
    try:
        doc = yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader (C or Python)
    except RecursionError as exc:
        raise yaml.YAMLError("nested too deeply (lists or mappings inside each other "
                             "hundreds of levels deep); flatten it") from exc
    if "&" in text and "*" in text:  # an alias needs an anchor: nothing to expand otherwise
        limit = value_limit(text)
        if _expanded_beyond(doc, limit):
            raise AliasBomb(f"its aliases (*name) expand it to more than {limit} values, the "
                            f"most a {len(text)}-character document may expand to (written "
                            f"out it could hold about {2 * len(text)}); write the repeated "
                            "values out instead of aliasing them")
    return doc


def _expanded_beyond(doc: Any, limit: int) -> bool:
    """Whether walking ``doc`` as every later reader would (each alias expanded again)
    visits more than ``limit`` values; stops at the limit, so it costs O(limit) at most,
    also for a self-referencing document."""
    stack = [doc]
    seen = 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > limit:
            return True
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False
