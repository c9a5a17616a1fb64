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
