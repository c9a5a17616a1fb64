"""heal's own ``heal/<fingerprint>-<n>`` branches in one repository: which are heal's, which
may go, and removing them (retention).

A verification commits a fix on a new heal branch. The branch is deleted as soon as nobody
needs it: by validate when the fix failed or was refused, by the apply stage once the fix was
applied (its change is on the working branch), rolled back or found already there. A
suggestion's branch is kept for ``heal apply``, bounded by the retention of ``[branches]``
in heal.toml (or operator configuration): ``keep`` (default 20) newest heal branches per
repository, none older than ``max_age_days`` (default 14), and a branch whose change is
already on another branch (merged or cherry-picked) goes too: after each verification and
apply once the repository is over either bound, by ``heal branches prune`` at any time.

heal deletes a branch only when all of this holds, whatever the retention says:

- its name is one heal gives (``heal/<fingerprint>-<n>`` for the fingerprint of its commit);
- its tip is heal's own commit (``Healed-by: heal`` and ``Heal-Fingerprint`` trailers) and,
  where git keeps a reflog, the branch was never moved or renamed since heal created it;
- its tip is exactly the commit heal made for it: the one heal recorded when it created the
  branch (:mod:`pipeline.branch_record`), or the verdict's commit (:func:`discard`). Trailers
  survive ``git commit --amend`` and reflogs may be off or expired, so neither is evidence
  enough alone. A branch with no record (made by a heal before records) goes only when its
  tip was committed under heal's own identity (``heal <heal@localhost>``, the one heal uses
  where git has none) and never re-committed (committer time = author time);
- no worktree has it checked out;
- every commit on it that no other ref (heal's branches aside) holds is heal's: the fix
  commit, and the snapshot of the working tree heal verified it on (``git stash create``).

The deletion itself is ``git update-ref -d REF OLD``: git deletes the ref only while it still
points at the commit that was checked, so a branch moved meanwhile stays.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.branch_record import forget, made
from pipeline.config import Settings
from pipeline.errors import GitError
from pipeline.gitops import BRANCH_PREFIX, GitRepo, branch_name
from pipeline.policy_limits import Limits

log = logging.getLogger(__name__)

DEFAULT_KEEP = 20
DEFAULT_MAX_AGE_DAYS = 14.0
_TRAILER = re.compile(r"^Heal-Fingerprint: (.{1,300})$", re.M)
_STASH = re.compile(r"^(?:WIP on|On) ")
_STASH_PARTS = re.compile(r"^(?:index on|untracked files on) ")


@dataclass(frozen=True)
class HealBranch:
    name: str
    commit: str
    #: the tip's committer time (seconds since the epoch)
    when: float
    #: why heal never deletes it ("" when heal may)
    kept_because: str = ""
    #: its change is already on another branch (merged, or cherry-picked onto HEAD)
    merged: bool = False

    def age_days(self, now: float) -> float:
        return max(0.0, now - self.when) / 86_400


@dataclass(frozen=True)
class Retention:
    keep: int = DEFAULT_KEEP
    max_age_days: float = DEFAULT_MAX_AGE_DAYS


def retention_of(limits: Limits) -> Retention:
    """The ``[branches]`` retention of a policy's limits."""
    return Retention(limits.count("branches.keep"), limits.get("branches.max_age_days"))


def retention_for(settings: Settings, root: str | Path) -> Retention:
    """The ``[branches]`` retention in force for the repository at ``root``: its heal.toml,
    else operator configuration, else the defaults."""
    from pipeline.policy import policy_for
    from pipeline.trust.operator import governed

    return retention_of(governed(settings, policy_for(root).current()).limits)


def list_branches(repo: GitRepo) -> list[HealBranch]:
    """Every ``heal/`` branch of ``repo``, oldest first, each saying whether heal may delete it."""
    out = repo.run("for-each-ref", "--format=%(refname)%00%(objectname)%00%(committerdate:unix)",
                   f"refs/heads/{BRANCH_PREFIX}").stdout
    checked_out = _checked_out(repo)
    branches = []
    for line in out.splitlines():
        ref, _, rest = line.partition("\0")
        commit, _, when = rest.partition("\0")
        name = ref.removeprefix("refs/heads/")
        why = _kept_because(repo, name, commit, checked_out)
        merged = not why and _merged(repo, name, commit)
        branches.append(HealBranch(name, commit, float(when or 0), why, merged))
    return sorted(branches, key=lambda b: (b.when, b.name))


