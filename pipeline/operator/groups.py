"""Issue-queue groups by mined template: the fine fingerprint stays the identity of an error
(exact recall, ``heal ignore``, review decisions), but three ``user X not found`` errors are
one problem to a person. The template is mined over the samples of the groups listed, with
the same miner and configuration as the ``fingerprint`` stage (``fingerprint_batch``), so the
grouping depends on the set of samples, never on their order.
"""

from __future__ import annotations

from typing import Any

from pipeline.fingerprint.batch import fingerprint_batch
from pipeline.fingerprint.hashing import stable_hash


def by_template(issues: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per mined template: ``template``, ``cluster`` (its hash), ``count`` (sum),
    ``fines`` (most frequent first), ``first_seen``, ``last_seen`` and the newest ``sample``;
    the largest groups first."""
    if not issues:
        return []
    fingerprints = fingerprint_batch([str(i.get("sample", "")) for i in issues])
    groups: dict[str, dict[str, Any]] = {}
    for issue, fp in zip(issues, fingerprints, strict=True):
        key = fp.template or fp.normalized
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
    return sorted(groups.values(), key=lambda g: (-g["count"], g["template"]))


#: issue-queue rows mined per figure (the most frequent first): bounds the work of one
#: ``heal metrics`` window, ``heal report`` or ``/metrics`` scrape
MAX_MINED = 2000


def summary(issues: list[dict[str, Any]], limit: int) -> tuple[int, list[dict[str, Any]]]:
    """How many mined templates the issues fall into, and the ``limit`` largest groups,
    compact: ``cluster``, ``template``, ``count``, ``fingerprints`` (how many fine ones),
    ``fines`` (up to 10, most frequent first: the fine fingerprint stays the identity for
    ``heal explain`` and exact recall), ``fine`` (the most frequent one), ``last_seen`` and
    ``sample``."""
    groups = by_template(issues)
    counts = {str(i["fine"]): int(i["count"]) for i in issues}
    top = []
    for g in groups[:limit]:
        fines = sorted(g["fines"], key=lambda f: (-counts.get(f, 0), f))
        top.append({"cluster": g["cluster"], "template": g["template"], "count": g["count"],
                    "fingerprints": len(fines), "fines": fines[:10], "fine": fines[0],
                    "last_seen": g["last_seen"], "sample": g["sample"]})
    return len(groups), top
