"""``heal branches [--repo PATH] [--json]`` and ``heal branches prune [--dry-run]``: heal's own
``heal/`` branches of a repository, which the ``[branches]`` retention would remove (and
why), which heal never removes (and why); ``prune`` removes the first kind now
(:mod:`pipeline.branches`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from pipeline.console import dump_json, visible
from pipeline.errors import GitError, UsageError


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "branches", help="heal's heal/ branches of a repository; prune them by its retention")
    _options(parser)
    parser.set_defaults(func=run_list)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    prune = verbs.add_parser("prune", help="remove the heal branches the retention lets go "
                             "(merged, too old, beyond the newest [branches] keep)")
    _options(prune)
    prune.add_argument("--dry-run", action="store_true", help="say what would go; remove nothing")
    prune.set_defaults(func=run_prune)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", default=argparse.SUPPRESS, metavar="PATH",
                        help="a path inside the repository (default: the current directory)")
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output")


def _repo(args: argparse.Namespace) -> tuple[Any, Any]:
    from pipeline.branches import retention_for
    from pipeline.config import Settings
    from pipeline.gitops import GitRepo

    path = getattr(args, "repo", ".")
    if not Path(path).exists():
        raise UsageError(f"--repo {path}: no such path")
    try:
        repo = GitRepo(path)
    except GitError as exc:
        raise UsageError(f"--repo {path}: {exc}; give a path inside a git repository") from exc
    return repo, retention_for(Settings.from_env(), repo.root)


def run_list(args: argparse.Namespace) -> int:
    from pipeline.branches import list_branches, plan

    repo, retention = _repo(args)
    branches = list_branches(repo)
    now = time.time()
    going = {b.name: why for b, why in plan(branches, retention, now)}
    rows = [{"branch": b.name, "commit": b.commit, "age_days": round(b.age_days(now), 2),
             "merged": b.merged, "prune": going.get(b.name, ""), "kept_because": b.kept_because}
            for b in branches]
    if getattr(args, "json", False):
        dump_json({"repo": str(repo.root), "keep": retention.keep,
                   "max_age_days": retention.max_age_days, "branches": rows})
        return 0
    print(f"{len(rows)} heal branch(es) in {visible(str(repo.root))}; retention: the newest "
          f"{retention.keep}, none older than {retention.max_age_days:g} days "
          "([branches] in heal.toml)")
    for row in rows:
        state = (f"would be pruned: {row['prune']}" if row["prune"]
                 else f"never pruned: {row['kept_because']}" if row["kept_because"]
                 else "kept" + (" (merged)" if row["merged"] else ""))
        print(f"  {visible(str(row['branch']))}  {str(row['commit'])[:10]}  "
              f"{row['age_days']:.1f}d  {state}")
    if going:
        print(f"run `heal branches prune` to remove the {len(going)} marked")
    return 0


def run_prune(args: argparse.Namespace) -> int:
    from pipeline.branches import prune

    repo, retention = _repo(args)
    dry = bool(args.dry_run)
    done = prune(repo, retention, dry_run=dry)
    if getattr(args, "json", False):
        dump_json({"repo": str(repo.root), "dry_run": dry,
                   "pruned": [{"branch": b.name, "commit": b.commit, "why": why}
                              for b, why in done]})
        return 0
    verb = "would remove" if dry else "removed"
    for b, why in done:
        print(f"{verb} {visible(b.name)} ({b.commit[:10]}): {why}")
    print(f"{verb} {len(done)} heal branch(es) in {visible(str(repo.root))}")
    return 0
