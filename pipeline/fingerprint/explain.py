"""Why texts share a fingerprint: what the fine and coarse keys of a text are made of.

``heal explain`` shows it for a group's sample, so an operator can see why events were
grouped (or split): the parser that read the text, the error class, the normalized message,
the project frames that enter the key, and what normalization did on the way (escape
sequences removed, values masked by which rule, extracted names masked, checkout paths
collapsed, line numbers left out, which exception of a chain was chosen).

Nothing here changes a hash: :func:`explain_grouping` re-runs the same steps as
:class:`~pipeline.fingerprint.fingerprinter.Fingerprinter` and reports them. The searches
over the text are ``str.find`` calls and walks bounded by :data:`_PATH_CHARS`, never a regex.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.ansi import strip_ansi
from pipeline.fingerprint.fingerprinter import (
    MASKED_PARAMS,
    MAX_FRAMES,
    NAMED_PARAMS,
    chain_key,
    coarse_head,
    coarse_where,
    fingerprint_text,
    mask_message,
)
from pipeline.fingerprint.model import Extraction, Frame
from pipeline.fingerprint.paths import key_path, normalize_path
from pipeline.fingerprint.rules import DEFAULT_NORMALIZER, Masked
from pipeline.fingerprint.status import EXIT_KIND

#: the longest raw path looked for in front of a normalized frame file
_PATH_CHARS = 1024
#: occurrences of a frame's file tried when looking for the raw path it came from
_TRIES = 20
#: characters that end a path written in a trace (quotes, brackets, spaces)
_PATH_END = frozenset(" \t\r\n\"'()<>[]{},;=`")
#: characters of a message shown in an explanation
_SHOWN = 300

#: which exception of a chain becomes the error class, by parser
_CHOSEN = {
    "python": "the last exception raised (the one the traceback ends with); the ones it "
              "was raised from or during are the chain",
    "java": "the root cause (the last 'Caused by'); the exceptions wrapping it are the chain",
    "dotnet": "the root cause (the last inner exception, '--->'); the exceptions wrapping it "
              "are the chain",
}


def explain_grouping(text: str, repo: str = "", exit_code: int | None = None,
                     signal: str = "", command: Sequence[str] = ()) -> dict[str, Any]:
    """What the fine and coarse fingerprints of ``text`` are made of, JSON-ready: ``kind``,
    ``error_type``, ``message`` (raw), ``normalized``, ``frames`` (those in the key, each with
    the ``raw`` path it was written as), ``frames_left_out``, ``chain`` and ``chosen``
    (chained exceptions), ``fine_key`` and ``coarse_key`` (their parts), ``steps`` (one
    sentence per thing normalization did) and ``fine`` / ``coarse``; ``exit_code`` /
    ``signal``: how the command ended, when known (as the event carried them), ``command``
    the argv it ran. Never raises."""
    fp = fingerprint_text(text, repo, exit_code=exit_code, signal=signal, command=command)
    ex = fp.extraction or Extraction("text", "", "")
    clean = strip_ansi(text)
    masked, fine_text, named = _masked_message(ex.message, fp.params)
    project = ex.project_frames()
    used = project[-MAX_FRAMES:]
    frames = [{"file": f.file, "function": f.function, "line": f.line,
               "raw": _raw_path(clean, f, repo)} for f in used]
    top = coarse_where(ex.kind, used)
    steps = _steps(text, clean, ex, frames)
    if ex.kind == EXIT_KIND:
        steps.insert(0, f"no line of the text says what failed: keyed on how the command "
                        f"ended ({fp.normalized[:_SHOWN]!r})")
    steps += named + DEFAULT_NORMALIZER.describe(masked)
    left = {"library": len(ex.frames) - len(project), "deeper": len(project) - len(used)}
    steps += _left_out(left)
    chain = [{"type": t, "message": m[:_SHOWN]} for t, m in ex.chain]
    return {
        "fine": fp.fine, "coarse": fp.coarse, "kind": ex.kind, "tool": ex.tool,
        "error_type": ex.error_type, "message": ex.message[:_SHOWN],
        "normalized": fp.normalized[:_SHOWN * 2], "frames": frames, "frames_left_out": left,
        "chain": chain, "chosen": _CHOSEN.get(ex.kind, "") if chain else "",
        "fine_key": {"kind": ex.kind, "error_type": ex.error_type,
                     "message": fine_text[:_SHOWN * 2],
                     "frames": [f"{key_path(f.file, repo)}:{f.function}" for f in used],
                     # the chain's classes and masked messages ("" without a chain)
                     "chain": chain_key(ex, fp.params, DEFAULT_NORMALIZER) if ex.chain
                     else ""},
        "coarse_key": {"kind": ex.kind,
                       "head": coarse_head(ex.kind, ex.error_type, masked.text),
                       "top_function": top},
        "steps": steps,
    }


def _masked_message(message: str, params: dict[str, Any]
                    ) -> tuple[Masked, str, list[str]]:
    """The message as the fingerprinter masks it (its whitespace runs to one space):
    for the coarse key, the fine key's text, and a sentence per extracted name masked."""
    message = " ".join(message.split())
    said = []
    seen = message
    for name in MASKED_PARAMS:  # the names mask_message replaces, in its order
        value = params.get(name)
        if (isinstance(value, str) and len(value) > 1 and value in seen
                and f"<{name}>" not in seen):
            seen = seen.replace(value, f"<{name}>")
            said.append(f"<{name}>: {value[:80]!r} masked in the coarse key (what is missing "
                        "is one kind of failure; the fine key keeps it)" if name in NAMED_PARAMS
                        else f"<{name}>: {value[:80]!r} masked (extracted as a parameter for "
                        "fixes; it is not part of the key)")
    masked, fine_text = mask_message(message, params, DEFAULT_NORMALIZER)
    return masked, fine_text, said


