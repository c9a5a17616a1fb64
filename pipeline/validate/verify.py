"""Phase 2: verification in an isolated git worktree with the fix applied.

The fix is realized in a fresh worktree (``git apply`` for diffs, the argv for commands) at a
snapshot of the user's tree, committed on ``heal/<fingerprint>-<attempt>`` with trailers, and
then the failing command plus the policy checks run as RQ jobs, in parallel, both on the
tree without the fix ("before") and with it ("after"). The fix passes only when the failing
command fails before and passes after, and no policy check that passed before fails after.
Playbooks act on repository state rather than on tracked files; they are verified step by
step when applied (validation after each action), so their verification is deferred.

A verification records its owner beside its worktrees (``<tag>.owner``: the process, the
repository, the heal branch once made); the worktrees and the branch of one whose process is
gone (killed mid-validation) are removed by the next verification (:func:`prune_abandoned`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.branch_record import forget
from pipeline.console import visible
from pipeline.errors import GitError
from pipeline.events import ErrorEvent
from pipeline.gitops import GitRepo, Trailers
from pipeline.treestate import PREFIXES as TREE_PREFIXES
from pipeline.treestate import TAG as TREE_TAG
from pipeline.treestate import tree_digest
from pipeline.validate.owner import owner_gone, owner_token
from pipeline.validate.paths import escaping_links, path_problem, within
from pipeline.validate.request import FixRequest
from pipeline.validate.rqjobs import CheckQueue, CheckSpec
from pipeline.validate.runner import run_argv
from pipeline.validate.secrets import find_secrets

log = logging.getLogger(__name__)
REALIZE_TIMEOUT_S = 120.0
#: a taught command that ran in the worktree and changed no file (said by heal run and explain)
RAN_UNCHANGED = "taught command ran in a worktree to verify it and changed no file there"
#: a taught command matched where it may not run to be verified (see :func:`taught_elsewhere`)
NOT_RUN_HERE = "taught command not run to verify it"
#: a verification without a run of the failing command (not trusted, or include_failing off)
FAILURE_NOT_SHOWN = ("the failing command was not re-run, so nothing shows the failure "
                     "happens here or is gone with the fix")


@dataclass
class Verification:
    passed: bool
    reason: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    branch: str = ""
    commit: str = ""
    changed: list[str] = field(default_factory=list)
    lines: int = 0
    deferred: bool = False
    #: a run the verdict depends on timed out or never ran: no evidence either way
    inconclusive: bool = False


def _record_owner(path: Path, data: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def prune_abandoned(work_dir: Path) -> list[str]:
    """Remove the worktrees, and the heal branch when it still points at its commit, of each
    verification in ``work_dir`` whose process is gone (on this host); their tags. A broken
    record or repository is skipped, never raised: pruning must not stop a verification."""
    pruned = []
    for record in sorted(work_dir.glob("*.owner")) if work_dir.is_dir() else []:
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or not owner_gone(str(data.get("owner", ""))):
            continue
        tag = record.name.removesuffix(".owner")
        trees = [work_dir / f"{tag}-after", work_dir / f"{tag}-before"]
        try:
            repo = GitRepo(str(data.get("repo", "")))
            for tree in trees:
                repo.remove_worktree(tree)
            branch, commit = str(data.get("branch") or ""), str(data.get("commit") or "")
            if branch.startswith("heal/") and commit:
                # only while it is still the dead attempt's commit: never move another ref
                repo.run("update-ref", "-d", f"refs/heads/{branch}", commit, check=False)
                forget(repo, commit)
        except GitError as exc:  # the repository is gone: the folders are all that is left
            log.info("verify: pruning abandoned verification %s: %s", tag, exc)
            for tree in trees:
                shutil.rmtree(tree, ignore_errors=True)
        record.unlink(missing_ok=True)
        pruned.append(tag)
        log.info("verify: removed the worktrees of abandoned verification %s", tag)
    return pruned


def rel_cwd(error: ErrorEvent, root: Path) -> str:
    """The failing command's working directory relative to the repository root."""
    cwd = error.tags.get("cwd") or error.repo.path or str(root)
    try:
        rel = Path(os.path.realpath(cwd)).relative_to(os.path.realpath(root))
    except ValueError:
        return "."
    return rel.as_posix()


