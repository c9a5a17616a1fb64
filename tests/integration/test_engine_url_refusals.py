"""A configured Redis or PostgreSQL that is up but refuses what HEAL_REDIS_URL /
HEAL_DATABASE_URL asks for (password, user, database, an option, the cluster scheme) is a
configuration error: exit 2 naming the part of the URL to fix, never "cannot reach ...; start
it there", never the password. Only a server that cannot be reached is an outage (exit 1).

Real servers: a password-protected redis-server (the binary the embedded engine's package
ships) on a free loopback port, and the session's embedded PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from pipeline.config import Settings
from pipeline.errors import ConfigError
from storage.engines import open_database
from tests.integration.cluster import BIN, free_ports

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c",
        "import sys; from pipeline.cli import main; sys.exit(main(sys.argv[1:]))"]
PASSWORD = "s3cretpw"


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The port of a plain (not cluster) redis-server requiring PASSWORD."""
    port = free_ports(1)[0]
    folder = tmp_path_factory.mktemp("locked-redis")
    proc = subprocess.Popen(
        [str(BIN / "redis-server"), "--port", str(port), "--bind", "127.0.0.1",
         "--requirepass", PASSWORD, "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                redis.Redis(port=port, password=PASSWORD).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _heal(env: dict[str, str], *args: str, stdin: str = "",
          timeout: float = 120) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
    return subprocess.run([*HEAL, *args], cwd=ROOT, input=stdin, capture_output=True, text=True,
                          env={**base, **env, "PYTHONPATH": str(ROOT)}, timeout=timeout)


def _status(tmp_path: Path, database_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return _heal({"HEAL_HOME": str(tmp_path / "home"), "HEAL_DATABASE_URL": database_url,
                  **env}, "status", "--json")


def _no_outage_advice(done: subprocess.CompletedProcess[str]) -> None:
    assert "cannot reach" not in done.stderr and "start Redis there" not in done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    assert PASSWORD not in done.stderr + done.stdout


@pytest.mark.parametrize(("userinfo", "expected"), [
    (":wrongpw@", "fix the user name or password in HEAL_REDIS_URL"),
    ("nouser:wrongpw@", "fix the user name or password in HEAL_REDIS_URL"),
    ("", "put the password in HEAL_REDIS_URL"),
])
def test_a_refused_redis_login_is_a_configuration_error_naming_the_url_part(
    tmp_path: Path, database_url: str, locked_redis: int, userinfo: str, expected: str
) -> None:
    # Given a Redis that is up and requires a password, and a URL with a wrong or no login
    url = f"redis://{userinfo}127.0.0.1:{locked_redis}/0"
    # When heal status (and heal emit) use it
    done = _status(tmp_path, database_url, HEAL_REDIS_URL=url)
    emitted = _heal({"HEAL_HOME": str(tmp_path / "home"), "HEAL_REDIS_URL": url},
                    "emit", stdin='{"v":1,"id":"a","text":"x"}\n')
    # Then both exit 2 saying the login was refused and what to put in the URL
    for result in (done, emitted):
        assert result.returncode == 2, result.stderr
        assert "refused the login" in result.stderr and expected in result.stderr
        _no_outage_advice(result)
    assert "wrongpw" not in done.stderr + done.stdout + emitted.stderr


def test_an_out_of_range_redis_database_is_a_configuration_error(
    tmp_path: Path, database_url: str, locked_redis: int
) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{locked_redis}/99"
    done = _status(tmp_path, database_url, HEAL_REDIS_URL=url)
    assert done.returncode == 2, done.stderr
    assert "has no such database (DB index is out of range)" in done.stderr
    assert "database number" in done.stderr
    _no_outage_advice(done)


def test_a_cluster_url_naming_a_single_server_says_to_use_redis_scheme(
    tmp_path: Path, database_url: str, locked_redis: int
) -> None:
    # Given a redis+cluster:// URL naming a plain (not cluster) Redis
    url = f"redis+cluster://:{PASSWORD}@127.0.0.1:{locked_redis}"
    done = _status(tmp_path, database_url, HEAL_REDIS_URL=url, HEAL_STREAM_PREFIX="{heal}")
    # Then exit 2: it is not a cluster, use redis:// (not "internal error: RedisCluster...")
    assert done.returncode == 2, done.stderr
    assert "that server is not a cluster" in done.stderr
    assert f"use HEAL_REDIS_URL=redis://:***@127.0.0.1:{locked_redis}" in done.stderr
    _no_outage_advice(done)
    # and without a hash tag the layout check speaks of the URL, offering redis:// too
    untagged = _status(tmp_path, database_url, HEAL_REDIS_URL=url)
    assert untagged.returncode == 2
    assert "is a Redis Cluster" not in untagged.stderr
    assert "for a single Redis server, use redis:// instead" in untagged.stderr


def test_an_unreachable_cluster_url_says_cannot_reach(tmp_path: Path, database_url: str) -> None:
    done = _status(tmp_path, database_url, HEAL_REDIS_URL="redis+cluster://127.0.0.1:1",
                   HEAL_STREAM_PREFIX="{heal}")
    assert done.returncode == 1, done.stderr
    assert "cannot reach the Redis Cluster at HEAL_REDIS_URL=redis+cluster://127.0.0.1:1" \
        in done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def keyless_user(locked_redis: int) -> str:
    """HEAL_REDIS_URL of an ACL user that may run every command on keys under ``other:``
    only (``~other:* +@all``): its login works, heal's keys are refused at command time."""
    admin = redis.Redis(port=locked_redis, password=PASSWORD)
    admin.acl_setuser("limited", enabled=True, passwords=[f"+{PASSWORD}"],
                      keys=["other:*"], commands=["+@all"], reset=True)
    admin.close()
    return f"redis://limited:{PASSWORD}@127.0.0.1:{locked_redis}/0"


def _says_key_patterns(done: subprocess.CompletedProcess[str], prefix: str = "heal") -> None:
    assert f"may not use keys under `{prefix}:*`" in done.stderr, done.stderr
    assert f"grant `~{prefix}:*`" in done.stderr and "HEAL_STREAM_PREFIX" in done.stderr
    assert "of pipeline caused error" not in done.stderr  # not redis-py's raw message
    _no_outage_advice(done)


def test_explain_calls_an_acl_refusal_of_the_streams_a_refusal_and_claims_no_dead_letter_absent(
    tmp_path: Path, database_url: str, keyless_user: str
) -> None:
    """QA s13 D8: explain worded a Redis user refused by its ACL "Redis unreachable", and an
    id it could not look up among the dead letters "no ... dead letter of that name"."""
    # Given a Redis user that logs in but may not read heal's streams
    env = {"HEAL_HOME": str(tmp_path / "home"), "HEAL_REDIS_URL": keyless_user,
           "HEAL_DATABASE_URL": database_url}
    # When an error id PostgreSQL does not know is explained
    done = _heal(env, "explain", "e-d8-not-in-postgres")
    # Then it exits 1 calling the streams refused (what to grant), not unreachable, and says
    # the dead letters could not be read instead of claiming there is none
    assert done.returncode == 1, done.stderr
    assert "Redis refused it" in done.stderr and "grant `~heal:*`" in done.stderr, done.stderr
    assert "unreachable" not in done.stderr
    assert "the dead letters could not be read" in done.stderr
    assert "dead letter of that name" not in done.stderr
    _no_outage_advice(done)


def test_a_redis_user_whose_key_patterns_miss_the_prefix_is_a_configuration_error(
    tmp_path: Path, database_url: str, keyless_user: str
) -> None:
    # Given a Redis user that logs in but may not use keys under HEAL_STREAM_PREFIX
    env = {"HEAL_HOME": str(tmp_path / "home"), "HEAL_REDIS_URL": keyless_user,
           "HEAL_DATABASE_URL": database_url}
    # When heal emit, status and worker use it
    emitted = _heal(env, "emit", stdin='{"v":1,"id":"a","text":"x"}\n')
    status = _heal(env, "status")
    worker = _heal(env, "worker", "fingerprint")
    # Then each exits 2 naming the user's key patterns against the prefix (no traceback,
    # no "cannot reach"), and nothing was published under another name
    for result in (emitted, status, worker):
        assert result.returncode == 2, result.stderr
        _says_key_patterns(result)
    assert "stage fingerprint:" in worker.stderr
    # and with a prefix the patterns do cover, the same user works
    covered = _heal({**env, "HEAL_STREAM_PREFIX": "other"}, "emit",
                    stdin='{"v":1,"id":"a","text":"x"}\n')
    assert covered.returncode == 0, covered.stderr


def test_heal_run_keeps_the_status_when_the_redis_user_may_not_use_heals_keys(
    tmp_path: Path, database_url: str, keyless_user: str
) -> None:
    # Given the same user, and a failing command run through heal run
    base = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
    env = {**base, "HEAL_HOME": str(tmp_path / "home"), "HEAL_REDIS_URL": keyless_user,
           "HEAL_DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([*HEAL, "run", "--", "sh", "-c", "echo boom; exit 3"],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    # Then the command's status is kept and heal says why it could not report, clearly
    assert done.returncode == 3, done.stderr
    assert "could not report the failure" in done.stderr
    _says_key_patterns(done)


def test_status_labels_a_server_that_refused_the_url_refused_not_unreachable(
    tmp_path: Path, database_url: str, locked_redis: int, keyless_user: str
) -> None:
    # Given a Redis that refuses the password, one whose user may not use heal's keys, and
    # a PostgreSQL that has no such role
    wrong = f"redis://:wrongpw@127.0.0.1:{locked_redis}/0"
    cases = [({"HEAL_REDIS_URL": wrong, "HEAL_DATABASE_URL": database_url}, "redis"),
             ({"HEAL_REDIS_URL": keyless_user, "HEAL_DATABASE_URL": database_url}, "redis"),
             ({"HEAL_REDIS_URL": f"redis://:{PASSWORD}@127.0.0.1:{locked_redis}/0",
               "HEAL_DATABASE_URL": _pg_url(database_url, user="heal_no_such_role")},
              "postgres")]
    for env, engine in cases:
        env = {"HEAL_HOME": str(tmp_path / "home"), **env}
        # When heal status shows the engines (plain table, and --json)
        table = _heal(env, "status")
        shown = _heal(env, "status", "--json")
        # Then the engine's row says REFUSED (it answered), never UNREACHABLE; the JSON
        # keeps config_error and says refused; both exit 2
        assert table.returncode == shown.returncode == 2, table.stderr
        (row,) = [line for line in table.stdout.splitlines()
                  if line.strip().startswith(engine + " ")]
        assert " REFUSED " in row and "UNREACHABLE" not in table.stdout, table.stdout
        info = json.loads(shown.stdout)["engines"][engine]
        assert info["config_error"] is True and info["refused"] is True
    # and a server that is not there is still UNREACHABLE
    gone = _heal({"HEAL_HOME": str(tmp_path / "home"), "HEAL_DATABASE_URL": database_url,
                  "HEAL_REDIS_URL": f"redis://127.0.0.1:{free_ports(1)[0]}/0"}, "status")
    assert gone.returncode == 1 and " UNREACHABLE " in gone.stdout


def test_status_json_says_a_server_that_refused_runs_and_was_refused(
    tmp_path: Path, database_url: str, locked_redis: int, keyless_user: str
) -> None:
    """QA: `heal status --json` said `"running": false` for a Redis that refused the login
    while the table said REFUSED (it answered: it runs)."""
    # Given a Redis that refuses the password, and one whose user may not use heal's keys
    wrong = f"redis://:wrongpw@127.0.0.1:{locked_redis}/0"
    for url in (wrong, keyless_user):
        env = {"HEAL_HOME": str(tmp_path / "home"), "HEAL_REDIS_URL": url,
               "HEAL_DATABASE_URL": database_url}
        # When heal status --json reports it
        shown = _heal(env, "status", "--json")
        # Then the engine runs (it answered), is refused, and its state says so as the
        # table's REFUSED does; the keys kept from before are still there
        assert shown.returncode == 2, shown.stderr
        info = json.loads(shown.stdout)["engines"]["redis"]
        assert info["running"] is True and info["state"] == "refused", info
        assert info["refused"] is True and info["config_error"] is True
        assert "reachable" in info and info["mode"] == "external"
        # and PostgreSQL, fine, says ok
        assert json.loads(shown.stdout)["engines"]["postgres"]["state"] == "ok"
    # and a Redis that is not there is not running, unreachable
    gone = _heal({"HEAL_HOME": str(tmp_path / "home"), "HEAL_DATABASE_URL": database_url,
                  "HEAL_REDIS_URL": f"redis://127.0.0.1:{free_ports(1)[0]}/0"},
                 "status", "--json")
    info = json.loads(gone.stdout)["engines"]["redis"]
    assert gone.returncode == 1 and info["running"] is False and info["state"] == "unreachable"


def test_a_tls_url_naming_a_plain_redis_says_it_does_not_speak_tls(
    tmp_path: Path, database_url: str, locked_redis: int
) -> None:
    # Given a rediss:// (TLS) URL naming a Redis that speaks plain TCP
    url = f"rediss://:{PASSWORD}@127.0.0.1:{locked_redis}/0"
    # When heal emit uses it
    done = _heal({"HEAL_HOME": str(tmp_path / "home"), "HEAL_REDIS_URL": url,
                  "HEAL_DATABASE_URL": database_url}, "emit",
                 stdin='{"v":1,"id":"a","text":"x"}\n')
    # Then exit 2: it does not speak TLS, use redis:// (not "cannot reach ...; start Redis")
    assert done.returncode == 2, done.stderr
    assert "does not speak TLS" in done.stderr
    assert f"use HEAL_REDIS_URL=redis://:***@127.0.0.1:{locked_redis}/0" in done.stderr
    _no_outage_advice(done)
    # and a rediss:// URL where nothing listens is still an outage (exit 1)
    gone = _heal({"HEAL_HOME": str(tmp_path / "home"), "HEAL_DATABASE_URL": database_url,
                  "HEAL_REDIS_URL": f"rediss://127.0.0.1:{free_ports(1)[0]}/0"}, "emit",
                 stdin='{"v":1,"id":"a","text":"x"}\n')
    assert gone.returncode == 1 and "cannot reach" in gone.stderr, gone.stderr
    assert "does not speak TLS" not in gone.stderr


def _pg_url(database_url: str, *, user: str | None = None, database: str | None = None,
            query: str = "") -> str:
    parts = urlsplit(database_url)
    netloc = parts.netloc
    if user is not None:
        host = netloc.rsplit("@", 1)[-1]
        netloc = f"{user}:{PASSWORD}@{host}"
    path = f"/{database}" if database is not None else parts.path
    joined = "&".join(q for q in (parts.query, query) if q)
    return urlunsplit(parts._replace(netloc=netloc, path=path, query=joined))


@pytest.mark.parametrize(("change", "expected"), [
    ({"user": "heal_no_such_role"}, "fix the user name in HEAL_DATABASE_URL"),
    ({"database": "heal_no_such_db"}, "fix the database name in HEAL_DATABASE_URL"),
    ({"query": "sslmode=bogus"}, "fix that option of HEAL_DATABASE_URL"),
    # (a server parameter the server does not know: re-verification, was "cannot reach")
    ({"query": "bogusopt=1"}, "fix or remove that option of HEAL_DATABASE_URL"),
])
def test_a_refused_postgres_login_or_option_is_a_configuration_error(
    tmp_path: Path, redis_url: str, database_url: str, prefix: str,
    change: dict[str, str], expected: str,
) -> None:
    # Given the session's PostgreSQL (up) and a URL with an unknown role, database or option
    url = _pg_url(database_url, **change)
    # When heal status checks it
    done = _heal({"HEAL_HOME": str(tmp_path / "home"), "HEAL_REDIS_URL": redis_url,
                  "HEAL_STREAM_PREFIX": prefix, "HEAL_DATABASE_URL": url}, "status", "--json")
    # Then exit 2 naming the part of HEAL_DATABASE_URL to fix, not "start PostgreSQL there"
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr
    assert "cannot reach" not in done.stderr and "start PostgreSQL" not in done.stderr
    assert "Traceback" not in done.stderr and PASSWORD not in done.stderr + done.stdout
    # and every command opening the database (open_database) says the same
    settings = Settings.from_env({"HEAL_HOME": str(tmp_path / "home"),
                                  "HEAL_DATABASE_URL": url, "HEAL_REDIS_URL": redis_url})
    with pytest.raises(ConfigError, match=expected) as info:
        open_database(settings)
    assert PASSWORD not in str(info.value)


def _acl_user(port: int, name: str, keys: list[str]) -> str:
    admin = redis.Redis(port=port, password=PASSWORD)
    admin.acl_setuser(name, enabled=True, passwords=[f"+{PASSWORD}"], keys=keys,
                      channels=["*"], commands=["+@all"], reset=True)
    admin.close()
    return f"redis://{name}:{PASSWORD}@127.0.0.1:{port}/0"


@pytest.mark.parametrize(("keys", "says"), [
    # the input stream only: the stage's output is refused at start
    (["heal:errors*"], "stage fingerprint: the Redis user"),
    # every stream of the stage but not its template store (heal:fp:*): refused at the event
    (["heal:errors*", "heal:fingerprints*", "heal:dead*", "heal:done:*", "heal:alive:*"],
     "stage fingerprint: template store: the Redis user"),
])
def test_a_redis_user_covering_part_of_the_prefix_stops_the_worker_with_a_configuration_error(
    tmp_path: Path, database_url: str, locked_redis: int, keys: list[str], says: str
) -> None:
    """QA s12 N2: the template store wrapped the NOPERM as an outage, so `heal worker
    fingerprint` parked the entry and retried forever (and, the entry once pending, a second
    run sat idle saying nothing); `heal up` logged two tracebacks before its exit 2. (Refused
    its template store only, the worker now finds out at start: see
    test_a_worker_refused_only_its_own_keys_exits_at_start.)"""
    # Given a user whose key patterns cover part of heal's keys, and an event it published
    url = _acl_user(locked_redis, "partial", keys)
    env = {"HEAL_HOME": str(tmp_path / "home"), "HEAL_REDIS_URL": url,
           "HEAL_DATABASE_URL": database_url}
    emitted = _heal(env, "emit", stdin='{"v":1,"id":"a","text":"ERROR: boom"}\n')
    assert emitted.returncode == 0, emitted.stderr
    admin = redis.Redis(port=locked_redis, password=PASSWORD)
    try:
        # When the fingerprint worker runs with it, and heal up (and, when the stage's output
        # is refused, the worker again: the entry pending, it sat idle saying nothing)
        again = [_heal(env, "worker", "fingerprint")] if len(keys) == 1 else []
        runs = [_heal(env, "worker", "fingerprint"), *again, _heal(env, "up")]
        # Then each exits 2 saying what to grant, not parking the entry as in an outage,
        # with no traceback
        for result in runs:
            assert result.returncode == 2, result.stderr
            _says_key_patterns(result)
            assert "parked during an outage" not in result.stderr
            assert "Traceback" not in result.stderr, result.stderr
        assert says in runs[0].stderr, runs[0].stderr
        for result in again:
            assert "stage fingerprint: the Redis user" in result.stderr, result.stderr
        # and the event is still there to be handled once the ACL is fixed, not dead-lettered
        assert admin.xlen("heal:errors") == 1
        assert admin.xlen("heal:dead") == 0
    finally:
        admin.delete("heal:errors", "heal:dead", "heal:fingerprints")
        admin.acl_deluser("partial")
        admin.close()


#: every key of the streams, the dedupe and heartbeat keys: all but the stages' own stores
_STREAM_KEYS = ["heal:errors*", "heal:fingerprints*", "heal:candidates*", "heal:verdicts*",
                "heal:outcomes*", "heal:dead*", "heal:done:*", "heal:alive:*"]


@pytest.mark.parametrize(("stage", "says"), [
    ("fingerprint", "stage fingerprint: template store: the Redis user"),
    ("lifecycle", "stage lifecycle: sweep lease: the Redis user"),
])
def test_a_worker_refused_only_its_own_keys_exits_at_start(
    tmp_path: Path, database_url: str, locked_redis: int, stage: str, says: str
) -> None:
    """QA: a worker whose ACL refused only the template store sat idle until an event came,
    and, run a second time with the entry pending, exited 2 only once it reclaimed it (about
    a minute later). It now tries the stage's own keys at start."""
    # Given a user covering every stream of heal but not the stage's own keys
    url = _acl_user(locked_redis, "streamsonly", _STREAM_KEYS)
    env = {"HEAL_HOME": str(tmp_path / "home"), "HEAL_REDIS_URL": url,
           "HEAL_DATABASE_URL": database_url}
    admin = redis.Redis(port=locked_redis, password=PASSWORD)
    try:
        # When the stage's worker starts with nothing to do
        began = time.monotonic()
        try:
            idle = _heal(env, "worker", stage, timeout=45)
        except subprocess.TimeoutExpired:
            pytest.fail(f"heal worker {stage} sat idle instead of exiting 2")
        # Then it exits 2 at start saying what to grant, with no traceback
        assert idle.returncode == 2, idle.stderr
        _says_key_patterns(idle)
        assert says in idle.stderr, idle.stderr
        assert "Traceback" not in idle.stderr and "sweep lease unavailable" not in idle.stderr
        assert time.monotonic() - began < 30
        if stage != "fingerprint":
            return
        # and with an entry left pending by a run that met the refusal at the event (the
        # group's consumer read it), a second run exits 2 at once, not at its reclaim
        emitted = _heal(env, "emit", stdin='{"v":1,"id":"a","text":"ERROR: boom"}\n')
        assert emitted.returncode == 0, emitted.stderr
        admin.xreadgroup("fingerprint", "gone-worker", {"heal:errors": ">"}, count=1)
        assert admin.xpending("heal:errors", "fingerprint")["pending"] == 1
        began = time.monotonic()
        again = _heal(env, "worker", stage, timeout=45)
        assert again.returncode == 2 and says in again.stderr, again.stderr
        assert time.monotonic() - began < 30
        assert admin.xlen("heal:errors") == 1 and admin.xlen("heal:dead") == 0
    finally:
        admin.delete("heal:errors", "heal:dead", "heal:fingerprints", "heal:outcomes")
        admin.acl_deluser("streamsonly")
        admin.close()


def test_heal_up_with_a_partial_acl_prints_only_the_refusal(
    tmp_path: Path, database_url: str, locked_redis: int
) -> None:
    """QA: with a user covering part of the prefix (`~heal:errors*`), `heal up` logged
    "sweep lease unavailable" (the lifecycle's timer, started before the workers checked
    their keys) before its exit 2."""
    # Given a user whose key patterns cover the input stream only
    url = _acl_user(locked_redis, "errorsonly", ["heal:errors*"])
    env = {"HEAL_HOME": str(tmp_path / "home"), "HEAL_REDIS_URL": url,
           "HEAL_DATABASE_URL": database_url, "HEAL_SWEEP_INTERVAL_S": "1"}
    try:
        # When heal up starts every stage with it
        done = _heal(env, "up")
        # Then the refusal, saying what to grant, is the only thing it says
        assert done.returncode == 2, done.stderr
        _says_key_patterns(done)
        assert "sweep" not in done.stderr, done.stderr
        # (its INFO line naming the stages it starts aside)
        said = [line for line in done.stderr.splitlines()
                if line.strip() and " INFO " not in line]
        assert len(said) == 1 and said[0].startswith("heal: error: stage "), done.stderr
    finally:
        admin = redis.Redis(port=locked_redis, password=PASSWORD)
        admin.acl_deluser("errorsonly")
        admin.close()


@pytest.mark.parametrize("refused", [["-eval", "-evalsha", "-script"], ["-script"]])
def test_a_redis_user_refused_the_scripting_commands_is_refused_at_start_and_by_status(
    tmp_path: Path, database_url: str, locked_redis: int, refused: list[str]
) -> None:
    """QA s13 D4: a user with every key of heal but without EVAL/EVALSHA/SCRIPT passed the
    worker's start-up probes (keys only) and sat idle, exiting 2 only at the first event
    (leaving it pending); `heal status` called it ok."""
    # Given a user covering heal's keys but refused the scripting commands
    admin = redis.Redis(port=locked_redis, password=PASSWORD)
    admin.acl_setuser("noscript", enabled=True, passwords=[f"+{PASSWORD}"],
                      keys=["heal:*", "rq:*"], channels=["*"], commands=["+@all", *refused],
                      reset=True)
    url = f"redis://noscript:{PASSWORD}@127.0.0.1:{locked_redis}/0"
    env = {"HEAL_HOME": str(tmp_path / "home"), "HEAL_REDIS_URL": url,
           "HEAL_DATABASE_URL": database_url}
    try:
        # When the fingerprint worker starts with nothing to do
        began = time.monotonic()
        try:
            idle = _heal(env, "worker", "fingerprint", timeout=45)
        except subprocess.TimeoutExpired:
            pytest.fail("heal worker fingerprint sat idle instead of exiting 2")
        # Then it exits 2 at start naming the commands to grant, with no traceback
        assert idle.returncode == 2, idle.stderr
        assert "stage fingerprint: Lua scripts: the Redis user" in idle.stderr, idle.stderr
        assert "+eval +evalsha +script" in idle.stderr, idle.stderr
        assert "Traceback" not in idle.stderr
        _no_outage_advice(idle)
        assert time.monotonic() - began < 30
        # and heal status calls Redis refused (exit 2), saying the same, not ok
        status = _heal(env, "status", "--json")
        assert status.returncode == 2, status.stderr
        assert "+eval +evalsha +script" in status.stderr, status.stderr
        shown = json.loads(status.stdout)
        assert shown["ok"] is False and shown["engines"]["redis"]["state"] == "refused"
    finally:
        admin.delete("heal:errors", "heal:dead", "heal:fingerprints")
        admin.acl_deluser("noscript")
        admin.close()


def test_heal_run_calls_a_scripting_refusal_of_the_execution_state_refused_not_unreachable(
    tmp_path: Path, database_url: str, locked_redis: int
) -> None:
    """QA s13b D6: with a user refused the scripting commands, heal run kept the command's
    status but said "execution state: Redis unreachable: ..." (an outage) for an ACL
    refusal, without saying what to grant."""
    # Given a user covering heal's keys but refused EVAL, EVALSHA and SCRIPT
    admin = redis.Redis(port=locked_redis, password=PASSWORD)
    admin.acl_setuser("noscript-run", enabled=True, passwords=[f"+{PASSWORD}"],
                      keys=["heal:*", "rq:*"], channels=["*"],
                      commands=["+@all", "-eval", "-evalsha", "-script"], reset=True)
    url = f"redis://noscript-run:{PASSWORD}@127.0.0.1:{locked_redis}/0"
    base = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
    env = {**base, "HEAL_HOME": str(tmp_path / "home"), "HEAL_REDIS_URL": url,
           "HEAL_DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
    try:
        # When a failing command runs through heal run
        done = subprocess.run([*HEAL, "run", "--", "sh", "-c", "echo boom; exit 4"],
                              cwd=tmp_path, capture_output=True, text=True, env=env,
                              timeout=120)
        # Then its status is kept, and heal says Redis refused, naming what to grant
        assert done.returncode == 4, done.stderr
        assert "Redis refused" in done.stderr, done.stderr
        assert "+eval +evalsha +script" in done.stderr, done.stderr
        assert "unreachable" not in done.stderr, done.stderr
        _no_outage_advice(done)
    finally:
        admin.delete("heal:errors", "heal:dead", "heal:fingerprints")
        admin.acl_deluser("noscript-run")
        admin.close()


def test_heal_run_ends_promptly_when_the_validate_stage_is_refused_a_command(
    tmp_path: Path, database_url: str, locked_redis: int
) -> None:
    """QA s13c D2: with a user refused SET (which the validate stage's verdict cache needs),
    the validate stage called the refusal "validate: Redis unreachable" and parked the event
    as an outage forever: heal run never returned (killed after 60 s)."""
    # Given a user covering heal's keys but refused SET
    admin = redis.Redis(port=locked_redis, password=PASSWORD)
    admin.acl_setuser("noset-run", enabled=True, passwords=[f"+{PASSWORD}"],
                      keys=["heal:*", "rq:*"], channels=["*"],
                      commands=["+@all", "-set"], reset=True)
    url = f"redis://noset-run:{PASSWORD}@127.0.0.1:{locked_redis}/0"
    base = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
    env = {**base, "HEAL_HOME": str(tmp_path / "home"), "HEAL_REDIS_URL": url,
           "HEAL_DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
    try:
        # When a failing command runs through heal run (a hang fails the test)
        done = subprocess.run([*HEAL, "run", "--timeout", "10", "--", "sh", "-c", "exit 3"],
                              cwd=tmp_path, capture_output=True, text=True, env=env,
                              timeout=45)
        # Then it ends, its status is kept, and heal says Redis refused, naming what to grant
        assert done.returncode == 3, done.stderr
        assert "Redis refused" in done.stderr, done.stderr
        assert "+set" in done.stderr, done.stderr
        assert "unreachable" not in done.stderr, done.stderr
        _no_outage_advice(done)
    finally:
        admin.delete(*(admin.keys("heal:*") or ["heal:errors"]))
        admin.acl_deluser("noset-run")
        admin.close()
