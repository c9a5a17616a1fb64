"""``heal demo``: a sample repository with real breakages goes through the whole pipeline."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from pipeline.config import Settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="heal a sample repository with real breakages and print a report",
        description=(
            "Create a sample git repository with real breakages (formatting, an unused import, "
            "a missing exec bit, a stale index.lock, a fix that does not survive verification, "
            "a real failing assertion), run each failure through the pipeline on the "
            "configured engines (embedded by default) and print what was detected, fixed, "
            "verified, rolled back and escalated; then show the guardrails: two reverts in "
            "one step trip the breaker, the next fix is refused, and every state change is "
            "notified with its reason. Exits 0 when every result is as expected."
        ),
    )
    parser.add_argument("--dir", type=_folder, default=None,
                        help="where to create the sample repository (default: a temp dir)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the sample repository (always kept with --dir)")
    parser.add_argument("--json", action="store_true",
                        help="print the report as one JSON object (progress goes to stderr)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pipeline.demo.guardrails import run_scene
    from pipeline.demo.isolation import isolated
    from pipeline.demo.report import (
        all_as_expected,
        as_dict,
        render,
        render_scene,
        scene_as_expected,
        scene_dict,
    )
    from pipeline.demo.runner import Demo
    from pipeline.runtime import drain_inline
    from pipeline.runtime.connection import glob_escape
    from pipeline.validate.rqjobs import remove_queue
    from storage.engines import connect_redis, open_database

    started = time.monotonic()
    _check_dir(args.dir)
    base = Settings.from_env()
    say = _say(args.json)
    say("heal demo: starting the engines (embedded unless HEAL_REDIS_URL/HEAL_DATABASE_URL)")
    os.environ.setdefault("TQDM_DISABLE", "1")  # model-loading progress bars hide the story
    # a fresh prefix, database and state home: nothing the demo does mixes with real work
    with isolated(base, f"{base.prefix}-demo-{uuid.uuid4().hex[:6]}") as iso:
        settings = iso.settings
        say(f"heal demo: {iso.note}; streams under {settings.prefix}:*")
        if iso.webhook_withheld:
            say("heal demo: HEAL_WEBHOOK_URL is set; the demo sends it nothing")
        client = connect_redis(settings)
        db = open_database(settings)
        resources: dict[str, Any] = {"db": db}

        def drain() -> int:
            return drain_inline(settings, client, ctx_resources=resources)

        demo = Demo(settings, client, resources, drain, log=say)  # stderr under --json
        where = args.dir.resolve() if args.dir is not None else Path(
            tempfile.mkdtemp(prefix="heal-demo-"))
        keep = args.keep or args.dir is not None
        try:
            rows = demo.run(where / "shop")
            scene = run_scene(demo, where / "shop-guardrails")
        finally:
            if not keep:
                shutil.rmtree(where, ignore_errors=True)
            db.close()
            for key in client.scan_iter(match=f"{glob_escape(settings.prefix)}:*", count=500):
                client.delete(key)  # the demo's streams and keys: nothing left behind
            # and RQ's bookkeeping of its verification queue (rq:queues, registries), which
            # RQ keeps outside the prefix and partly for ever
            remove_queue(client, settings.key("verify"))
    scene.webhook_withheld = iso.webhook_withheld
    if args.json:
        from pipeline.console import dump_json

        report = as_dict(rows, time.monotonic() - started)
        report["guardrails"] = scene_dict(scene)
        dump_json(report)
        return 0 if all_as_expected(rows) and scene_as_expected(scene) else 1
    print(render(rows, time.monotonic() - started))
    print(render_scene(scene))
    if not keep:
        print("(the sample repositories were removed; --keep or --dir DIR keeps them)")
    return 0 if all_as_expected(rows) and scene_as_expected(scene) else 1


def _folder(text: str) -> Path:
    """``--dir``'s value: a folder's path, never empty (``Path("")`` is the current folder:
    ``--dir ''``, an unset variable in a script, would have built the demo there)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "empty; give a folder for the sample repositories (made if missing), e.g. "
            "--dir /tmp/heal-demo, or leave --dir out for a temporary one")
    return Path(text)


#: what the demo creates in --dir (its sample repositories)
_MADE = ("shop", "shop-guardrails")


def _check_dir(where: Path | None) -> None:
    """``--dir`` must be a folder (made here if missing) heal may write, not already holding a
    demo's repositories.

    Raises:
        UsageError: it is a file, holds ``shop``/``shop-guardrails`` (an earlier demo's),
            cannot be made or is not writable."""
    from pipeline.errors import UsageError

    if where is None:
        return
    if where.exists() and not where.is_dir():
        raise UsageError(f"--dir {where}: not a folder; give a folder (made if missing)")
    taken = [name for name in _MADE if (where / name).exists()]
    if taken:
        raise UsageError(f"--dir {where}: already holds {', '.join(taken)} (an earlier demo's "
                         "sample repositories); choose another folder or remove them")
    # made (or found writable) now, before any engine starts: a folder that cannot be made
    # (/proc/x, under a file, no permission) was an internal error once the demo ran
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--dir {where}: cannot create it ({exc.strerror or exc}); give a "
                         "folder you may write (made if missing)") from exc
    if not os.access(where, os.W_OK | os.X_OK):
        raise UsageError(f"--dir {where}: not writable; give a folder you may write "
                         "(made if missing)")


def _say(to_stderr: bool) -> Any:
    """Progress lines: stdout normally, stderr when stdout carries the JSON report."""
    import sys

    def say(message: str) -> None:
        print(message, file=sys.stderr if to_stderr else sys.stdout, flush=True)

    return say
