"""The security tests use the integration tests' fixtures (real engines; a migrated database)."""

from tests.integration.conftest import attempt_store, client, db, stage_settings  # noqa: F401
