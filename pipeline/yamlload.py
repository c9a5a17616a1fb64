"""``safe_load`` through libyaml when PyYAML was built with it (the seeds parse ~10x faster:
a one-shot ``heal diagnose`` reads every seed file), else through the pure-Python loader.
Both are PyYAML's safe loader: the same tags, the same errors (``yaml.YAMLError``)."""

from __future__ import annotations

from typing import Any

import yaml

_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str) -> Any:
    """Raises: yaml.YAMLError (also for a document nested too deeply for the parser)."""
    try:
        return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader (C or Python)
    except RecursionError as exc:
        raise yaml.YAMLError("nested too deeply (lists or mappings inside each other "
                             "hundreds of levels deep); flatten it") from exc
