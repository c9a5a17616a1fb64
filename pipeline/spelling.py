"""Values in messages spelled as the person wrote them, not as Python prints them.

A pack, a seed file, a playbook or a lesson is YAML or JSON: a value read from it is shown
in that spelling (``true``, ``null``, ``["funday"]``, ``"text"``), never as a Python repr
(``True``, ``None``, ``['funday']``), so the message can be searched for in the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any


def spelled(value: Any) -> str:
    """``value`` in JSON spelling (which YAML reads the same): ``true``, ``null``, ``3``,
    ``"text"``, ``["a", "b"]``, ``{"k": 1}``."""
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):  # a cycle, a mapping with odd keys: still one line
        return json.dumps(str(value), ensure_ascii=False)


def spelled_list(values: Iterable[Any]) -> str:
    """Several values, each spelled, separated by commas: ``"a", "b"``."""
    return ", ".join(spelled(v) for v in values)