def plan(branches: list[HealBranch], retention: Retention, now: float | None = None,
         spare: str = "") -> list[tuple[HealBranch, str]]:
    """The branches the retention removes, with why: merged ones, those older than
    ``max_age_days``, and the oldest beyond the ``keep`` newest of heal's. ``spare`` (a branch
    just made) is never among them."""
    now = time.time() if now is None else now
    mine = [b for b in branches if not b.kept_because]
    # the spared branch is the newest (committer times tie within a second); the others
    # share what is left of ``keep``
    room = retention.keep - (1 if any(b.name == spare for b in mine) else 0)
    ordered = sorted((b for b in mine if b.name != spare), key=lambda b: (b.when, b.name))
    newest = {b.name for b in ordered[-room:]} if room > 0 else set()
    doomed = []
    for b in mine:
        if b.name == spare:
            continue
        if b.merged:
            doomed.append((b, "its change is already on another branch"))
        elif b.age_days(now) > retention.max_age_days:
            doomed.append((b, f"older than {retention.max_age_days:g} days "
                              f"({b.age_days(now):.1f})"))
        elif b.name not in newest:
            doomed.append((b, f"beyond the {retention.keep} newest heal branches"))
    return doomed


def prune(repo: GitRepo, retention: Retention, *, dry_run: bool = False,
          spare: str = "", always: bool = True) -> list[tuple[HealBranch, str]]:
    """Apply the retention to ``repo``; the branches removed (would be, with ``dry_run``).
    Without ``always`` (the stages, after each verification and apply) the branches are
    inspected only when there are more than ``keep`` or one is older than ``max_age_days``
    (one git command otherwise)."""
    if not always and not _over(repo, retention):
        return []
    doomed = plan(list_branches(repo), retention, spare=spare)
    if dry_run:
        return doomed
    return [(b, why) for b, why in doomed if _delete(repo, b.name, b.commit)]


def _over(repo: GitRepo, retention: Retention) -> bool:
    """More heal branches than ``keep``, or one older than ``max_age_days``."""
    times = repo.run("for-each-ref", "--format=%(committerdate:unix)",
                     f"refs/heads/{BRANCH_PREFIX}").stdout.split()
    oldest = time.time() - retention.max_age_days * 86_400
    return len(times) > retention.keep or any(float(t or 0) < oldest for t in times)


def prune_quietly(root: str | Path, retention: Retention, spare: str = "") -> None:
    """:func:`prune` in the repository at ``root``; a problem is logged, never raised (the
    stage's work is done)."""
    try:
        for b, why in prune(GitRepo(root), retention, spare=spare, always=False):
            log.info("branches: removed %s (%s)", b.name, why)
    except (GitError, OSError) as exc:
        log.warning("branches: retention in %s: %s", root, exc)


def discard(repo: GitRepo, name: str, commit: str) -> bool:
    """Delete heal's branch ``name`` when nobody needs it any more (its fix was applied,
    rolled back or found already there): only if it is still heal's (see the module's
    rules) and still at ``commit``. Whether it was deleted."""
    if not name.startswith(BRANCH_PREFIX) or not commit:
        return False
    try:
        # ``commit`` is the one heal recorded in the verdict: evidence enough that the tip,
        # if still there (``_delete`` checks), is heal's
        if _kept_because(repo, name, commit, _checked_out(repo), recorded=True):
            return False
        return _delete(repo, name, commit)
    except GitError:
        return False


def _delete(repo: GitRepo, name: str, commit: str) -> bool:
    gone = repo.run("update-ref", "-d", f"refs/heads/{name}", commit,
                    check=False).returncode == 0
    if gone:
        forget(repo, commit)
    return gone


