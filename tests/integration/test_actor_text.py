"""A person's name and reason never drive the terminal (QA s19c, defect 3): a ``HEAL_USER``
holding control or format characters (an escape sequence, a newline forging a line, a
bidirectional override) or too long is refused where it is read (exit 2, naming the
variable), a login name the OS gives is recorded in visible form, and ``heal breaker status``
shows a recorded reason and who visible. Real ``heal`` subprocesses on the embedded engines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.test_audit_actor import _heal, _records

HOSTILE = "eve\x1b]0;PWNED\x07\x1b[2J\x1b[31mRED\nFAKE LINE: breaker closed"


@pytest.mark.parametrize("user", [HOSTILE, "bob\u202egnp.exe", "x" * 65])
def test_unfit_heal_user_is_refused_before_anything_is_recorded(
        tmp_path: Path, heal_env: dict[str, str], user: str) -> None:
    env = {**heal_env, "HEAL_USER": user}
    done = _heal(env, tmp_path, "breaker", "open", "workflow:nightly")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "HEAL_USER" in done.stderr and "set HEAL_USER to a plain name" in done.stderr
    assert "Traceback" not in done.stderr and "\x1b" not in done.stderr + done.stdout
    # Then the breaker did not move and no record names that user
    status = _heal({**heal_env, "HEAL_USER": "alice"}, tmp_path, "breaker", "status", "--json")
    assert "workflow:nightly" not in json.loads(status.stdout)["scopes"], status.stdout
    audit = Path(heal_env["HEAL_HOME"]) / "audit.jsonl"
    assert not audit.exists() or all(r["data"].get("who") != user for r in _records(env))


def test_login_name_is_recorded_visible_and_status_shows_text_visible(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    env = {k: v for k, v in heal_env.items() if k != "HEAL_USER"}
    env.update(HEAL_USER="", LOGNAME=HOSTILE, USER=HOSTILE, LNAME=HOSTILE, USERNAME=HOSTILE)
    done = _heal(env, tmp_path, "breaker", "open", "workflow:nightly",
                 "--reason", "maint\x1b[2J\nFAKE: closed")
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout, done.stdout
    status = _heal(env, tmp_path, "breaker", "status")
    assert status.returncode == 0, status.stderr
    # Then no escape or newline of the name or the reason reaches the terminal
    assert "\x1b" not in status.stdout and "\x07" not in status.stdout, status.stdout
    assert not any(ln.startswith("FAKE") for ln in status.stdout.splitlines()), status.stdout
    assert "maint\\x1b[2J\\x0aFAKE: closed; by eve\\x1b]0;PWNED" in status.stdout, status.stdout
    # and the audit log records the login name in its visible form, never refused
    [rec] = [r for r in _records(env) if r["kind"] == "breaker.transition"]
    assert rec["data"]["who"].startswith("eve\\x1b]0;PWNED\\x07"), rec["data"]
    assert len(rec["data"]["who"]) <= 64
