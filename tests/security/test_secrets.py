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
from pipeline.fingerprint.hashing import ALGORITHM_VERSION as V
from pipeline.redact import REDACTION_RULES, redact
from pipeline.runtime.drain import drain_inline
from pipeline.validate import rqjobs
from storage.embedded import EmbeddedPostgres
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
    # Then the home is 0700 and its files 0600: nothing in it is listable or readable by
    # another user
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE(old.stat().st_mode) == 0o600



def test_watch_offsets_and_the_engines_log_are_0600_under_a_permissive_umask(
    tmp_path: Path, redis_url: str, prefix: str,
) -> None:
    """QA: ``$HEAL_HOME/watch/*.json`` and ``logs/engines.log`` were 0644 under umask 022."""
    import os
    import subprocess
    import sys

    from pipeline.enginelogs import route_engine_logs

    home = tmp_path / "home"
    log = tmp_path / "app.log"
    log.write_text("ERROR disk full\n")
    env = {**os.environ, "HEAL_HOME": str(home), "HEAL_REDIS_URL": redis_url,
           "HEAL_STREAM_PREFIX": prefix}
    old = os.umask(0o022)
    try:
        done = subprocess.run([str(Path(sys.executable).parent / "heal"), "watch", "--once",
                               "--from-start", str(log)], env=env, capture_output=True,
                              text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        # (the engine log of heal up, worker and serve; one an older heal left 0644 too)
        older = tmp_path / "older"
        (older / "logs").mkdir(parents=True)
        (older / "logs" / "engines.log").write_text("old line\n")
        (older / "logs" / "engines.log").chmod(0o644)
        for where in (home, older):
            route_engine_logs(where)
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    (offsets,) = (home / "watch").glob("*.json")
    assert (mode(home / "watch"), mode(offsets)) == (0o700, 0o600)
    for where in (home, older):
        assert (mode(where / "logs"), mode(where / "logs" / "engines.log")) == (
            0o700 if where is home else 0o755, 0o600)


@pytest.mark.slow
def test_heal_home_stays_0700_with_the_embedded_engines_running_even_as_root() -> None:
    import os
    import shutil
    import subprocess
    import sys
    import tempfile

    # not under pytest's basetemp, which a concurrent pytest session may reset to 0700
    base = Path(tempfile.mkdtemp(prefix="heal-home-mode-"))
    home = base / "home"
    env = {k: v for k, v in os.environ.items()
           if k not in {"HEAL_REDIS_URL", "HEAL_DATABASE_URL", "HEAL_STREAM_PREFIX"}}
    env["HEAL_HOME"] = str(home)
    heal = str(Path(sys.executable).parent / "heal")
    try:
        # When heal starts its own Redis and PostgreSQL there (as root: PostgreSQL runs as
        # the pgserver user) and records a decision
        for argv in (["engines", "start"],
                     ["ignore", f"{V}:e642b12901a6ee51", "--reason", "noise"]):
            done = subprocess.run([heal, *argv], env=env, capture_output=True, text=True,
                                  timeout=300, check=False)
            assert done.returncode == 0, done.stdout + done.stderr
        # Then HEAL_HOME is 0700 and every file heal keeps directly in it 0600...
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        files = [p for p in home.iterdir() if p.is_file() and not p.is_symlink()]
        assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files), [
            (p.name, oct(p.stat().st_mode)) for p in files]
        # ...and so is what the engines keep in their folders there (Redis's append-only
        # file, snapshot, log and config hold event text; the leases): 0600 files, 0700
        # folders (before: 0644 and 0755 inside the 0700 home)
        kept = [p for engine in ("redis", "pg") for p in (home / engine).rglob("*")
                if not p.is_symlink() and not p.is_socket()]
        assert any(p.name == "redis.conf" for p in kept)
        loose = [(str(p.relative_to(home)), oct(stat.S_IMODE(p.stat().st_mode))) for p in kept
                 if stat.S_IMODE(p.stat().st_mode) != (0o700 if p.is_dir() else 0o600)]
        assert not loose, loose
        # ...while the database answers (as root its data is beside HEAL_HOME, in a folder
        # only the server's user may enter)
        assert EmbeddedPostgres(home).pid() is not None
        if os.geteuid() == 0:
            outside = base / "home.pg"
            info = outside.stat()
            assert stat.S_IMODE(info.st_mode) == 0o700
            import pwd

            assert info.st_uid == pwd.getpwnam("pgserver").pw_uid
            assert (home / "pg" / "data" / "PG_VERSION").is_file()  # through the symlink
        # and it stays so once the engines stopped
        subprocess.run([heal, "engines", "stop", "--force"], env=env, capture_output=True,
                       timeout=120, check=True)
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        if os.geteuid() == 0:
            assert stat.S_IMODE((base / "home.pg").stat().st_mode) == 0o700
    finally:
        subprocess.run([heal, "engines", "stop", "--force"], env=env, capture_output=True,
                       timeout=120, check=False)
        shutil.rmtree(base, ignore_errors=True)


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


