"""``heal issues list`` / ``heal issues review``: the unmatched errors the lookup stage
accumulated in the issue queue.

``review`` asks about one group at a time on a terminal how it was resolved (c = a command,
m = a commit, p = a playbook, e = escalate with a message: each taught like ``heal learn``;
y = a DRAFT placeholder pattern with an escalate fix, n = ignore the fingerprint, s = skip,
q = quit). Batch operations select groups
with ``--all-older-than AGE`` and/or ``--tag KEY=VALUE`` and act with ``--ignore`` or
``--yes`` (create patterns); without a terminal on standard input only batches run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from pipeline.config import Settings
from pipeline.console import clip, dump_json, print_table
from pipeline.errors import UsageError
from pipeline.headline import headline


def register(sub: Any) -> None:
    parser = sub.add_parser("issues", help="unmatched errors waiting for review")
    verbs = parser.add_subparsers(dest="issues_verb", metavar="VERB")
    ls = verbs.add_parser("list", help="the open groups, most frequent first")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.add_argument("--limit", type=int, default=50,
                    help="at most N groups (with --by-fingerprint: fingerprints; default 50)")
    ls.add_argument("--by-fingerprint", action="store_true",
                    help="one row per fine fingerprint instead of one per mined template")
    ls.set_defaults(func=run_list)
    rv = verbs.add_parser("review", help="decide about each group (y/n/s/q) or in batches")
    rv.add_argument("--all-older-than", metavar="AGE",
                    help="only groups last seen longer ago than AGE (30m, 24h, 7d, 2w)")
    rv.add_argument("--tag", metavar="KEY=VALUE",
                    help="only groups with an error carrying this tag (still in the stream)")
    act = rv.add_mutually_exclusive_group()
    act.add_argument("--ignore", action="store_true", help="ignore every selected group")
    act.add_argument("--yes", action="store_true",
                     help="create a DRAFT pattern for every selected group")
    rv.add_argument("--limit", type=int, default=500, help="at most N groups (default 500)")
    rv.add_argument("--repo", default=".", help="the repository a commit answer names")
    rv.add_argument("--json", action="store_true", help="print the result as JSON")
    rv.set_defaults(func=run_review)
    parser.set_defaults(func=lambda _args: _usage())


def _usage() -> int:
    raise UsageError("heal issues: say what to do: heal issues list | heal issues review")


def _limit(value: int) -> int:
    if value < 1:
        raise UsageError(f"--limit {value}: must be a positive number")
    return value


def run_list(args: argparse.Namespace) -> int:
    """The open groups, largest first, at most ``--limit`` of them (``--by-fingerprint``: of
    the fingerprints). The groups are mined over the :data:`MAX_MINED` most frequent open
    fingerprints, never over a page of them (a page cut inside a group undercounted it, with
    nothing said); what is left out either way is said under the table and in the JSON."""
    from pipeline.operator.groups import MAX_MINED, by_template
    from storage.engines import open_database
    from storage.reports import ReportStore

    limit = _limit(args.limit)
    by_fingerprint = getattr(args, "by_fingerprint", False)
    db = open_database(Settings.from_env())
    try:
        store = ReportStore(db)
        issues = store.open_issues(limit if by_fingerprint else MAX_MINED)
        total = store.open_issue_count()
    finally:
        db.close()
    if by_fingerprint:  # each row told apart by what its fingerprint is made of
        issues = [{**i, "label": _label(str(i.get("sample", "")), str(i.get("ended") or ""))}
                  for i in issues]
    groups = [] if by_fingerprint else by_template(issues)
    shown = groups[:limit]
    if not by_fingerprint:  # the fingerprints of the groups shown (the shape of /api/issues)
        fines = {f for g in shown for f in g["fines"]}
        issues = [i for i in issues if i["fine"] in fines]
    left = _left_out(by_fingerprint, total, len(issues), len(groups), len(shown), limit)
    if args.json:  # the shape of GET /api/issues, plus the groups by mined template
        dump_json({"issues": issues, "groups": shown, "fingerprints_open": total,
                   "groups_found": len(groups), "complete": not left})
        return 0
    if not issues:
        print("no unmatched errors waiting for review")
        return 0
    if by_fingerprint:
        rows = []
        for i in issues:
            rows.append([i["count"], str(i["last_seen"])[:19], i["fine"], clip(i["label"], 70)])
        print_table(["count", "last seen", "fingerprint", "headline"], rows, right=(0,))
    else:
        _print_groups(shown)
    for line in left:
        print(line)
    return 0


def _left_out(by_fingerprint: bool, total: int, read: int, found: int, shown: int,
              limit: int) -> list[str]:
    """What the listing does not show, said so it is never read as the whole queue."""
    from pipeline.operator.groups import MAX_MINED

    if by_fingerprint:
        if total > read:
            return [f"{read} of {total} open fingerprints shown (the most frequent); "
                    f"heal issues list --by-fingerprint --limit {total} lists them all"]
        return []
    lines = []
    if found > shown:
        lines.append(f"{shown} of {found} groups shown (the largest); heal issues list "
                     f"--limit {found} lists them all")
    if total > MAX_MINED:
        lines.append(f"grouped the {MAX_MINED} most frequent of {total} open fingerprints; "
                     "the rarest are in no group's count (heal issues list --by-fingerprint "
                     f"--limit {total} lists every one)")
    return lines


def _print_groups(groups: list[dict[str, Any]]) -> None:
    """The open issues merged by mined template (``pipeline.operator.groups``)."""
    # one fingerprint: its normalized headline and frame; several: the template they share
    # (never the sample's raw last line: 'exit status 2' or a colour code names no group)
    rows = [[g["count"], len(g["fines"]), str(g["last_seen"])[:19], clip(g["label"], 90)]
            for g in groups]
    print_table(["count", "fps", "last seen", "template or headline"], rows, right=(0, 1))


def _label(sample: str, ended: str = "") -> str:
    """The label of a fingerprint row: :func:`pipeline.operator.groups.label` of its sample
    keyed as the stage keyed it (``ended``: how its command ended), else the sample's own
    clean last line when the fingerprint reads no headline from it."""
    from pipeline.fingerprint import fingerprint_text
    from pipeline.fingerprint.status import ended_parts
    from pipeline.operator.groups import clean_line, label

    if not sample.strip():
        return ""
    exit_code, signal, program = ended_parts(ended)
    return (label(fingerprint_text(sample, exit_code=exit_code, signal=signal,
                                   command=program.split()))
            or clean_line(headline(sample, 1)))


def _select(args: argparse.Namespace, settings: Settings, reports: Any) -> list[dict[str, Any]]:
    from pipeline.operator.issues import parse_age, parse_tag, tags_by_fine

    older = None
    if args.all_older_than:
        older = dt.datetime.now(dt.UTC) - parse_age(args.all_older_than)
    issues: list[dict[str, Any]] = reports.open_issues(_limit(args.limit), older)
    if args.tag:
        from storage.engines import connect_redis

        key, value = parse_tag(args.tag)
        tags = tags_by_fine(connect_redis(settings), settings, [i["fine"] for i in issues])
        issues = [i for i in issues
                  if any(str(t.get(key)) == value for t in tags.get(i["fine"], []))]
    return issues


def _check_terminal(args: argparse.Namespace) -> bool:
    """True for an interactive review; raises UsageError when one cannot happen."""
    batch = args.ignore or args.yes
    if batch:
        return False
    if not sys.stdin.isatty():
        raise UsageError("heal issues review: standard input is not a terminal, so nobody can "
                         "answer; run it in a terminal, or act in a batch with --ignore or "
                         "--yes (select with --all-older-than AGE / --tag KEY=VALUE)")
    return True


def _ask(prompt: str) -> str | None:
    try:
        return input(prompt)
    except EOFError:
        return None


def _teacher(settings: Settings, db: Any, audit: Any, repo: str) -> Any:
    from pipeline.cli.learn import _root
    from pipeline.learn.review import review_teacher
    from pipeline.learn.teach import Teacher
    from storage.cache import LocalCache

    return review_teacher(Teacher(db, audit, LocalCache.at_home(settings.home)), _root(repo))


def run_review(args: argparse.Namespace) -> int:
    from pipeline.guardrails.audit import AuditLog
    from pipeline.operator.issues import Reviewer, ReviewResult
    from storage.engines import open_database
    from storage.lifecycle import LifecycleStore
    from storage.reports import ReportStore

    interactive = _check_terminal(args)
    settings = Settings.from_env()
    db = open_database(settings)
    try:
        reports = ReportStore(db)
        issues = _select(args, settings, reports)
        audit = AuditLog(settings, db=db)
        reviewer = Reviewer(reports, LifecycleStore(db), audit,
                            _teacher(settings, db, audit, args.repo) if interactive else None)
        if not issues:
            if args.json:  # still one JSON object: nothing created, ignored or skipped
                dump_json(ReviewResult().as_dict())
            else:
                print("no unmatched errors to review")
            return 0
        if interactive:
            result = reviewer.interactive(issues, _ask, print)
        else:
            result = reviewer.batch(issues, "ignore" if args.ignore else "pattern")
    finally:
        db.close()
    if args.json:
        dump_json(result.as_dict())
    else:
        taught = f", taught {len(result.taught)} fix(es)" if result.taught else ""
        print(f"created {len(result.created)} pattern(s){taught}, ignored "
              f"{len(result.ignored)}, skipped {len(result.skipped)}"
              f"{' (quit)' if result.quit else ''}")
    if result.refused and not interactive:  # the interactive review said it at the 'y'
        for reason in result.refused:
            print(f"heal: {reason}", file=sys.stderr)
    return 1 if result.refused else 0