def _checked_out(repo: GitRepo) -> set[str]:
    out = repo.run("worktree", "list", "--porcelain").stdout
    return {line.removeprefix("branch refs/heads/") for line in out.splitlines()
            if line.startswith("branch ")}


def _kept_because(repo: GitRepo, name: str, commit: str, checked_out: set[str],
                  recorded: bool = False) -> str:
    if name in checked_out:
        return "checked out in a worktree"
    message = repo.run("log", "-1", "--format=%B", commit, check=False).stdout
    found = _TRAILER.search(message)
    if "Healed-by: heal" not in message or found is None:
        return "its tip is not heal's commit"
    fingerprint = found.group(1).strip()
    number = name.rpartition("-")[2]
    if not number.isdigit() or branch_name(fingerprint, int(number)) != name:
        return "renamed: not the name heal gave it"
    if not recorded:
        owner = made(repo, commit)
        if owner and owner != name:
            return f"renamed: heal made this commit for {owner}"
        if not owner and not _heal_identity(repo, commit):
            return ("its tip is not the commit heal made for it (no record of it: amended, "
                    "rebased or reset since, or made by a heal before records)")
    moves = repo.run("reflog", "show", "--format=%H", f"refs/heads/{name}", "--",
                     check=False)
    if moves.returncode == 0 and len(moves.stdout.split()) > 1:
        return "moved or renamed since heal made it"
    extra = _foreign_commits(repo, name, commit)
    if extra:
        return f"holds {extra} commit(s) on no other branch that heal did not make"
    return ""


#: the identity heal commits under where git has none (pipeline.gitops GitRepo._identity)
_HEAL_IDENTITY = ("heal", "heal@localhost")


def _heal_identity(repo: GitRepo, commit: str) -> bool:
    """``commit`` was made by heal under its own identity and never re-committed: author and
    committer are ``heal <heal@localhost>`` and both times are the same (an amend or a rebase
    keeps the author time but sets the committer's, and the person's identity)."""
    out = repo.run("log", "-1", "--format=%an%x00%ae%x00%at%x00%cn%x00%ce%x00%ct", commit,
                   check=False).stdout.strip().split("\0")
    if len(out) != 6:
        return False
    an, ae, at, cn, ce, ct = out
    return (an, ae) == _HEAL_IDENTITY == (cn, ce) and at == ct


def _foreign_commits(repo: GitRepo, name: str, commit: str) -> int:
    """How many commits only ``name`` holds (no other ref but heal's branches) that are not
    heal's: the fix commit and its snapshot parent are."""
    only = repo.run("rev-list", commit, "--not", f"--exclude=refs/heads/{BRANCH_PREFIX}*",
                    "--all").stdout.split()
    ours = {commit}
    parents = repo.run("rev-list", "--parents", "-n", "1", commit).stdout.split()[1:]
    if parents:
        snap = parents[0]
        subject = repo.run("log", "-1", "--format=%s", snap).stdout
        if _STASH.match(subject):
            ours.add(snap)
            for part in repo.run("rev-list", "--parents", "-n", "1", snap).stdout.split()[2:]:
                if _STASH_PARTS.match(repo.run("log", "-1", "--format=%s", part).stdout):
                    ours.add(part)
    return len([c for c in only if c not in ours])


def _merged(repo: GitRepo, name: str, commit: str) -> bool:
    """The branch's fix is on another branch: its tip is reachable from a ref that is not
    heal's, or the fix's change is on HEAD (``git cherry``: a cherry-pick of it)."""
    if _foreign_reach(repo, commit):
        return True
    cherry = repo.run("cherry", "HEAD", commit, f"{commit}^", check=False)
    return cherry.returncode == 0 and cherry.stdout.startswith("-")


def _foreign_reach(repo: GitRepo, commit: str) -> bool:
    holders = repo.run("for-each-ref", "--contains", commit, "--format=%(refname)",
                       check=False).stdout.split()
    return any(not ref.startswith(f"refs/heads/{BRANCH_PREFIX}") for ref in holders)
