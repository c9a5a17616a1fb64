"""The dashboard page: one self-contained HTML file (inline CSS and JS, no CDN), shipped as
package data next to this module and read once."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def page() -> bytes:
    return resources.files("pipeline.serve").joinpath("dashboard.html").read_bytes()
