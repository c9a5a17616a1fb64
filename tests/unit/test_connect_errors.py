"""storage.connect_errors: a login PostgreSQL refuses names the part of the URL to fix and
never prints the password (the real servers: tests/integration/test_engine_url_refusals.py;
the session's PostgreSQL trusts every local login, so a wrong password is checked here)."""

from __future__ import annotations

import asyncpg

from storage.connect_errors import postgres_refusal, reason


def test_a_refused_postgres_password_names_the_url_part_and_hides_it() -> None:
    url = "postgresql://heal:hunter22@db.example:5432/heal"
    refused = postgres_refusal(
        asyncpg.exceptions.InvalidPasswordError('password authentication failed for user "heal"'),
        url)
    assert refused is not None
    assert "fix the password in HEAL_DATABASE_URL" in str(refused)
    assert "hunter22" not in str(refused) and "heal:***@db.example" in str(refused)
    assert refused.exit_code == 2
    # a statement's error is no login refusal
    assert postgres_refusal(asyncpg.exceptions.UndefinedTableError("no table"), url) is None
    # a server echoing the password back gets it masked
    assert reason(RuntimeError("bad hunter22."), url) == "bad ***"
