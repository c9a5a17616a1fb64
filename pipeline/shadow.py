"""Shadow mode: history through the real pipeline, nothing applied, a report of what
automation would have done.

Isolation (so shadow traffic never mixes with real work and nothing the user owns changes):

* streams and keys under a fresh prefix ``<prefix>-shadow-<token>`` (deleted afterwards);
* only the stages up to ``validate`` run (fingerprint -> lookup -> validate): no apply
  stage consumes the shadow verdicts, so even an ``apply`` decision is never carried out;
* each repository named by an event is copied to a temp dir and the events point at the
  copy: verification's worktrees and ``heal/...`` branches are made in the copy, never in
  the user's repository;
* ``$HEAL_HOME`` (audit log, worktrees) is a temp dir, and PostgreSQL is a copy of the
  configured database (``CREATE DATABASE ... TEMPLATE``, so the learned patterns are
  there) or, when the server refuses that (another session is connected to it), a fresh
  seeded one like ``heal demo``'s; the report says which.

Each event gets ``tags.mode`` = the mode being evaluated, so validate's own decision rule
(``pipeline.validate.validator.decide``) says what that mode would have done.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from pipeline.config import STREAM_CANDIDATES, STREAM_ERRORS, STREAM_VERDICTS, Settings
from pipeline.errors import DecodeError, HealError, UsageError
from pipeline.events import CandidateEvent, ErrorEvent, VerdictEvent
from pipeline.model import Mode

SHADOW_STAGES = ("fingerprint", "lookup", "validate")
SHADOW_MODES = (Mode.SUGGEST.value, Mode.AUTO_SAFE.value, Mode.AUTO.value)
BATCH = 50
ROWS_SHOWN = 20


@dataclass
class Row:
    error_id: str
    original_id: str
    fingerprint: str = ""
    pattern: str = ""
    tier: str = ""
    fix_id: str = ""
    category: str = ""
    decision: str = "none"
    reason: str = ""
    verified: str = "not run"  # passed | failed | not reproducible | not run

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ShadowReport:
    mode: str
    errors: int = 0
    matched: int = 0
    by_tier: dict[str, int] = field(default_factory=dict)
    unmatched: int = 0
    would_apply: int = 0
    suggestions: int = 0
    escalations: int = 0
    rejected: int = 0
    observed: int = 0
    duplicates: int = 0
    no_verdict: int = 0
    eligible_verified: int = 0
    eligible_passed: int = 0
    not_reproducible: int = 0
    notes: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)

    @property
    def auto_fix_rate(self) -> float | None:
        """would-auto-apply / errors, an error that repeats an earlier request (same
        fingerprint, fix and commit: decided once, like the pipeline does) not counted."""
        counted = self.errors - self.duplicates
        return self.would_apply / counted if counted else None

    @property
    def precision(self) -> float | None:
        """Verified-and-passed / verified, among fixes the mode would apply by themselves."""
        return self.eligible_passed / self.eligible_verified if self.eligible_verified else None

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "rows"}
        out["auto_fix_rate"] = self.auto_fix_rate
        out["precision"] = self.precision
        out["rows"] = [r.to_dict() for r in self.rows]
        return out


def eligible(fix: dict[str, Any], mode: str) -> bool:
    """Is this fix in ``mode``'s precision: one the mode would apply by itself once verified
    (validate's rule, before votes), or under ``suggest`` any fix put to a human."""
    category = str(fix.get("category", "")).upper()
    state = str(fix.get("state", "ACTIVE")).upper()
    if fix.get("kind") == "escalate" or state in ("QUARANTINED", "DEPRECATED"):
        return False
    if mode == Mode.SUGGEST.value:
        return True
    safe = category == "SAFE"
    if state == "DRAFT":
        return False
    if mode == Mode.AUTO_SAFE.value:
        return safe
    return mode == Mode.AUTO.value and (safe or state == "AUTOMATED")


def _verified(verdict: VerdictEvent) -> str:
    runs = {(r.get("phase"), r.get("name")): r for r in verdict.verification}
    if not any(phase == "after" for phase, _ in runs):
        return "not run"
    before = runs.get(("before", "failing-command"))
    if before is not None and before.get("exit_code") == 0:
        return "not reproducible"
    return "passed" if verdict.decision in ("apply", "suggest") else "failed"


def _entries(client: Any, stream: str) -> Iterable[bytes]:
    cursor = "-"
    while True:
        rows = client.xrange(stream, min=cursor, count=500)
        for _entry_id, fields in rows:
            raw = fields.get(b"event") or fields.get("event")
            if raw is not None:
                yield raw
        if len(rows) < 500:
            return
        last = rows[-1][0]
        cursor = "(" + (last.decode() if isinstance(last, bytes) else last)


def build_report(mode: str, client: Any, settings: Settings, originals: dict[str, str],
                 notes: list[str]) -> ShadowReport:
    """Read the shadow candidates and verdicts back into the report."""
    report = ShadowReport(mode=mode, errors=len(originals), notes=notes)
    rows = {eid: Row(eid, orig) for eid, orig in originals.items()}
    for raw in _entries(client, settings.stream(STREAM_CANDIDATES)):
        try:
            cand = CandidateEvent.decode(raw)
        except DecodeError:
            continue
        row = rows.get(cand.error_id)
        if row is None:
            continue
        match = cand.match or {}
        row.fingerprint = cand.fine
        row.pattern = str(match.get("pattern_id") or "")
        row.tier = str(match.get("tier") or "") if row.pattern else ""
        row.fix_id = str((cand.fix or {}).get("id", ""))
        row.category = str((cand.fix or {}).get("category", ""))
    verdicts: dict[str, VerdictEvent] = {}
    for raw in _entries(client, settings.stream(STREAM_VERDICTS)):
        try:
            verdict = VerdictEvent.decode(raw)
        except DecodeError:
            continue
        if verdict.error_id in rows:
            verdicts[verdict.error_id] = verdict
    for eid, row in rows.items():
        _count(report, row, verdicts.get(eid), mode)
    report.rows = list(rows.values())
    return report


def _count(report: ShadowReport, row: Row, verdict: VerdictEvent | None, mode: str) -> None:
    if row.pattern:
        report.matched += 1
        report.by_tier[row.tier or "?"] = report.by_tier.get(row.tier or "?", 0) + 1
    else:
        report.unmatched += 1
    if verdict is None:
        report.no_verdict += 1
        return
    row.decision, row.reason = verdict.decision, verdict.reason[:300]
    row.verified = _verified(verdict)
    if verdict.decision == "reject" and "identical request" in verdict.reason:
        report.duplicates += 1  # pre-flight dedupe: the earlier error's decision stands
        row.decision = "repeat"
        return
    tally = {"apply": "would_apply", "suggest": "suggestions", "escalate": "escalations",
             "reject": "rejected", "observe": "observed"}.get(verdict.decision)
    if tally:
        setattr(report, tally, getattr(report, tally) + 1)
    if verdict.fix and eligible(verdict.fix, mode):
        if row.verified in ("passed", "failed"):
            report.eligible_verified += 1
            report.eligible_passed += row.verified == "passed"
        elif row.verified == "not reproducible":
            report.not_reproducible += 1


# -- isolation ------------------------------------------------------------------------------


class Sandbox:
    """Temp home, repository copies, prefix and database of one shadow run."""

    def __init__(self, base: Settings) -> None:
        self.base = base
        self.tmp = Path(tempfile.mkdtemp(prefix="heal-shadow-"))
        self.copies: dict[Path, Path] = {}
        self.notes: list[str] = []
        self._drop: Callable[[], None] = lambda: None
        token = uuid.uuid4().hex[:8]
        self.settings = dataclasses.replace(base, prefix=f"{base.prefix}-shadow-{token}",
                                            home=self.tmp / "home")
        self.settings.home.mkdir(parents=True)

    def open_database(self) -> Any:
        """Raises EngineError when no database is reachable."""
        from pipeline.demo.isolation import with_database
        from storage.db import Database
        from storage.engines import database_url, open_database

        url = database_url(self.base)  # before home changes: the embedded server stays the same
        name = f"heal_shadow_{uuid.uuid4().hex[:10]}"
        source = urlsplit(url).path.lstrip("/") or "postgres"
        admin = Database(with_database(url, "postgres"), min_size=1, max_size=1)
        try:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
            self.notes.append(f"database: a copy of {source} (learned patterns included)")
        except HealError as exc:
            try:
                admin.execute(f'CREATE DATABASE "{name}"')
            except HealError as exc2:
                admin.close()
                raise UsageError(f"shadow mode needs its own database and the server refused "
                                 f"to create one ({exc2}); nothing was run") from exc2
            self.notes.append(f"database: fresh, seeded patterns only (copying {source} was "
                              f"refused: {str(exc)[:120]})")

        def drop() -> None:
            try:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except HealError:
                pass  # a leftover shadow database is harmless; the next run uses a new name
            finally:
                admin.close()

        self._drop = drop
        self.settings = dataclasses.replace(self.settings, database_url=with_database(url, name))
        return open_database(self.settings)

    def copy_repo(self, root: Path) -> Path:
        """A copy of ``root`` for verification: ``.git`` and the tracked files as they are
        now (uncommitted edits included). Untracked and ignored files (virtualenvs,
        ``node_modules``, ``$HEAL_HOME``) are left out: verification's snapshot
        (``git stash create``) and its worktrees never contain them either.

        Raises:
            UsageError: the repository cannot be read.
        """
        root = root.resolve()
        if root in self.copies:
            return self.copies[root]
        dest = self.tmp / "repos" / f"{len(self.copies)}-{root.name}"
        try:
            listed = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True,
                                    check=True, timeout=120).stdout
            git_dir, common = subprocess.run(
                ["git", "rev-parse", "--path-format=absolute", "--git-dir", "--git-common-dir"],
                cwd=root, capture_output=True, text=True, check=True, timeout=60,
            ).stdout.split("\n")[:2]
            shutil.copytree(common, dest / ".git", symlinks=True)
            if git_dir != common:  # a linked worktree: its own HEAD and index
                for name in ("HEAD", "index"):
                    if (Path(git_dir) / name).exists():
                        shutil.copy2(Path(git_dir) / name, dest / ".git" / name)
            for rel in filter(None, listed.decode("utf-8", "surrogateescape").split("\0")):
                src = root / rel
                if src.is_symlink() or src.is_file():  # a deleted tracked file stays deleted
                    (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dest / rel, follow_symlinks=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise UsageError(f"shadow mode cannot copy the repository {root}: {exc}") from exc
        # the copied index's stat data (inodes, ctimes) no longer match the files: refresh it,
        # or `git stash create` (verification's snapshot) fails on the "changed" tree
        subprocess.run(["git", "update-index", "-q", "--refresh"], cwd=dest,
                       capture_output=True, check=False, timeout=120)
        self.copies[root] = dest
        return dest

    def redirect(self, event: ErrorEvent, mode: str, repo: Path | None) -> ErrorEvent:
        """The event as the shadow pipeline sees it: mode set, repository = the copy."""
        from pipeline.validate.validator import repo_root

        tags = {**event.tags, "mode": mode, "shadow": True}
        root = repo_root(event)
        if root is None and repo is not None and not event.repo.path:
            root = repo.resolve()
            tags.setdefault("cwd", str(root))
        if root is None:
            return dataclasses.replace(event, tags=tags)
        copy = self.copy_repo(root)
        cwd = Path(str(tags.get("cwd") or event.repo.path or root)).resolve()
        try:
            tags["cwd"] = str(copy / cwd.relative_to(root))
        except ValueError:
            tags["cwd"] = str(copy)
        new_repo = dataclasses.replace(event.repo, path=str(copy))
        return dataclasses.replace(event, tags=tags, repo=new_repo)

    def close(self, client: Any) -> None:
        """Delete the shadow's keys and streams, its database and its temp dir."""
        try:
            for key in client.scan_iter(match=f"{self.settings.prefix}:*", count=500):
                client.delete(key)
        finally:
            self.close_files()

    def close_files(self) -> None:
        try:
            self._drop()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


Source = Callable[[Callable[[ErrorEvent], None]], None]


def run_shadow(base: Settings, client: Any, source: Source | Iterable[ErrorEvent], mode: str,
               repo: Path | None = None, out: IO[str] | None = None) -> ShadowReport:
    """Run the events of ``source`` through fingerprint -> lookup -> validate in isolation
    under ``mode``. ``source`` is an iterable of events or a function that calls its argument
    once per event (so a long history streams through in batches, never all in memory).

    Raises:
        UsageError: an unknown mode, or no database could be set aside for the run.
        StreamUnavailable / EngineError: the engines cannot be reached.
    """
    from pipeline.runtime import drain_inline

    if mode not in SHADOW_MODES:
        raise UsageError(f"--mode {mode!r}: shadow mode evaluates one of "
                         + ", ".join(SHADOW_MODES))
    box = Sandbox(base)
    try:
        db = box.open_database()
        feeder = _Feeder(box, client, mode, repo, {"db": db}, drain_inline, out or sys.stderr)
        try:
            if callable(source):
                source(feeder.feed)
            else:
                for event in source:
                    feeder.feed(event)
            feeder.flush()
        finally:
            db.close()
        return build_report(mode, client, box.settings, feeder.originals, box.notes)
    finally:
        box.close(client)


class _Feeder:
    """Publishes redirected events on the shadow errors stream and drains every ``BATCH``."""

    def __init__(self, box: Sandbox, client: Any, mode: str, repo: Path | None,
                 resources: dict[str, Any], drain: Any, out: IO[str]) -> None:
        self.box, self.client, self.mode, self.repo = box, client, mode, repo
        self.resources, self.drain, self.out = resources, drain, out
        self.stream = box.settings.stream(STREAM_ERRORS)
        self.originals: dict[str, str] = {}
        self.seen: set[str] = set()
        self.pending = 0

    def feed(self, event: ErrorEvent) -> None:
        if event.id in self.seen:
            return  # the same record twice (e.g. a rotated copy): the runtime would dedupe
        self.seen.add(event.id)
        shadow = self.box.redirect(event, self.mode, self.repo)
        self.originals[shadow.id] = str(event.tags.get("replay_of") or event.id)
        self.client.xadd(self.stream, {"event": shadow.encode()})
        self.pending += 1
        if self.pending >= BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        self.pending = 0
        self.drain(self.box.settings, self.client, stages=list(SHADOW_STAGES),
                   ctx_resources=self.resources)
        print(f"heal shadow: {len(self.originals)} event(s) through the pipeline",
              file=self.out, flush=True)


def render(report: ShadowReport) -> str:
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.0%}"

    tiers = ", ".join(f"tier {t}: {n}" for t, n in sorted(report.by_tier.items())) or "none"
    lines = [
        f"heal shadow (mode {report.mode}; nothing was applied)",
        f"  errors            {report.errors}",
        f"  matched           {report.matched} ({tiers})",
        f"  unmatched         {report.unmatched}",
        f"  would auto-apply  {report.would_apply}",
        f"  suggestions       {report.suggestions}",
        f"  escalations       {report.escalations}",
        f"  rejected          {report.rejected}",
    ]
    if report.observed:
        lines.append(f"  observed only     {report.observed}")
    if report.duplicates:
        lines.append(f"  repeats           {report.duplicates} (same fingerprint, fix and commit "
                     "as an earlier error: decided once)")
    if report.no_verdict:
        lines.append(f"  no verdict        {report.no_verdict} (dead-lettered or not reached)")
    lines += [
        f"  auto-fix rate     {pct(report.auto_fix_rate)} (would auto-apply / errors"
        f"{' - repeats' if report.duplicates else ''})",
        f"  precision         {pct(report.precision)} (verification passed / verified, among "
        f"{report.eligible_verified} fix(es) "
        f"{'suggested' if report.mode == 'suggest' else report.mode + ' would apply by itself'})",
    ]
    if report.not_reproducible:
        lines.append(f"  not reproducible  {report.not_reproducible} (left out of precision)")
    lines += [f"  note: {n}" for n in report.notes]
    return "\n".join(lines + _row_lines(report.rows))


def _row_lines(rows: list[Row], limit: int = ROWS_SHOWN) -> list[str]:
    """The decisions that involve a fix (apply, suggest, reject), grouped, most useful first."""
    order = {"apply": 0, "suggest": 1, "reject": 2}
    groups: dict[tuple[str, str, str, str, str], list[Row]] = {}
    for r in rows:
        if r.decision in order:
            groups.setdefault((r.decision, r.fix_id, r.category, r.tier, r.verified), []).append(r)
    if not groups:
        return []
    keys = sorted(groups, key=lambda k: (order[k[0]], -len(groups[k]), k))
    out = ["", "  decision  fix (category, tier, verification)  errors"]
    for decision, fix_id, category, tier, verified in keys[:limit]:
        members = groups[(decision, fix_id, category, tier, verified)]
        more = f" (+{len(members) - 1} more)" if len(members) > 1 else ""
        out.append(f"  {decision:<8}  {fix_id} ({category or '?'}, tier {tier or '-'}, "
                   f"{verified})  {members[0].original_id}{more}")
    if len(keys) > limit:
        out.append(f"  ... {len(keys) - limit} more group(s) (--json lists every error)")
    return out
