"""``heal learn ERROR_ID|FINGERPRINT|--last (--command 'ARGV' | --commit SHA | --playbook FILE |
--escalate MSG) [--category C] [--name N] [--regex R]``: teach a fix for an error.

It creates a DRAFT pattern and fix in PostgreSQL with provenance and prints their ids and the
detection rule (editable with ``--regex``). The fix is verified before it is ever offered and
graduates only through the lifecycle. Bad input (an unknown error, a commit touching nothing
or leaving the repository, an argv with shell syntax or with an argument leaving the
repository, an option taking one value given twice) exits 2 with what to change.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from pipeline.cliargs import Once
from pipeline.config import Settings
from pipeline.console import dump_json, visible
from pipeline.errors import GitError, UsageError


def register(sub: Any) -> None:
    p = sub.add_parser("learn", help="teach a fix for an error (a DRAFT pattern and fix)")
    p.add_argument("error", nargs="?", metavar="ERROR_ID|FINGERPRINT",
                   help="the error (its id, or a fingerprint of its group)")
    p.add_argument("--last", action="store_true",
                   help="the most recent unmatched or escalated error of this repository")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--command", metavar="'ARGV'", action=Once,
                     hint="a lesson teaches one command; for several steps, put them in a "
                          "--playbook FILE (or a script in the repository)",
                     help="a command that fixes it (no shell)")
    how.add_argument("--commit", metavar="SHA", action=Once,
                     hint="a lesson teaches one commit; teach each with its own heal learn",
                     help="the commit whose diff fixed it")
    how.add_argument("--playbook", metavar="FILE", action=Once,
                     help="steps in the seeds' playbook YAML")
    how.add_argument("--escalate", metavar="MSG", action=Once,
                     help="no mechanical fix: tell a human this")
    how.add_argument("--transcript", metavar="FILE", action=Once,
                     help="learn DRAFT diff precedents from an agent transcript (fail, "
                          "edits, the same command passing)")
    how.add_argument("--history", action="store_true",
                     help="propose DRAFT fixes from commits naming the failure they fixed "
                          "(Heal-Fingerprint: / Fixes-Step: trailers) and from recorded "
                          "precedents; listed before anything is stored")
    p.add_argument("--since", default=None, metavar="DATE", action=Once,
                   help="with --history: from DATE")
    p.add_argument("--dry-run", action="store_true", help="with --history: only list them")
    p.add_argument("--category", default=None, metavar="C", action=Once,
                   help="SAFE, MODERATE (default for a new fix; a fix taught again keeps its "
                        "own unless given) or RISKY; SAFE needs --yes and --reason")
    p.add_argument("--name", default="", action=Once, help="a name for the pattern")
    p.add_argument("--regex", default=None, action=Once,
                   hint="a taught pattern has one derived or given rule",
                   help="the detection rule instead of the derived one (bounded-time shape)")
    p.add_argument("--reason", default="", action=Once,
                   help="why (recorded; required for SAFE)")
    p.add_argument("--yes", action="store_true", help="confirm a SAFE category")
    p.add_argument("--repo", default=".", action=Once,
                   help="the repository (default: the current one)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def fix_of(args: argparse.Namespace, root: Path | None) -> Any:
    from pipeline.learn import fixes

    if args.command is not None:
        draft = fixes.command_fix(args.command)
        fixes.check_stays_inside(draft, root, f"--command {shlex.join(draft.template['argv'])}")
        return draft
    if args.commit is not None:
        if root is None:
            raise UsageError("--commit: run heal learn inside the repository (or --repo PATH)")
        return fixes.commit_fix(root, args.commit)
    if args.playbook is not None:
        draft = fixes.playbook_fix(args.playbook)
        fixes.check_stays_inside(draft, root, f"--playbook {args.playbook}")
        return draft
    if args.escalate is not None:
        return fixes.escalate_fix(args.escalate)
    raise UsageError("heal learn: say how it was fixed: --command 'ARGV', --commit SHA, "
                     "--playbook FILE or --escalate 'MESSAGE'")


def _root(repo: str) -> Path | None:
    """The git root holding ``repo``, or None outside a repository."""
    from pipeline.gitops import find_root

    try:
        return find_root(repo)
    except GitError:
        return None


def run(args: argparse.Namespace) -> int:
    from pipeline.guardrails.audit import AuditLog
    from pipeline.learn.source import find, find_last
    from pipeline.learn.teach import Lesson, Teacher
    from storage.cache import LocalCache
    from storage.engines import connect_redis, open_database

    if args.transcript is not None:
        return learn_transcript(args)
    if args.history:
        return learn_history(args)
    if bool(args.last) == bool(args.error):
        raise UsageError("heal learn: name one error: ERROR_ID, FINGERPRINT or --last")
    if args.error:  # fp-... must be a fingerprint (or a prefix of one): a typo exits 2
        from pipeline.cli.fpargs import read

        args.error = read(args.error, "heal learn", or_id=True) or args.error
    root = _root(args.repo)
    draft = fix_of(args, root)  # checked before any engine is touched
    from pipeline.guardrails.actor import who_am_i

    who = who_am_i()  # a HEAL_USER unfit to record exits 2 here, before anything is written
    settings = Settings.from_env()
    client = connect_redis(settings)
    db = open_database(settings)
    try:
        if args.last:
            if root is None:
                raise UsageError(f"heal learn --last: {args.repo} is not inside a git "
                                 "repository; run it in the repository or name the error")
            error = find_last(client, settings, root)
        else:
            error = find(client, settings, db, args.error)
        lesson = Lesson(error, draft, category=args.category or "MODERATE", name=args.name,
                        regex=args.regex, reason=args.reason, confirmed=args.yes,
                        category_given=args.category is not None, who=who)
        teacher = Teacher(db, AuditLog(settings, db=db), LocalCache.at_home(settings.home))
        taught = teacher.teach(lesson)
    finally:
        db.close()
    if args.json:
        dump_json(taught.as_dict())
        return 0
    print_taught(taught, error.text)
    return 0


def print_taught(taught: Any, text: str) -> None:
    p = taught.provenance
    verb = "learned" if taught.new_fix else "already knew"
    print(f"{verb} {taught.pattern_state} pattern {taught.pattern_id}")
    print(f"  fix        {taught.fix_id} ({taught.kind}, {taught.category}, {taught.state})")
    print(f"  from       error {p['error_id']} ({p['error_was']}), taught by "
          f"{visible(str(p['who']))} at {p['when']}")
    print(f"  detection  fine fingerprint {', '.join(taught.fingerprints)}")
    if taught.regex:
        print(f"             rule {taught.regex}")
        print(f"  edit it    heal learn {shlex.quote(p['error_id'])} ... --regex 'REGEX'")
    for note in taught.notes:
        print(f"  note       {note}")
    print("  in effect  now, for new runs and running workers (PostgreSQL tells them at once; a "
          "worker that cannot hear it re-reads lessons within 30 s)")
    print("  next       verified before it is offered; starts DRAFT and graduates only through "
          "verified successes (heal explain shows its lifecycle)")


def learn_transcript(args: argparse.Namespace) -> int:
    """``heal learn --transcript FILE``: every fail -> edits -> pass sequence it holds."""
    from pipeline.guardrails.audit import AuditLog
    from pipeline.learn.teach import Teacher
    from producers.transcript_learning import TranscriptLearner, teach_precedent
    from storage.engines import open_database

    if args.last or args.error:
        raise UsageError("heal learn --transcript FILE learns from the transcript itself; "
                         "name no error")
    learner = TranscriptLearner(args.transcript)
    try:
        with open(args.transcript, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                learner.feed(line)
    except OSError as exc:
        raise UsageError(f"--transcript {args.transcript}: {exc.strerror or exc}") from exc
    # --json: one object, {"transcript": FILE, "learned": [...], "skipped": [...]}
    result: dict[str, Any] = {"transcript": args.transcript, "learned": [], "skipped": []}
    if not learner.done:
        if args.json:
            dump_json(result)
        else:
            print(f"no failing command that passed after edits in {visible(args.transcript)}")
        return 0
    settings = Settings.from_env()
    root = _root(args.repo) if args.repo != "." else None
    db = open_database(settings)
    results = []
    try:
        teacher = Teacher(db, AuditLog(settings, db=db))
        for precedent in learner.done:
            taught, attempt = teach_precedent(teacher, precedent, root, args.transcript)
            results.append((precedent, taught, attempt))
    finally:
        db.close()
    for precedent, taught, attempt in results:
        if taught is None:
            result["skipped"].append({"command": precedent.command, "why": attempt.skipped})
        else:
            result["learned"].append({"command": precedent.command,
                                      "pattern_id": taught.pattern_id,
                                      "fix_id": taught.fix_id, "files": attempt.files})
    if args.json:
        dump_json(result)
        return 0
    for precedent, taught, attempt in results:  # (the agent's command is untrusted text)
        if taught is None:
            print(f"skipped `{visible(precedent.command[:80])}`: {visible(attempt.skipped)}")
        else:
            print(f"learned DRAFT precedent {taught.fix_id} (diff, RISKY) for "
                  f"`{visible(precedent.command[:80])}`: {len(attempt.files)} file(s); "
                  "verified before it is offered")
    return 0


def learn_history(args: argparse.Namespace) -> int:
    """``heal learn --history [--since DATE] [--dry-run]``: list the proposals, then (unless
    --dry-run) teach each as a DRAFT RISKY diff fix."""
    from pipeline.guardrails.audit import AuditLog
    from pipeline.learn.history import check_since, lesson_parts, proposals
    from pipeline.learn.teach import Lesson, Teacher
    from storage.engines import open_database

    if args.last or args.error:
        raise UsageError("heal learn --history walks the history itself; name no error")
    root = _root(args.repo)
    if root is None:
        raise UsageError(f"heal learn --history: {args.repo} is not inside a git repository")
    check_since(args.since)  # before any engine is touched
    settings = Settings.from_env()
    # --json: one object, {"proposals": [...], "taught": [...], "skipped": [...]}
    result: dict[str, list[dict[str, str]]] = {"proposals": [], "taught": [], "skipped": []}
    say = (lambda _line: None) if args.json else print
    db = open_database(settings)
    try:
        found = proposals(db, root, args.since)
        result["proposals"] = [p.as_dict() for p in found]
        say(f"{len(found)} proposal(s) from the history of {root}:")
        for p in found:
            say(f"  {p.source:<9} {p.ref[:12]}  {visible(p.fine)}  {visible(p.why)}")
            say(f"            {visible(p.as_dict()['headline'])}")
        if not args.dry_run and found:
            from pipeline.guardrails.actor import who_am_i

            who = who_am_i()  # a HEAL_USER unfit to record exits 2 before any is taught
            teacher = Teacher(db, AuditLog(settings, db=db))
            for p in found:
                try:
                    error, draft = lesson_parts(p, root)
                    taught = teacher.teach(Lesson(error, draft, category="RISKY",
                                                  source="heal learn --history", who=who))
                except UsageError as exc:
                    result["skipped"].append({"ref": p.ref, "why": str(exc)})
                    say(f"skipped {p.ref[:12]}: {exc}")
                    continue
                result["taught"].append({"ref": p.ref, "source": p.source,
                                         "pattern_id": taught.pattern_id,
                                         "fix_id": taught.fix_id})
                say(f"learned DRAFT pattern {taught.pattern_id} with fix {taught.fix_id} "
                    f"(diff, RISKY) from {p.source} {p.ref[:12]}")
    finally:
        db.close()
    if args.json:
        dump_json(result)
    return 0