def _rel_cwd(req: FixRequest) -> str:
    return rel_cwd(req.candidate.error, req.root)


def taught_elsewhere(fix: dict[str, Any], match: dict[str, Any], root: Path) -> str:
    """Why a taught command (``heal learn --command``) is not run in a worktree to verify it
    for this error, '' when it may be. Running it is acting: a command that changes no file
    acts outside the repository. So it runs for verification only on an exact match (tier 1,
    not by the coarse fingerprint alone) or in the repository it was taught in; an error of
    another repository that only resembles the lesson (tier 2, 3, or the coarse fingerprint)
    gets it suggested, never run, until a person applies it."""
    rendered = fix.get("rendered")
    if not isinstance(rendered, dict):
        return ""
    if fix.get("kind") != "command" or not rendered.get("verify_in_worktree"):
        return ""
    tier, via = match.get("tier"), match.get("via")
    if tier == 1 and not via:
        return ""
    origin = str(rendered.get("taught_in") or "")
    if origin and within(origin, root):
        return ""
    where = f"in {origin}" if origin else "in a repository heal did not record"
    how = ("by its coarse fingerprint alone" if via
           else f"only at tier {tier} (score {float(match.get('score') or 0):.3f})" if tier
           else "by no exact match")
    return (f"{NOT_RUN_HERE}: it was taught {where} and matches here {how}; a taught "
            "command runs to be verified only where it was taught or on an exact match, so "
            "it runs only when a person applies it, then the failing step is re-run")


