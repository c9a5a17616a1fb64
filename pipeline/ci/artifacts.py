"""The files a CI job uploads: ``decision.json``, ``fix.patch`` (when there is a verified diff)
and ``pr-comment.md``, in one directory (see README "CI providers")."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.ci import markdown
from pipeline.ci.report import RunReport


def shown(value: str) -> str:
    """``value`` as a UTF-8 file can hold it: a byte that is not UTF-8 (a path the OS gave as
    a surrogate escape, PEP 383) written ``\\xNN``, as an event carries it; else unchanged."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        pass
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that escapes no byte
        raw = value.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "backslashreplace")


def not_utf8_warning(what: str, value: str, names: str) -> str:
    """The warning for a path heal had to write ``\\xNN`` into a CI file ("" when exact);
    ``names`` the variables that choose it."""
    if shown(value) == value:
        return ""
    return (f"heal: {what} {shown(value)} holds bytes that are not UTF-8; written as \\xNN, "
            f"which names no folder: give {names} a UTF-8 name")


def write_artifacts(report: RunReport, directory: Path) -> dict[str, Path]:
    """Write the files; returns {"decision", "comment", "patch" (only with a diff)}.

    Raises: OSError when the directory cannot be written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    files = {"decision": directory / "decision.json", "comment": directory / "pr-comment.md"}
    files["decision"].write_text(json.dumps(report.to_json(), indent=2, sort_keys=True) + "\n",
                                 encoding="utf-8")
    files["comment"].write_text(markdown.pr_comment(report), encoding="utf-8")
    patch = directory / "fix.patch"
    if report.diff:
        patch.write_text(report.diff, encoding="utf-8")
        files["patch"] = patch
    elif patch.exists():
        patch.unlink()  # a stale patch from an earlier step must not be uploaded as this one's
    return files
