"""Parameters fix templates need (module, package, file, command, port, host, signal...).

A table of named regexes like the masking rules: the first match of each name wins.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.fingerprint.model import Extraction

PARAM_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    # Python: ModuleNotFoundError: No module named 'yaml' (top-level package of a dotted name)
    ("module", re.compile(r"No module named '(?P<v>[\w.]+)'")),
    # Python: cannot import name 'x' from 'pkg'
    ("import_name", re.compile(r"cannot import name '(?P<v>\w+)'")),
    # Node: Cannot find module 'express' / Go: cannot find package "x"
    ("package", re.compile(r"Cannot find (?:module|package) ['\"](?P<v>[^'\"]+)['\"]")),
    # pip: No matching distribution found for foo==1.0
    ("package", re.compile(r"(?:No matching distribution found for|requirement) (?P<v>[\w.-]+)")),
    # shell: foo: command not found
    ("command", re.compile(r"(?:^|\s)(?P<v>[\w./+-]+): (?:command )?not found", re.M)),
    # a port in a bind/connect error: "port 8080", "host:8080", ":::3000" (not 10:00:01)
    ("port", re.compile(r"(?:\bport\s*[=:]?\s*|[A-Za-z\]][\w.-]*:|:::|EADDRINUSE[^\n]*?:)"
                        r"(?P<v>\d{2,5})\b", re.I)),
    # host names in connection / resolution errors
    ("host", re.compile(r"(?:resolve host:?\s*|host ['\"]?|connect(?:ion)? to |Host )"
                        r"(?P<v>[A-Za-z][\w-]*(?:\.[\w-]+)+|localhost)", re.I)),
    ("host", re.compile(r"(?P<v>[A-Za-z][\w-]*(?:\.[\w-]+)+):\d{2,5}\b")),
    # signals and the exit codes that mean one
    ("signal", re.compile(r"\b(?P<v>SIG[A-Z]{2,6})\b|signal:? (?P<v2>killed|\d+)"
                          r"|(?P<v3>Killed)\b|exit (?:code|status) (?P<v4>13[0-9]|14[0-3])")),
    ("permission_path", re.compile(r"(?P<v>\.{0,2}/[\w./-]+): Permission denied")),
)


def extract_params(text: str, extraction: Extraction) -> dict[str, Any]:
    """Parameters found in ``text`` plus the ones the extraction identified."""
    params: dict[str, Any] = {}
    for name, pattern in PARAM_RULES:
        if name in params:
            continue
        match = pattern.search(text)
        if match:
            value = next((v for v in match.groups() if v), None)
            if value:
                params[name] = value
    if "module" in params:
        params.setdefault("package", params["module"].split(".")[0])
    project = extraction.project_frames()
    if project:
        params["file"] = project[-1].file
        if project[-1].line is not None:
            params["line"] = project[-1].line
    if extraction.kind in ("compiler", "python", "pytest", "java", "node", "go"):
        params["error_type"] = extraction.error_type
    if extraction.kind == "compiler":
        params["code"] = extraction.error_type
    if extraction.tool:
        params["tool"] = extraction.tool
    return params