class Verifier:
    def __init__(self, checks: CheckQueue, work_dir: Path, home: Path | None = None) -> None:
        self.checks = checks
        self.work_dir = work_dir
        #: HEAL_HOME, left out of the working tree's digest (pipeline.treestate)
        self.home = home

    def verify(self, req: FixRequest, attempt: int) -> Verification:
        """Raises GitError only for a broken repository; a failing fix is a result."""
        if req.kind == "playbook":
            return Verification(True, "playbook: verified step by step when applied "
                                "(validation after each action)", deferred=True)
        elsewhere = taught_elsewhere(req.fix, req.candidate.match, req.root)
        if elsewhere:
            return Verification(True, elsewhere, deferred=True)
        if (req.kind == "command" and req.category != "SAFE"
                and not req.rendered.get("verify_in_worktree")):
            # MODERATE/RISKY commands (installs, retries) act on the environment, not on
            # tracked files: running them to verify would already be applying them
            return Verification(True, f"{req.category} command: runs only when applied, then "
                                "the failing step is re-run", deferred=True)
        repo = GitRepo(req.root)
        # the working tree the "before" run is a snapshot of, taken with it: the apply stage
        # compares it, not the tree when it decides, with the error's (flaky or resolved?)
        tree = self._tree(req)
        base = repo.snapshot()
        tag = uuid.uuid4().hex[:8]
        work_dir = self._work_dir_for(req.root)
        prune_abandoned(work_dir)
        after = work_dir / f"{tag}-after"
        before = work_dir / f"{tag}-before"
        owner = work_dir / f"{tag}.owner"
        _record_owner(owner, {"owner": owner_token(), "repo": str(repo.root)})
        try:
            repo.add_worktree(after, base)
            repo.add_worktree(before, base)
            done = self._verify_in(req, repo, attempt, before, after, owner)
            if tree is not False:
                for run in done.runs:
                    if run.get("phase") == "before" and run.get("name") == "failing-command":
                        run[TREE_TAG] = tree
            return done
        finally:
            repo.remove_worktree(after)
            repo.remove_worktree(before)
            owner.unlink(missing_ok=True)

    def _tree(self, req: FixRequest) -> str | None | bool:
        """The working tree's digest now (None: git cannot say), when the error carries one to
        compare it with; False when it does not (nothing to record)."""
        tags = req.candidate.error.tags if isinstance(req.candidate.error.tags, dict) else {}
        seen = tags.get(TREE_TAG)
        if not (isinstance(seen, str) and seen.startswith(TREE_PREFIXES)):
            return False
        return tree_digest(req.root, self.home)

    def _work_dir_for(self, root: Path) -> Path:
        # HEAL_HOME defaults to <git root>/.heal, inside the repository being healed;
        # worktrees there would show up in the user's own lint/format runs
        if within(self.work_dir, root):
            return Path(tempfile.gettempdir()) / "heal-worktrees"
        return self.work_dir

    def _verify_in(self, req: FixRequest, repo: GitRepo, attempt: int,
                   before: Path, after: Path, owner: Path) -> Verification:
        realized = self._realize(req, repo, after)
        if realized is not None:
            return realized
        if req.rendered.get("verify_in_worktree") and not repo.diff_numstat(after):
            # a taught command that changed no file acts on the environment: it already did
            # once, here; it runs again only when applied, then the failing step is re-run
            return Verification(True, f"{RAN_UNCHANGED}: whatever it does acts outside the "
                                "repository (it did so once, now); it runs again only when "
                                "applied, then the failing step is re-run", deferred=True)
        problem = self._check_change(req, repo, after)
        if problem is not None:
            return problem
        rows = repo.diff_numstat(after)
        changed = [p for _, _, p in rows]
        lines = sum(a + d for a, d, _ in rows)
        ev = req.candidate.error
        commit = repo.commit_all(
            after, f"heal: {req.fix.get('title') or req.fix_id}",
            f"Automated fix for error {ev.id} ({' '.join(ev.command) or 'no command'}).",
            Trailers("heal", req.fingerprint, req.fix_id))
        branch = repo.create_free_branch(req.fingerprint, attempt, commit)
        _record_owner(owner, {"owner": owner_token(), "repo": str(repo.root),
                              "branch": branch, "commit": commit})
        specs = self._specs(req, before, after)
        runs, notes = self._alone(specs, self.checks.run(specs))
        unverified = could_not_verify(runs)
        passed, reason = (False, unverified) if unverified else judge_runs(runs)
        if notes:
            reason = f"{reason}; {'; '.join(notes)}"
        if not runs and req.candidate.error.command and not req.trusted_command:
            reason = ("nothing to run: the event's command is not trusted (not from heal run "
                      "here, not in [trust] commands) and operator configuration declares no "
                      "[[verify.checks]]")
        if not passed:
            repo.run("branch", "-D", branch, check=False)  # the fix did not survive: discard
            forget(repo, commit)
        return Verification(passed, reason, runs, branch if passed else "", commit, changed,
                            lines, inconclusive=bool(unverified))

    def _alone(self, specs: list[CheckSpec], runs: list[dict[str, Any]]
               ) -> tuple[list[dict[str, Any]], list[str]]:
        """Each run that would count against the fix is run again alone, one after the
        other, and that result counts: run beside the other tree's copy, a check can lose a
        fixed port or file to it (a regression only the fix may cause). Nothing is re-run
        when everything passed as expected. Returns (runs, notes on results that changed)."""
        index = {(r["phase"], r["name"]): n for n, r in enumerate(runs)}
        runs, notes = list(runs), []
        for phase, name in disputed(runs):
            n = index[(phase, name)]
            beside = runs[n]
            [alone] = self.checks.run([specs[n]])
            alone["tail"] = (f"[heal: run again alone; beside the other runs it exited "
                             f"{beside['exit_code']}]\n{alone.get('tail', '')}")
            runs[n] = alone
            if (int(alone["exit_code"]) == 0) != (int(beside["exit_code"]) == 0):
                notes.append(f"{name} ({phase}) exited {beside['exit_code']} beside the other "
                             f"runs and {alone['exit_code']} alone: interference, the result "
                             "alone counts")
        return runs, notes

    def _realize(self, req: FixRequest, repo: GitRepo, tree: Path) -> Verification | None:
        """Apply the fix in ``tree``; a Verification when that already fails, else None."""
        if req.kind == "diff":
            try:
                repo.apply_diff(str(req.rendered.get("diff", "")), tree,
                                unidiff_zero=bool(req.rendered.get("unidiff_zero")))
            except GitError as exc:
                return Verification(False, f"the diff does not apply in the worktree: {exc}")
            return None
        links = escaping_links(tree, repo.tracked_symlinks(tree))
        if links:
            # the command would write through them, outside any worktree (and in suggest
            # mode too): refused before anything runs
            return Verification(False, _links_refusal(links))
        argv = [str(a) for a in req.rendered.get("argv") or []]
        timeout = float(req.rendered.get("timeout_s") or REALIZE_TIMEOUT_S)
        run = run_argv(argv, str(tree / _rel_cwd(req)), timeout)
        run.update(name="fix", phase="realize")
        if run["exit_code"] != 0 and not repo.is_dirty_in(tree):
            return Verification(False, f"the fix command exited {run['exit_code']} and changed "
                                "nothing", [run])
        return None

    def _check_change(self, req: FixRequest, repo: GitRepo, tree: Path) -> Verification | None:
        """The realized change obeys the same rules as a diff: paths, limits, secrets."""
        rows = repo.diff_numstat(tree)
        if not rows:
            return Verification(False, "the fix changed nothing in the worktree")
        pol = req.policy
        for _, _, path in rows:
            problem = path_problem(tree, path, pol)
            if problem:
                return Verification(False, f"realized change refused: {problem}")
        lines = sum(a + d for a, d, _ in rows)
        if lines > pol.max_diff_lines or len(rows) > pol.max_files:
            return Verification(False, f"realized change is {lines} lines in {len(rows)} files; "
                                f"limits are {pol.max_diff_lines} lines, {pol.max_files} files")
        hits = find_secrets(repo.staged_diff(tree))
        if hits:
            return Verification(False, "realized change adds a secret: " + ", ".join(hits))
        return None

    def _specs(self, req: FixRequest, before: Path, after: Path) -> list[CheckSpec]:
        pol = req.policy
        specs: list[CheckSpec] = []
        rel = _rel_cwd(req)
        # only a command the operator's side vouches for is re-run (pipeline.trust.boundary);
        # the event's own `command` field is data
        command = tuple(req.trusted_command)
        timeout = pol.check_timeout_s
        for phase, tree in (("before", before), ("after", after)):
            if command and pol.include_failing:
                specs.append(CheckSpec("failing-command", phase, command, str(tree / rel),
                                       timeout))
            for check in pol.checks:
                specs.append(CheckSpec(check.name, phase, check.argv, str(tree), check.timeout_s))
        return specs