def _raw_path(text: str, frame: Frame, repo: str) -> str:
    """The path ``frame.file`` was written as in ``text`` (the file itself when it was not
    changed, or not found): the path characters in front of an occurrence of it whose
    normalized form is the frame's file."""
    name = frame.file
    if not name:
        return name
    at = text.find(name)
    for _ in range(_TRIES):
        if at < 0:
            break
        start = at
        stop = max(at - _PATH_CHARS, 0)
        while start > stop and text[start - 1] not in _PATH_END:
            start -= 1
        end = at + len(name)
        raw = text[start:end]
        if raw != name and normalize_path(raw, repo) == name:
            return raw
        at = text.find(name, end)
    return name


def _steps(text: str, clean: str, ex: Extraction, frames: list[dict[str, Any]]
           ) -> list[str]:
    """One sentence per thing done to the text before its parts were hashed (the masking
    rules' sentences are added by the caller)."""
    steps = [f"read by the {ex.kind} parser" + (f" ({ex.tool})" if ex.tool else "")
             + (f": error class {ex.error_type!r}" if ex.error_type else ": no error class")
             + ", the message is the line that says what failed"]
    if clean != text:
        steps.append("terminal escape sequences (colours) removed before reading")
    if ex.chain:
        names = " -> ".join(t for t, _ in ex.chain)
        steps.append(f"exception chain: {names} -> {ex.error_type}; chosen: {ex.error_type}, "
                     f"{_CHOSEN.get(ex.kind, 'the one the parser reads as the error')}")
    collapsed = [f"{f['raw'][:120]} -> {f['file']}" for f in frames if f["raw"] != f["file"]]
    if collapsed:
        steps.append("paths collapsed (checkout, home, temp and CI folders are not part of "
                     f"the key): {'; '.join(collapsed[:5])}")
    lines = [f"{f['file']}:{f['line']}" for f in frames if f["line"] is not None]
    if lines:
        steps.append("line numbers left out of the key (an edit above the line is the same "
                     f"error): {', '.join(lines[:5])}")
    return steps


def _left_out(left: dict[str, int]) -> list[str]:
    out = []
    if left["library"]:
        out.append(f"{left['library']} library/runtime frame(s) left out (installed packages, "
                   "the standard library: they do not say where the project failed)")
    if left["deeper"]:
        out.append(f"{left['deeper']} project frame(s) left out (only the last {MAX_FRAMES} "
                   "project frames as printed enter the key)")
    return out
