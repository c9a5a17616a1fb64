"""Attack 9: secrets stored and served in clear; HEAL_HOME world-readable; the Redis
password in ``ps``.

Secrets are redacted when an event is built or decoded, before any write: a raw event
XADDed with tokens, keys and passwords goes through the real fingerprint and lookup stages
on the real engines, and neither the streams, the issue queue nor any file under HEAL_HOME
holds one of them.
"""

from __future__ import annotations

import stat
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.events import ErrorEvent
from pipeline.homedir import dir_mode
from pipeline.redact import REDACTION_RULES, redact
from pipeline.runtime.drain import drain_inline
from pipeline.validate import rqjobs
from storage.engines import open_database

SECRETS = {
    "github_token": "ghp_" + "A1b2C3d4E5" * 4,
    "gitlab_token": "glpat-" + "x7Y8z9W0v1" * 2,
    "aws_access_key": "AKIA" + "ABCDEFGHIJKLMNOP",
    "gcp_api_key": "AIza" + "SyD-abcdefghijklmnopqrstuvwxyz12345",
    "slack_token": "xoxb-" + "123456789012-abcdefghij",
    "openai_key": "sk-proj-" + "abcdefghijklmnopqrstuvwxyz012345",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3",
    "password": "hunter2-Very-Secret",
    "url_credentials": "s3cr3t-pass-word",
}


def _text(marker: str) -> str:
    s = SECRETS
    return (
        f"deploy {marker} failed\n"
        f"fatal: could not read from https://bob:{s['url_credentials']}@git.example.com/r.git\n"
        f"GITHUB_TOKEN={s['github_token']} GITLAB={s['gitlab_token']}\n"
        f"AWS key {s['aws_access_key']} rejected; GCP key={s['gcp_api_key']}\n"
        f"slack {s['slack_token']} openai: Incorrect API key provided: {s['openai_key']}\n"
        f"Authorization: Bearer {s['jwt']}\n"
        f"psql: FATAL: password={s['password']} authentication failed\n"
    )


def test_every_rule_redacts_its_secret_and_is_idempotent() -> None:
    text = _text("unit")
    clean = redact(text)
    for name, secret in SECRETS.items():
        assert secret not in clean, name
    assert redact(clean) == clean
    # every rule of the table is exercised by the sample (a new rule needs a sample too)
    fired = {name for name in REDACTION_RULES if f"<redacted:{name}>" in clean}
    assert fired >= set(SECRETS) - {"password"} | {"password"}


def test_a_built_event_holds_no_secret_in_text_command_or_tags() -> None:
    event = ErrorEvent(id="e1", text=_text("built"),
                       command=("curl", f"https://u:{SECRETS['password']}@h/x"),
                       tags={"env": f"TOKEN={SECRETS['github_token']}"})
    blob = event.encode().decode()
    assert not [n for n, s in SECRETS.items() if s in blob]
    assert "<redacted:" in event.text


def _files_under(home: Path) -> list[Path]:
    return [p for p in home.rglob("*") if p.is_file() and p.stat().st_size < 50_000_000]


def test_a_raw_event_with_secrets_leaves_no_secret_in_streams_tables_or_files(
    heal_env: dict[str, str],
) -> None:
    settings = Settings.from_env()
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    marker = uuid.uuid4().hex
    # Given a hostile writer XADDs a raw event full of secrets (no heal code on its side)
    raw = orjson.dumps({"v": 1, "id": f"sec-{marker}", "text": _text(marker),
                        "command": ["deploy", f"--token={SECRETS['github_token']}"],
                        "tags": {"note": f"password={SECRETS['password']}"}})
    client.xadd(settings.stream("errors"), {"event": raw})
    # When the real fingerprint and lookup stages handle it
    drain_inline(settings, client, stages=["fingerprint", "lookup"])
    # Then no stream after the input holds a secret
    for stream in ("fingerprints", "candidates"):
        for _, fields in client.xrange(settings.stream(stream)):
            body = fields[b"event"].decode()
            assert not [n for n, s in SECRETS.items() if s in body], stream
    # nor the issue queue (the unmatched error is queued with its redacted sample)
    db = open_database(settings)
    try:
        deadline = time.monotonic() + 120
        rows: list[Any] = []
        while time.monotonic() < deadline and not rows:
            rows = db.fetch("SELECT sample FROM issue_queue WHERE sample LIKE $1",
                            f"%{marker}%")
            time.sleep(0.2)
        assert rows, "the unmatched error never reached the issue queue"
        assert "<redacted:" in rows[0]["sample"]
        assert not [n for n, s in SECRETS.items() if s in rows[0]["sample"]]
    finally:
        db.close()
    # nor any file heal keeps under HEAL_HOME
    home = Path(heal_env["HEAL_HOME"])
    for path in _files_under(home):
        data = path.read_bytes()
        leaked = [n for n, s in SECRETS.items() if s.encode() in data]
        assert not leaked, f"{path} holds {leaked}"


def test_heal_home_is_tightened_to_0700_and_its_files_to_0600(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a home an older heal left world-readable
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    old = home / "audit.jsonl"
    old.write_text("")
    old.chmod(0o644)
    monkeypatch.setenv("HEAL_HOME", str(home))
    # When any heal command starts
    sample = tmp_path / "error.txt"
    sample.write_text("ValueError: x\n")
    assert main(["fingerprint", str(sample)]) == 0
    # Then the home is 0700 (0711 as root: the embedded PostgreSQL's own user must traverse
    # it) and its files 0600: nothing in it is listable or readable by another user
    assert stat.S_IMODE(home.stat().st_mode) == dir_mode()
    assert stat.S_IMODE(home.stat().st_mode) & 0o066 == 0
    assert stat.S_IMODE(old.stat().st_mode) == 0o600


def test_the_redis_url_reaches_rq_workers_through_the_environment_not_argv(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a Redis with a password
    client = redis.Redis(host="127.0.0.1", port=6390, password="pw-in-url-9z")
    spawned: list[dict[str, Any]] = []

    class Recorder:
        def __init__(self, argv: list[str], **kw: Any) -> None:
            spawned.append({"argv": argv, "env": kw.get("env") or {}})

        def poll(self) -> None:
            return None

        def terminate(self) -> None:
            return None

        def wait(self, timeout: float | None = None) -> int:
            return 0

        def kill(self) -> None:
            return None

    monkeypatch.setattr(rqjobs.subprocess, "Popen", Recorder)
    queue = rqjobs.CheckQueue(client, "q-secret", workers=1)
    monkeypatch.setattr(queue, "_live_workers", lambda: 0)
    # When heal starts a verification worker
    queue.ensure_workers(1)
    # Then the password is in the worker's environment, never in its argv (ps shows argv)
    assert spawned
    assert not any("pw-in-url-9z" in a for a in spawned[0]["argv"])
    assert "pw-in-url-9z" in spawned[0]["env"]["RQ_REDIS_URL"]
    assert "-u" not in spawned[0]["argv"] and "--url" not in spawned[0]["argv"]