def _leaks(blob: str) -> list[str]:
    return [name for name, secret in SECRETS.items() if secret in blob]


def test_secrets_reach_no_result_audit_notification_or_api_through_the_whole_pipeline(
    heal_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json
    import threading
    import urllib.request

    from pipeline.serve.auth import load_tokens
    from pipeline.serve.server import make_server
    from tests.security._support import victim_repo, wait_outcome, write_operator

    # Given a registered repository whose formatting check fails, whose policy notifies every
    # SAFE outcome at once (so notifications.jsonl is written)...
    root = victim_repo(tmp_path, 'mode = "suggest"\n[escalation]\n[[escalation.rules]]\n'
                                 'name = "all"\nwhen = "immediate"\npatterns = ["*"]\n'
                                 'severity = "warning"\naction = "look"\n')
    monkeypatch.setenv("HEAL_CONFIG", str(write_operator(
        tmp_path, f'[trust]\nrepos = ["{root.resolve()}"]\n'
                  'commands = [["ruff", "format", "--check", "."]]\n')))
    settings = Settings.from_env()
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    marker = uuid.uuid4().hex
    from pipeline.demo.sample import git
    from pipeline.validate.runner import run_argv

    failure = run_argv(["ruff", "format", "--check", "."], str(root), 60.0)["tail"]
    # ...and a raw writer's events carrying secrets in text, command and tags: one the
    # catalog fixes (through validate, apply and lifecycle), one it does not (to the queue)
    fixable = {"v": 1, "id": f"sec-fix-{marker}", "text": failure + "\n" + _text(marker),
               "repo": {"path": str(root), "commit": git(root, "rev-parse", "HEAD")},
               "command": ["ruff", "format", "--check", "."],
               "exit_code": 1, "tags": {"cwd": str(root),
                                        "note": f"password={SECRETS['password']}"}}
    unmatched = {"v": 1, "id": f"sec-new-{marker}", "text": _text(marker),
                 "command": ["deploy", f"--key={SECRETS['openai_key']}"], "exit_code": 1}
    # When the real stages handle them (the unmatched one first: it shares text with the
    # other, which would otherwise make it a near match of the fixed one)
    for event in (unmatched, fixable):
        client.xadd(settings.stream("errors"), {"event": orjson.dumps(event)})
        drain_inline(settings, client)
    assert wait_outcome(client, settings, fixable["id"], timeout_s=30) is not None
    from pipeline.events import FingerprintEvent
    from tests.security._support import find

    fine = find(client, settings, "fingerprints", unmatched["id"], FingerprintEvent).fine
    # Then no stream, ...
    for stream in ("fingerprints", "candidates", "verdicts", "outcomes", "dead"):
        for _, fields in client.xrange(settings.stream(stream)):
            blob = b" ".join(fields.values()).decode("utf-8", "replace")
            assert not _leaks(blob), stream
    db = open_database(settings)
    try:
        # ... nor apply_results, attempts, the issue queue or the audit table holds a secret
        results = db.fetch("SELECT * FROM apply_results WHERE error_id = $1", fixable["id"])
        assert results, "the fixable event left no apply result"
        queued: list[Any] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not queued:
            queued = db.fetch("SELECT * FROM issue_queue WHERE fine = $1", fine)
            time.sleep(0.2)
        assert queued, "the unmatched event never reached the issue queue"
        for table, rows in (("apply_results", results), ("issue_queue", queued),
                            ("attempts", db.fetch("SELECT * FROM attempts")),
                            ("audit_log", db.fetch("SELECT body FROM audit_log"))):
            for row in rows:
                assert not _leaks(json.dumps(dict(row), default=str)), table
    finally:
        db.close()
    home = Path(heal_env["HEAL_HOME"])
    audit_text = (home / "audit.jsonl").read_text()
    assert fixable["id"] in audit_text and not _leaks(audit_text)
    notes = (home / "notifications.jsonl").read_text()
    assert notes.strip() and not _leaks(notes)  # the unmatched event's escalation at least
    # ... nor GET /api/issues of heal serve
    server = make_server(settings, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                     daemon=True).start()
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.server_port}/api/issues?limit=10000",
            headers={"Authorization": f"Bearer {load_tokens(settings).viewer}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert fine in body and not _leaks(body)


#: what a command line and a cut output tail carried in clear (QA, issue of the step name)
RUN_SECRETS = ("cmdlinepw123", "urlpw456", "hunter3x", "CutSecret")


def _run_leaks(blob: str) -> list[str]:
    return [s for s in RUN_SECRETS if s in blob]


def _redis_dump(client: redis.Redis, prefix: str) -> str:
    """Every value heal keeps under ``prefix``: streams, hashes, strings, lists, sets."""
    out = []
    for key in client.scan_iter(f"{prefix}*"):
        kind = client.type(key).decode()
        if kind == "stream":
            out += [repr(fields) for _, fields in client.xrange(key)]
        elif kind == "hash":
            out.append(repr(client.hgetall(key)))
        elif kind == "string":
            out.append(repr(client.get(key)))
        elif kind == "list":
            out.append(repr(client.lrange(key, 0, -1)))
        elif kind in ("set", "zset"):
            out.append(repr(client.smembers(key) if kind == "set"
                            else client.zrange(key, 0, -1)))
        out.append(key.decode("utf-8", "replace"))
    return "\n".join(out)


def test_heal_run_keeps_command_line_and_cut_secrets_out_of_streams_step_records_tables_files_and_summary(  # noqa: E501
    heal_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from pipeline.demo.sample import git
    from producers.run import RunOptions, run_step
    from producers.steps import step_key

    # Given a repository whose policy notifies every outcome at once, a GitHub Actions job
    # (its step summary), and a command whose argv holds a password, URL credentials and a
    # --password VALUE pair, and whose output puts a secret right where the 32 KiB tail cut
    # of heal run lands (the kept tail once began "ord=CutSecret9876")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "heal.toml").write_text(
        'mode = "suggest"\n[escalation]\n[[escalation.rules]]\nname = "all"\n'
        'when = "immediate"\npatterns = ["*"]\nseverity = "warning"\naction = "look"\n')
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "x"]):
        git(repo, *args)
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "outputs"))
    monkeypatch.chdir(repo)
    # (33 bytes besides the filler; the cut falls 10 bytes in, after "head\npassw")
    filler = 32 * 1024 + 10 - 33
    (tmp_path / "fail.sh").write_text(
        "test -f ../passes && exit 0; touch ../passes\n"
        "printf 'head\\npassword=CutSecret9876\\n'\n"
        f"head -c {filler} /dev/zero | tr '\\0' '.'; echo boom >&2; exit 1\n")
    argv = ["sh", "../fail.sh", "--password=cmdlinepw123", "https://user:urlpw456@example.com",
            "--password", "hunter3x"]
    # When heal run runs it and the stages decide inline on the real engines
    assert main(["run", "--timeout", "120", "--", *argv]) == 1
    capsys.readouterr()
    settings = Settings.from_env()
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    (entry,) = client.xrange(settings.stream("errors"))
    event = ErrorEvent.decode(entry[1][b"event"])
    # Then the event's step is the redacted command line, and its text kept no rest of the
    # secret the cut split
    assert event.workflow.step.startswith("sh ../fail.sh '--password=<redacted:password>'")
    assert event.workflow.step == run_step(RunOptions(argv))
    assert "head" not in event.text and event.text.count(".") > 30_000
    # and a later success of the same command resolves that failure: the step key is made
    # from the redacted name on both paths
    assert main(["run", "--", *argv]) == 0
    (resolution,) = client.xrange(settings.stream("resolutions"))
    assert resolution[1][b"error_id"].decode() == event.id
    key = step_key(event.repo.path, event.workflow.id, event.workflow.step)
    assert client.hgetall(settings.key("step", key))[b"step"].decode() == event.workflow.step
    # and no stream, step record or other Redis value, ...
    assert not _run_leaks(_redis_dump(client, settings.prefix))
    # ... no PostgreSQL table, ...
    db = open_database(settings)
    try:
        tables = [r["table_name"] for r in db.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
        assert "issue_queue" in tables
        for table in tables:
            for row in db.fetch(f'SELECT * FROM "{table}"'):
                assert not _run_leaks(json.dumps(dict(row), default=str)), table
    finally:
        db.close()
    # ... no file under HEAL_HOME (notifications.jsonl and the audit log included) ...
    home = Path(heal_env["HEAL_HOME"])
    assert (home / "notifications.jsonl").read_text().strip()
    for path in _files_under(home):
        assert not _run_leaks(path.read_bytes().decode("utf-8", "replace")), path
    # ... nor the GitHub job summary holds one of the secrets
    text = summary.read_text()
    assert "redacted" in text and not _run_leaks(text)
