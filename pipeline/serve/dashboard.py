"""The dashboard page: one self-contained HTML file (inline CSS and JS, no CDN), shipped as
package data next to this module and read once; and the Content-Security-Policy an HTML page
of heal serve is sent with."""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from importlib import resources


@cache
def page() -> bytes:
    return resources.files("pipeline.serve").joinpath("dashboard.html").read_bytes()


def _inline_hashes(html: str, tag: str) -> list[str]:
    """CSP source expressions (``'sha256-...'``) for each inline ``<tag>...</tag>`` block of
    ``html`` (found with str.find: linear in the page, whatever text it holds)."""
    out: list[str] = []
    start = 0
    while (at := html.find(f"<{tag}>", start)) >= 0:
        body = at + len(tag) + 2
        end = html.find(f"</{tag}>", body)
        if end < 0:
            break
        digest = hashlib.sha256(html[body:end].encode()).digest()
        out.append(f"'sha256-{base64.b64encode(digest).decode()}'")
        start = end
    return out


def content_security_policy(html: str) -> str:
    """The policy for an HTML page of heal serve: nothing but the page's own inline scripts
    and styles (by hash: an injected one would not run), requests to this server only, no
    ``<base>``, no form posts, and never inside a frame (clickjacking the approve buttons)."""
    scripts = " ".join(_inline_hashes(html, "script")) or "'none'"
    styles = " ".join(_inline_hashes(html, "style")) or "'none'"
    return (f"default-src 'none'; script-src {scripts}; style-src {styles}; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


@cache
def page_policy() -> str:
    return content_security_policy(page().decode())
