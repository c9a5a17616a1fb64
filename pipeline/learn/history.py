"""Learning from history (``heal learn --history [--since DATE] [--dry-run]``): proposals of
DRAFT diff fixes, shown before anything is stored.

Two sources, both following the precedent rule of ``heal run`` (a step failed, a change was
made, it passed):

- commits in the repository's history (``git log --since``) whose message carries a trailer
  naming the failure they fixed: ``Heal-Fingerprint: FP`` (the error group) or
  ``Fixes-Step: STEP`` (a step heal recorded failing; its latest failing fingerprint is
  used). heal's own commits (``Heal-Fix:``) are skipped: heal already knows those fixes.
- precedents ``heal run`` recorded for this repository (``precedent_drafts``: the step failed
  on one commit and passed on another) that no taught pattern covers yet; teaching one turns
  it into a pattern with a detection rule, so a variant matches too.

The error text each proposal is taught from is the sample of its group in the issue queue;
a fingerprint heal never saw is not proposed.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import GitError, UsageError
from pipeline.learn.fixes import FixDraft, commit_fix
from pipeline.learn.source import TaughtError

_TRAILER = re.compile(r"^(Heal-Fingerprint|Fixes-Step|Heal-Fix):[ \t]*(\S[^\n]{0,200})$",
                      re.MULTILINE | re.IGNORECASE)
_SINCE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?$")


@dataclass(frozen=True)
class Proposal:
    source: str  # "commit" | "precedent"
    ref: str  # the commit, or the precedent id
    fine: str
    text: str
    why: str
    diff: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"source": self.source, "ref": self.ref, "fine": self.fine, "why": self.why,
                "headline": headline(self.text)}


def headline(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:120] if lines else ""


def check_since(since: str | None) -> str | None:
    """``since`` stripped, once it is a real date (the shape alone lets ``2026-13-45`` or
    ``2026-02-30`` through, which the precedent query could not use).

    Raises UsageError: not a date of the calendar."""
    if since is None:
        return None
    text, why = since.strip(), ""
    if _SINCE.match(text):
        try:
            dt.datetime.fromisoformat(text)
            return text
        except ValueError as exc:
            why = f"not a date of the calendar ({exc}); "
    raise UsageError(f"--since {since!r}: {why}write a date, e.g. 2026-11-01 or "
                     "2026-11-01T08:00")


def _samples(db: Any, fines: list[str]) -> dict[str, str]:
    rows = db.fetch("SELECT fine, sample FROM issue_queue WHERE fine = ANY($1::text[])", fines)
    return {r["fine"]: str(r["sample"]) for r in rows}


def _step_fingerprint(db: Any, step: str) -> str | None:
    value = db.fetchval(
        """SELECT fingerprint FROM (
               SELECT fingerprint, ts FROM step_failures WHERE step = $1
               UNION ALL SELECT fingerprint, ts FROM lifecycle_outcomes
               WHERE step = $1 AND ok IS NOT TRUE) f ORDER BY ts DESC LIMIT 1""", step)
    return None if value is None else str(value)


def commit_proposals(db: Any, root: Path, since: str | None) -> list[Proposal]:
    from pipeline.gitops import GitRepo

    args = ["log", "--format=%H%x00%B%x1e", "--no-merges"]
    if since:
        args.append(f"--since={since}")
    try:
        log = GitRepo(root).run(*args).stdout
    except GitError as exc:
        raise UsageError(f"heal learn --history: {exc}") from exc
    found: list[tuple[str, str, str]] = []  # (sha, fine, why)
    for record in log.split("\x1e"):
        sha, _, body = record.strip().partition("\x00")
        trailers = {k.lower(): v.strip() for k, v in _TRAILER.findall(body)}
        if not sha or not trailers or "heal-fix" in trailers:
            continue
        if "heal-fingerprint" in trailers:
            found.append((sha, trailers["heal-fingerprint"],
                          f"trailer Heal-Fingerprint: {trailers['heal-fingerprint']}"))
        elif "fixes-step" in trailers:
            fine = _step_fingerprint(db, trailers["fixes-step"])
            if fine is not None:
                found.append((sha, fine, f"trailer Fixes-Step: {trailers['fixes-step']}"))
    samples = _samples(db, [f for _, f, _ in found])
    return [Proposal("commit", sha, fine, samples[fine], why)
            for sha, fine, why in found if fine in samples]


def precedent_proposals(db: Any, root: Path, since: str | None) -> list[Proposal]:
    after = dt.datetime.fromisoformat(since).replace(tzinfo=dt.UTC) if since else None
    rows = db.fetch(
        """SELECT d.id, d.fingerprint, d.repo_path, d.diff, d.workflow, d.step, d.created_at
           FROM precedent_drafts d
           WHERE ($1::timestamptz IS NULL OR d.created_at >= $1)
             AND NOT EXISTS (SELECT 1 FROM pattern_fingerprints x JOIN patterns p
                             ON p.id = x.pattern_id WHERE x.fingerprint = d.fingerprint
                             AND p.source = 'learned')
           ORDER BY d.created_at""", after)
    mine = [r for r in rows if _inside(str(r["repo_path"]), root)]
    samples = _samples(db, [str(r["fingerprint"]) for r in mine])
    return [Proposal("precedent", str(r["id"]), str(r["fingerprint"]),
                     samples[str(r["fingerprint"])],
                     f"{r['workflow']}/{r['step']} failed, then passed after this change",
                     str(r["diff"]))
            for r in mine if str(r["fingerprint"]) in samples]


def _inside(path: str, root: Path) -> bool:
    try:
        return bool(path) and Path(path).resolve().is_relative_to(root)
    except (OSError, ValueError):
        return False


def proposals(db: Any, root: Path, since: str | None) -> list[Proposal]:
    since = check_since(since)
    return commit_proposals(db, root, since) + precedent_proposals(db, root, since)


def lesson_parts(proposal: Proposal, root: Path) -> tuple[TaughtError, FixDraft]:
    """Raises UsageError when the commit cannot be taught (see pipeline.learn.fixes)."""
    if proposal.source == "commit":
        draft = commit_fix(root, proposal.ref)
    else:
        draft = FixDraft("diff", f"Precedent {proposal.ref}", f"{proposal.why}; the diff is "
                         "verified before it is offered.",
                         {"diff": proposal.diff, "literal": True},
                         {"precedent": proposal.ref})
    error = TaughtError(f"history:{proposal.ref[:16]}", proposal.text, proposal.fine,
                        repo=str(root), why=f"history ({proposal.source})")
    return error, draft
