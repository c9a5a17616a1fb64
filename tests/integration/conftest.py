"""Fixtures shared by the integration tests (the engines themselves are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis

from pipeline.apply.applier import Applier
from pipeline.config import Settings
from pipeline.stage import StageContext
from pipeline.validate.validator import Validator
from storage.attempts import AttemptStore
from storage.db import Database
from storage.migrate import migrate
from tests.integration._guardrails_support import Clock
from tests.integration._stores import close_stores

if TYPE_CHECKING:
    from consumers.lifecycle import LifecycleHandler


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the session's real Redis (tests isolate themselves with ``prefix``)."""
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, prefix: str) -> Settings:
    """Settings on the session's real Redis, no PostgreSQL, the test's own home and prefix
    (a module that needs other settings defines its own ``settings``)."""
    return Settings(redis_url=redis_url, database_url=None, home=tmp_path, prefix=prefix)


@pytest.fixture
def clock() -> Clock:
    """A settable clock for the guardrails' time windows."""
    return Clock()


@pytest.fixture
def stage_settings(tmp_path: Path, prefix: str) -> Settings:
    """Settings for driving the validate/apply stages directly with the fixtures' clients."""
    return Settings(redis_url=None, database_url=None, home=tmp_path / "home", prefix=prefix)


@pytest.fixture(scope="module")
def db(database_url: str) -> Iterator[Database]:
    """A migrated Database on the session's PostgreSQL (a module may define its own)."""
    database = Database(database_url)
    migrate(database)
    yield database
    database.close()


@pytest.fixture(scope="module")
def attempt_store(db: Database) -> AttemptStore:
    return AttemptStore(db)


@pytest.fixture
def validator(stage_settings: Settings, client: redis.Redis,
              attempt_store: AttemptStore) -> Validator:
    return Validator(stage_settings, client, attempt_store)


@pytest.fixture
def applier(stage_settings: Settings, client: redis.Redis,
            attempt_store: AttemptStore) -> Applier:
    return Applier(stage_settings, client, attempt_store)


@pytest.fixture(autouse=True)
def _close_stores() -> Iterator[None]:
    """Close the store pools `heal run` (or a stage) opened in this process, before the
    session's engines stop."""
    yield
    close_stores()


@pytest.fixture
def lifecycle_stage(db: Database, client: redis.Redis
                    ) -> Iterator[Callable[[Settings], LifecycleHandler]]:
    """Build the lifecycle stage (``consumers.lifecycle.build``) on the test's settings, the
    module's database and the session's Redis; every stage built is finished at the end of
    the test, which stops the sweep timer ``build`` started."""
    import consumers.lifecycle

    built: list[LifecycleHandler] = []

    def build(settings: Settings) -> LifecycleHandler:
        handler = consumers.lifecycle.build(
            StageContext(settings, "lifecycle", resources={"db": db, "redis": client}))
        built.append(handler)
        return handler

    yield build
    for handler in built:
        handler.finish()
