"""``heal keys show|rotate|retire``: the operator's signing key (pipeline.trust.keys).

``rotate`` makes a new key and keeps the old one accepted, so events sealed or attested just
before stay valid while in flight; ``retire`` forgets the old key once the streams drained.
"""

from __future__ import annotations

import argparse
from typing import Any

from pipeline.config import Settings
from pipeline.console import dump_json
from pipeline.errors import HealError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "keys", help="the signing key that seals stage events and heal run's attestations",
        description="show: where the key comes from and its id; rotate: new current key, the "
                    "old one still accepted (no downtime); retire: stop accepting the old key.")
    parser.add_argument("action", choices=("show", "rotate", "retire"),
                        help="show, rotate or retire (see above)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pipeline.trust.keys import ENV_PREVIOUS, key_id, load_keys, retire_previous, rotate

    settings = Settings.from_env()
    retired: str | None = None
    dropped: str | None = None
    if args.action == "rotate":
        before = load_keys(settings).previous
        dropped = None if before is None else key_id(before)
        keys = rotate(settings)
    elif args.action == "retire":
        previous_key = load_keys(settings).previous
        retired = None if previous_key is None else key_id(previous_key)
        if not retire_previous(settings) and retired is not None:
            raise HealError(f"the previous key {retired} comes from ${ENV_PREVIOUS}: unset it "
                            "in every heal process's environment to retire it")
        keys = load_keys(settings)
    else:
        keys = load_keys(settings)
    current = key_id(keys.current)
    previous = None if keys.previous is None else key_id(keys.previous)
    info = {"source": keys.source, "current": current, "previous": previous}
    if args.action == "retire":
        info["retired"] = retired
    if args.action == "rotate":
        info["dropped"] = dropped
    if args.json:
        dump_json(info)  # (the JSON convention: one sorted line off a terminal)
        return 0
    if dropped:
        print(f"key {dropped} (kept by the previous rotation) is no longer accepted: what it "
              "sealed or attested and is still in flight is refused; next time run heal keys "
              "retire once the streams drained, before rotating again")
    if args.action == "retire":
        print(f"retired the previous key {retired}: what it sealed is no longer accepted"
              if retired else "no previous key to retire")
    print(f"signing key from {keys.source}: id {current}"
          + (f"; previous key {previous} still accepted" if previous else ""))
    return 0

