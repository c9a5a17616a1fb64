"""The demo runs apart from real work, so what it teaches and records never leaks into the
installation and every run starts from the same seeds:

* its own PostgreSQL database on the configured server (dropped at the end); a server that
  refuses CREATE DATABASE stops the demo (it never writes its rows into the real database);
* its own stream prefix (chosen by the caller; its keys, and RQ's bookkeeping of its
  verification queue, are deleted at the end by ``heal demo``);
* its own state home, ``$HEAL_HOME/demo/<run>`` (removed at the end): its audit log, audit key,
  notifications, signing keys, lookup cache and worktrees are there, never in the real
  ``audit.jsonl`` (whose anchors it would break) or ``notifications.jsonl``;
* no webhook: ``HEAL_WEBHOOK_URL`` is withheld for the run (a demo breaker trip would page
  on-call); the report shows what it would have sent.

The demo's Redis is the installation's (the configured one, or the embedded one under the real
``HEAL_HOME``, named by its URL so nothing starts a second one in the scratch home).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from pipeline.config import Settings
from pipeline.errors import ConfigError, EngineError, HealError, QueryError

#: the folder of HEAL_HOME holding each running demo's state home
DEMO_DIR = "demo"
#: the variable whose webhook the demo never calls
WEBHOOK_ENV = "HEAL_WEBHOOK_URL"


@dataclass(frozen=True)
class Isolation:
    #: the demo's settings: its database, prefix and state home
    settings: Settings
    #: what the demo uses, for the progress line
    note: str
    #: HEAL_WEBHOOK_URL is set and was withheld from the demo
    webhook_withheld: bool


@contextmanager
def isolated(settings: Settings, prefix: str) -> Iterator[Isolation]:
    """The demo's settings for the ``with`` block; its database and state home are removed
    and HEAL_WEBHOOK_URL restored at the end.

    Raises:
        EngineError: no Redis or PostgreSQL is reachable, or the PostgreSQL server refused
            to create the demo's database (the message says which, and what to change).
        ConfigError: the PostgreSQL server refused HEAL_DATABASE_URL's login.
        StateHomeFull, ConfigError: the demo's state home cannot be made under HEAL_HOME
            (full, read-only or not writable).
    """
    from pipeline.homedir import home_writes, make_home
    from storage.engines import database_url, redis_url
    from storage.scratch import create_scratch_database

    run = uuid.uuid4().hex[:10]
    name = f"heal_demo_{run}"
    redis_at = redis_url(settings)  # the embedded one is started (and leased) here
    try:
        url, drop = create_scratch_database(database_url(settings), name)
    except HealError as exc:
        raise _no_database(exc) from exc
    home = settings.home / DEMO_DIR / run
    webhook = os.environ.pop(WEBHOOK_ENV, None)
    try:
        with home_writes(settings.home, "making the demo's state home", home):
            make_home(home)
        demo = dataclasses.replace(settings, redis_url=redis_at, database_url=url, home=home,
                                   home_source="HEAL_HOME", prefix=prefix)
        yield Isolation(demo, f"demo database {name} and state in {home} (both removed at "
                              "the end)", webhook_withheld=bool(webhook))
    finally:
        if webhook is not None:
            os.environ[WEBHOOK_ENV] = webhook
        drop()
        shutil.rmtree(home, ignore_errors=True)
        with suppress(OSError):
            (settings.home / DEMO_DIR).rmdir()  # only when no other demo runs


#: the way out whatever went wrong with the configured server
_EMBEDDED = "or run the demo on the embedded engines: HEAL_DATABASE_URL= heal demo"


def _no_database(exc: HealError) -> HealError:
    """What the demo says when the configured server gave it no database: the CREATEDB
    advice only when the server answered and refused the statement (it was given for a
    server never reached, where no privilege helps)."""
    if isinstance(exc, QueryError):
        return EngineError(
            f"heal demo needs a database of its own and the PostgreSQL server refused to "
            f"create one ({exc}); it never writes its rows into the configured database. "
            f"Give HEAL_DATABASE_URL's user the CREATEDB privilege, {_EMBEDDED}")
    if isinstance(exc, ConfigError):  # the server refused the login: the URL is wrong
        return ConfigError(f"heal demo cannot log in to the PostgreSQL server of "
                           f"HEAL_DATABASE_URL ({exc}); correct HEAL_DATABASE_URL, {_EMBEDDED}")
    return EngineError(
        f"heal demo cannot reach the PostgreSQL server of HEAL_DATABASE_URL ({exc}); start "
        f"that server or correct HEAL_DATABASE_URL (host, port or socket path), {_EMBEDDED}")
