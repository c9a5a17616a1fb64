"""``heal keys show|rotate|retire``: the operator's signing key (pipeline.trust.keys).

``rotate`` makes a new key and keeps the old one accepted, so events sealed or attested just
before stay valid while in flight; ``retire`` forgets the old key once the streams drained.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from pipeline.config import Settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "keys", help="the signing key that seals stage events and heal run's attestations",
        description="show: where the key comes from and its id; rotate: new current key, the "
                    "old one still accepted (no downtime); retire: stop accepting the old key.")
    parser.add_argument("action", choices=("show", "rotate", "retire"))
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pipeline.trust.keys import load_keys, retire_previous, rotate

    settings = Settings.from_env()
    if args.action == "rotate":
        keys = rotate(settings)
    elif args.action == "retire":
        retire_previous(settings)
        keys = load_keys(settings)
    else:
        keys = load_keys(settings)
    current = keys.sign("id", b"")[:8]
    previous = None
    if keys.previous is not None:
        from pipeline.trust.keys import KeySet

        previous = KeySet(keys.previous).sign("id", b"")[:8]
    info = {"source": keys.source, "current": current, "previous": previous}
    if args.json:
        print(json.dumps(info))
    else:
        print(f"signing key from {keys.source}: id {current}"
              + (f"; previous key {previous} still accepted" if previous else ""))
    return 0