def _links_refusal(links: list[tuple[str, Path]]) -> str:
    shown = ", ".join(f"{visible(path)} -> {visible(str(dest))}" for path, dest in links[:3])
    more = f" and {len(links) - 3} more" if len(links) > 3 else ""
    return (f"the fix was not run: the repository tracks symbolic links leading outside it "
            f"({shown}{more}); a command run in the worktree could write through them, so "
            "heal does not run fixes here (make the links point inside the repository)")


def failure_reproduced(runs: list[dict[str, Any]]) -> bool | None:
    """Did the failing command fail again without any fix (the "before" run)? None when no
    such run was made (playbooks and environment commands: checked when applied)."""
    for r in runs:
        if r.get("phase") == "before" and r.get("name") == "failing-command":
            return int(r.get("exit_code", 1)) != 0
    return None


def disputed(runs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(phase, name) of the runs that would count against the fix, in the order to run them
    again alone: the failing command passing before or failing after; a check failing after
    (and, when it failed before too, that "before" first: losing to its other copy there
    would hide a regression). Timed-out and never-run ones are not here (no evidence)."""
    by = {(r["phase"], r["name"]): r for r in runs}

    def passed(phase: str, name: str) -> bool | None:
        """Whether that run exited 0; None without a run that says (none, timed out)."""
        run = by.get((phase, name))
        return None if run is None or _unknown(run) else int(run.get("exit_code", 1)) == 0

    out: list[tuple[str, str]] = []
    for phase, name in by:
        if phase != "after":
            continue
        if name == "failing-command":
            out += [("before", name)] if passed("before", name) is True else []
            out += [("after", name)] if passed("after", name) is False else []
        elif passed("after", name) is False:
            out += [("before", name)] if passed("before", name) is False else []
            out.append(("after", name))
    return out


def _unknown(run: dict[str, Any]) -> bool:
    return bool(run.get("timed_out") or run.get("not_run") or run.get("lost"))


def could_not_verify(runs: list[dict[str, Any]]) -> str:
    """Why the runs cannot decide the fix, '' when they can. A run that timed out, never
    ran (no verification worker took it) or was lost (its worker died, RQ failed the job) is
    no evidence: not "failure reproduced", not
    "still fails", not a regression. It is ignored only where its result could not change
    the verdict: a policy check that fails before anyway, or passes after anyway."""
    by = {(r["phase"], r["name"]): r for r in runs}
    problems: list[str] = []
    causes: list[str] = []  # (why no worker ran them, when the workers said so)
    for (phase, name), run in by.items():
        if not _unknown(run):
            continue
        other = by.get(("after" if phase == "before" else "before", name))
        if name != "failing-command" and other is not None and not _unknown(other) and (
                (phase == "after") == (int(other.get("exit_code", 1)) != 0)):
            continue
        if run.get("not_run"):
            what = "never ran (no verification worker took it)"
        elif run.get("lost"):
            what = f"did not finish ({str(run.get('tail') or '').removeprefix('lost: ')})"
        else:
            what = f"timed out after {float(run.get('duration_s', 0)):g}s"
        problems.append(f"{name} ({phase}) {what}")
        cause = str(run.get("tail") or "").removeprefix("never ran: ")
        if cause.startswith("verification workers cannot start") and cause not in causes:
            causes.append(cause)
    if not problems:
        return ""
    return f"could not verify: {'; '.join(problems)}" + "".join(f"; {c}" for c in causes)


def judge_runs(runs: list[dict[str, Any]]) -> tuple[bool, str]:
    """Passed only if the failing command failed before and passes after, and no check that
    passed before fails after."""
    by = {(r["phase"], r["name"]): r for r in runs}
    if not runs:
        return False, "nothing to run: the error has no command and heal.toml has no checks"
    fb, fa = by.get(("before", "failing-command")), by.get(("after", "failing-command"))
    if fb is not None and fa is not None:
        if fb["exit_code"] == 0:
            return False, ("the failure does not reproduce in a clean worktree (exit 0 without "
                           "the fix), so passing after proves nothing")
        if fa["exit_code"] != 0:
            return False, f"the failing command still fails with the fix (exit {fa['exit_code']})"
    # (the failing command itself cannot show up here: failing before is checked above)
    regressions = [name for (phase, name), r in by.items()
                   if phase == "after" and r["exit_code"] != 0
                   and by.get(("before", name), {}).get("exit_code") == 0]
    if regressions:
        return False, "the fix breaks checks that passed before: " + ", ".join(regressions)
    if fb is None or fa is None:  # checks alone: they say nothing about the failure
        return True, f"no check regressed; {FAILURE_NOT_SHOWN}"
    return True, "original failure gone; no check regressed"
