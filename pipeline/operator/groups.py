"""Issue-queue groups by mined template: the fine fingerprint stays the identity of an error
(exact recall, ``heal ignore``, review decisions), but three ``user X not found`` errors are
one problem to a person. The template is mined over the samples of the groups listed, with
the same miner and configuration as the ``fingerprint`` stage (``fingerprint_batch``), so the
grouping depends on the set of samples, never on their order.
"""

from __future__ import annotations

from typing import Any

from pipeline.ansi import strip_ansi
from pipeline.fingerprint.batch import fingerprint_batch
from pipeline.fingerprint.hashing import stable_hash
from pipeline.fingerprint.model import Fingerprint
from pipeline.fingerprint.status import EXIT_KIND

#: characters of a label (a table cell clips it further)
LABEL_CHARS = 300


def clean_line(text: str) -> str:
    """``text`` as one clean line: no escape sequences, no control characters (each becomes
    a space), whitespace runs to one space."""
    text = strip_ansi(text)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(text.split())


def label(fp: Fingerprint) -> str:
    """What identifies a fine fingerprint to a person: its normalized headline (error class
    and masked message, as the key holds them) and the innermost project frame it names,
    never the text's raw last line (``exit status 2``, a colour code, a linker's summary)."""
    text = clean_line(fp.normalized)
    ex = fp.extraction
    frames = ex.project_frames() if ex is not None else ()
    if ex is not None and frames:
        # the frame where it failed: an Extraction's frames run outermost to innermost
        top = frames[-1]
        where = f"{top.file}:{top.function}" if top.function else top.file
        text = f"{text} ({clean_line(where)})" if text else clean_line(where)
    return text[:LABEL_CHARS]


def by_template(issues: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per mined template: ``template``, ``cluster`` (its hash), ``count`` (sum),
    ``fines`` (most frequent first), ``first_seen``, ``last_seen``, the newest ``sample`` and
    ``label`` (one clean line that tells the group apart: the template of a group of several
    fingerprints, else the fingerprint's :func:`label`); the largest groups first."""
    if not issues:
        return []
    # (with how each sample's command ended: a crash that printed only "start" is keyed on
    # its signal, as the stage keyed it, not merged with every other "start")
    fingerprints = fingerprint_batch([str(i.get("sample", "")) for i in issues],
                                     statuses=[str(i.get("ended") or "") for i in issues])
    groups: dict[str, dict[str, Any]] = {}
    newest: dict[str, Fingerprint] = {}
    for issue, fp in zip(issues, fingerprints, strict=True):
        key = _group_key(fp)
        first = issue.get("first_seen", issue["last_seen"])
        group = groups.get(key)
        if group is None:
            group = groups[key] = {"template": key, "cluster": stable_hash("issues", key),
                                   "count": 0, "fines": [], "first_seen": first,
                                   "last_seen": issue["last_seen"], "sample": issue["sample"]}
        group["count"] += int(issue["count"])
        group["fines"].append(issue["fine"])
        group["first_seen"] = min(group["first_seen"], first)
        if issue["last_seen"] >= group["last_seen"]:
            group["last_seen"], group["sample"] = issue["last_seen"], issue["sample"]
            newest[key] = fp
    for key, group in groups.items():
        one = label(newest[key]) if len(group["fines"]) == 1 else ""
        group["label"] = one or clean_line(group["template"])[:LABEL_CHARS]
    return sorted(groups.values(), key=lambda g: (-g["count"], g["template"]))


def _group_key(fp: Fingerprint) -> str:
    """What a group of the queue is: the mined template, and for a failure keyed on how it
    ended the program that ended so (``killed by SIGSEGV (app)``), as its fingerprint keys
    it: the silent crashes of two programs share the template ``killed by SIGSEGV`` and
    nothing else."""
    key = fp.template or fp.normalized
    ex = fp.extraction
    if ex is not None and ex.kind == EXIT_KIND and ex.frames:
        key = f"{key} ({ex.frames[-1].file})"
    return key


#: issue-queue rows mined per figure (the most frequent first): bounds the work of one
#: ``heal metrics`` window, ``heal report`` or ``/metrics`` scrape
MAX_MINED = 2000


def summary(issues: list[dict[str, Any]], limit: int) -> tuple[int, list[dict[str, Any]]]:
    """How many mined templates the issues fall into, and the ``limit`` largest groups,
    compact: ``cluster``, ``template``, ``count``, ``fingerprints`` (how many fine ones),
    ``fines`` (up to 10, most frequent first: the fine fingerprint stays the identity for
    ``heal explain`` and exact recall), ``fine`` (the most frequent one), ``last_seen``,
    ``sample`` and ``label``."""
    groups = by_template(issues)
    counts = {str(i["fine"]): int(i["count"]) for i in issues}
    top = []
    for g in groups[:limit]:
        fines = sorted(g["fines"], key=lambda f: (-counts.get(f, 0), f))
        top.append({"cluster": g["cluster"], "template": g["template"], "count": g["count"],
                    "fingerprints": len(fines), "fines": fines[:10], "fine": fines[0],
                    "last_seen": g["last_seen"], "sample": g["sample"],
                    "label": g["label"]})
    return len(groups), top
