"""``heal serve`` over real HTTP (urllib) against the session's real embedded engines: every
API route, approvals (a real verified suggestion applied through the API), /metrics parsed
line by line, and the error contract (404/405/400/409/503 as JSON, never a traceback)."""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from pipeline.config import Settings
from pipeline.serve.auth import load_tokens
from pipeline.serve.server import HealServer, make_server
from storage.engines import open_database


def _start(settings: Settings) -> tuple[HealServer, str]:
    server = make_server(settings, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                     daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


@pytest.fixture
def base(heal_env: dict[str, str]) -> Iterator[str]:
    server, url = _start(Settings.from_env())
    yield url
    server.shutdown()
    server.server_close()


def approver_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {load_tokens(Settings.from_env()).approver}"}


def call(url: str, method: str = "GET", headers: dict[str, str] | None = None,
         ) -> tuple[int, str, Any]:
    """(status, content type, body: JSON decoded when JSON) without raising on 4xx/5xx.
    A POST carries the approver's bearer token unless ``headers`` says otherwise."""
    if headers is None:
        headers = approver_headers() if method == "POST" else {}
    request = urllib.request.Request(url, method=method, headers=headers,
                                     data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            status, ctype, raw = resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as exc:
        status, ctype, raw = exc.code, exc.headers["Content-Type"], exc.read()
    body = json.loads(raw) if ctype.startswith("application/json") else raw.decode()
    return status, ctype, body


@pytest.fixture
def rows(heal_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """Given one pattern with a fix (one (fingerprint, fix) pair QUARANTINED) and one open issue,
    all with ids unique to this test (the database is shared by the session)."""
    tag = uuid.uuid4().hex[:8]
    ids = {"pattern": f"serve.p{tag}", "fix": f"serve.f{tag}", "fine": f"fp-v1:serve{tag}"}
    db = open_database(Settings.from_env())
    db.execute("INSERT INTO patterns (id, name, category, occurrences) VALUES ($1,$2,'SAFE',"
               "1000000000)", ids["pattern"], f"serve test {tag}")
    db.execute("INSERT INTO fixes (id, pattern_id, kind, category, state, title, successes, "
               "rollbacks) VALUES ($1,$2,'command','SAFE','ACTIVE','t',3,1)",
               ids["fix"], ids["pattern"])
    db.execute("INSERT INTO fix_stats (fingerprint, fix_id, state) VALUES ($1,$2,'QUARANTINED')",
               ids["fine"], ids["fix"])
    db.execute("INSERT INTO issue_queue (fine, count, sample) VALUES ($1, 7, 'boom ' || $1)",
               ids["fine"])
    db.execute("INSERT INTO pattern_fingerprints (fingerprint, level, pattern_id, hits) "
               "VALUES ($1, 'fine', $2, 1000000000)", ids["fine"], ids["pattern"])
    db.execute("INSERT INTO lifecycle_transitions (fingerprint, fix_id, src, dst, reason) "
               "VALUES ($1, $2, 'ACTIVE', 'QUARANTINED', 'rolled back in a test')",
               ids["fine"], ids["fix"])
    yield ids
    db.execute("DELETE FROM lifecycle_transitions WHERE fix_id = $1", ids["fix"])
    db.execute("DELETE FROM fix_stats WHERE fix_id = $1", ids["fix"])
    db.execute("DELETE FROM patterns WHERE id = $1", ids["pattern"])
    db.execute("DELETE FROM issue_queue WHERE fine = $1", ids["fine"])
    db.close()


def test_status_is_heal_status_json(base: str, prefix: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import main

    status, ctype, body = call(f"{base}/api/status")
    assert (status, ctype) == (200, "application/json")
    assert main(["status", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert set(body) == set(cli)
    assert body["streams"] == cli["streams"] and body["ok"] is True
    assert set(body["streams"]) == {f"{prefix}:{s}" for s in
                                    ("errors", "fingerprints", "candidates", "verdicts",
                                     "outcomes", "dead")}


def test_patterns_issues_breaker(base: str, rows: dict[str, str]) -> None:
    status, _, body = call(f"{base}/api/patterns?limit=5")
    assert status == 200
    pattern = body["patterns"][0]  # the test pattern has the most occurrences
    assert pattern["id"] == rows["pattern"]
    [fix] = pattern["fixes"]
    assert (fix["id"], fix["state"], fix["successes"], fix["rollbacks"]) == (
        rows["fix"], "ACTIVE", 3, 1)
    assert fix["pair_states"] == {"QUARANTINED": 1}
    funnel = body["funnel"]
    assert set(funnel["fixes"]) == {"DRAFT", "ACTIVE", "AUTOMATED", "DEPRECATED", "QUARANTINED"}
    assert funnel["fixes"]["ACTIVE"] >= 1 and funnel["pairs"]["QUARANTINED"] >= 1

    status, _, body = call(f"{base}/api/issues?limit=10000")
    assert status == 200
    mine = [i for i in body["issues"] if i["fine"] == rows["fine"]]
    assert mine and mine[0]["count"] == 7 and mine[0]["status"] == "open"

    status, _, body = call(f"{base}/api/breaker")
    assert status == 200 and body["state"] == "CLOSED" and "global" in body["scopes"]

    status, _, body = call(f"{base}/api/overview")
    assert status == 200 and body["issues_open"] >= 1
    assert any(e["key"] == rows["pattern"] for e in body["top_errors"])


def test_error_contract(base: str) -> None:
    status, ctype, body = call(f"{base}/no/such/thing")
    assert (status, ctype) == (404, "application/json") and "no such path" in body["error"]
    status, _, body = call(f"{base}/api/status", "POST")
    assert status == 405 and "only GET" in body["error"]
    for bad in ("limit=abc", "limit=0", "limit=99999999"):
        status, _, body = call(f"{base}/api/issues?{bad}")
        assert status == 400 and "limit" in body["error"], bad
    status, _, body = call(f"{base}/api/approvals?category=HARMLESS")
    assert status == 400 and "SAFE, MODERATE, RISKY" in body["error"]
    status, _, body = call(f"{base}/api/issues?status=bogus")
    assert status == 400 and "open, ignored, pattern, all" in body["error"]
    status, _, body = call(f"{base}/api/metrics?window=1y")
    assert status == 400 and "24h, 7d, 30d" in body["error"]
    status, _, body = call(f"{base}/api/approvals/nope-{uuid.uuid4().hex}/approve", "POST")
    assert status == 404 and "no attempt" in body["error"]
    status, _, body = call(f"{base}/api/approvals/x/approve")
    assert status == 405


def test_cross_site_guards(base: str) -> None:
    # a POST without the approver's token (what a form on another site sends) is refused,
    # and the answer says where the token is
    status, _, body = call(f"{base}/api/approvals/x/approve", "POST", headers={})
    assert status == 401 and "approver token" in body["error"] and "HEAL_SERVE_TOKEN" in \
        body["error"]
    # DNS rebinding: a loopback server answers only requests addressed to a loopback name
    status, _, body = call(f"{base}/api/breaker", headers={"Host": "evil.example:8377"})
    assert status == 403 and "is not this server" in body["error"]
    for host in ("localhost:1", "127.0.0.1", "[::1]:8377"):
        assert call(f"{base}/healthz", headers={"Host": host})[0] == 200, host


METRIC_LINE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)'
    r'(?:\{(?P<labels>[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
    r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*)\})?'
    r' (?P<value>[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|Inf|NaN))$')


def parse_exposition(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every line is a HELP, a TYPE or a valid sample; a family's TYPE comes before its samples
    and each family is declared once."""
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    typed: dict[str, str] = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in typed, f"family {name} declared twice"
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped")
            typed[name] = kind
            continue
        match = METRIC_LINE.match(line)
        assert match, f"not a valid sample line: {line!r}"
        name = match["name"]
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in typed else name
        assert family in typed, f"sample {name} before its TYPE"
        labels = tuple(sorted(re.findall(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"',
                                         match["labels"] or "")))
        samples[(name, labels)] = float(match["value"].replace("Inf", "inf"))
    return samples


def test_metrics_exposition(base: str, prefix: str, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    for i in range(5):
        client.xadd(f"{prefix}:errors", {"event": json.dumps({"v": 1, "id": str(i), "text": "x"})})
    client.xgroup_create(f"{prefix}:errors", "fingerprint", id="0")
    client.xreadgroup("fingerprint", "w1", {f"{prefix}:errors": ">"}, count=2)
    client.xadd(f"{prefix}:dead", {"reason": "test"})

    status, ctype, text = call(f"{base}/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    samples = parse_exposition(text)
    lag = (("group", "fingerprint"), ("stream", f"{prefix}:errors"))
    assert samples[("heal_stream_lag", lag)] == 3
    assert samples[("heal_stream_pending", lag)] == 2
    assert samples[("heal_dead_letters", ())] == 1
    assert samples[("heal_breaker_open", ())] == 0
    assert samples[("heal_engine_up", (("engine", "postgres"),))] == 1
    assert ("heal_fixes_applied_total", ()) in samples
    assert ("heal_fixes_reverted_total", ()) in samples

    # a forced-open breaker is visible to the alert rule
    from pipeline.guardrails.breaker import CircuitBreaker

    CircuitBreaker(client, Settings.from_env()).force_open("global", "test")
    samples = parse_exposition(call(f"{base}/metrics")[2])
    assert samples[("heal_breaker_open", ())] == 1
    assert samples[("heal_breaker_state", (("state", "FORCED_OPEN"),))] == 1


def _entry_ms(entry_id: Any) -> int:
    """The millisecond part of a stream entry id (bytes from redis-py)."""
    return int(bytes(entry_id).decode().split("-")[0])


def test_dead_letter_figures_do_not_count_a_retention_trim_as_new_dead_letters(
        base: str, prefix: str, redis_url: str) -> None:
    """heal_dead_letters_total was the dead stream's length exported as a counter, and the
    HealDeadLetters alert took increase() of it: a trim from 10 to 5 entries read as a counter
    reset followed by 5 new dead letters, and fired. Now the length is a gauge
    (heal_dead_letters) and the alert reads the newest dead letter's time, which a trim or an
    XDEL leaves alone and a new dead letter moves."""
    client = redis.Redis.from_url(redis_url)
    dead = f"{prefix}:dead"
    ids = [client.xadd(dead, {"reason": f"test {i}"}) for i in range(10)]
    newest = _entry_ms(ids[-1]) / 1000
    text = call(f"{base}/metrics")[2]
    assert "# TYPE heal_dead_letters gauge" in text.splitlines()
    assert "heal_dead_letters_total" not in text
    samples = parse_exposition(text)
    assert samples[("heal_dead_letters", ())] == 10
    assert samples[("heal_dead_letter_last_timestamp_seconds", ())] == newest
    client.xtrim(dead, maxlen=5, approximate=False)
    client.xdel(dead, ids[-1])
    samples = parse_exposition(call(f"{base}/metrics")[2])
    assert samples[("heal_dead_letters", ())] == 4
    assert samples[("heal_dead_letter_last_timestamp_seconds", ())] == newest  # no new one
    later = client.xadd(dead, {"reason": "a new one"}, id=f"{int(newest * 1000) + 5000}-0")
    samples = parse_exposition(call(f"{base}/metrics")[2])
    assert samples[("heal_dead_letter_last_timestamp_seconds", ())] == _entry_ms(later) / 1000
    rules = (Path(__file__).resolve().parents[2] / "deploy" / "prometheus-rules.yaml").read_text()
    assert "time() - heal_dead_letter_last_timestamp_seconds < 900" in rules


def test_dead_letter_figures_cover_every_partition_and_the_plain_dead_stream(
        heal_env: dict[str, str], prefix: str, redis_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """QA s14d D3: with HEAL_PARTITIONS > 1 the newest dead letter's time was read from the
    plain dead stream only, which no stage writes then: a letter in a partition's dead stream
    never set it, and the HealDeadLetters alert never fired; heal_dead_letters left the plain
    stream's letters out. Both figures are now over every dead stream (the ones `heal explain
    --dead` lists): the total length, and the newest time across them."""
    monkeypatch.setenv("HEAL_PARTITIONS", "2")
    client = redis.Redis.from_url(redis_url)
    plain, first, second = f"{prefix}:dead", f"{prefix}:dead:{{0}}", f"{prefix}:dead:{{1}}"
    server, url = _start(Settings.from_env())
    try:
        old = client.xadd(plain, {"reason": "from before partitioning"}, id="1700000000000-0")
        a = client.xadd(first, {"reason": "partition 0"})
        samples = parse_exposition(call(f"{url}/metrics")[2])
        assert samples[("heal_dead_letters", ())] == 2
        assert samples[("heal_dead_letter_last_timestamp_seconds", ())] == _entry_ms(a) / 1000
        b = client.xadd(second, {"reason": "partition 1"}, id=f"{_entry_ms(a) + 5000}-0")
        client.xadd(second, {"reason": "partition 1, again"}, id=f"{_entry_ms(a) + 6000}-0")
        client.xdel(second, b)  # deleted: its count goes, the newest time stays the later one
        samples = parse_exposition(call(f"{url}/metrics")[2])
        assert samples[("heal_dead_letters", ())] == 3
        assert samples[("heal_dead_letter_last_timestamp_seconds", ())] == \
            (_entry_ms(a) + 6000) / 1000
        # the stream figure stays the partitions' sum, as `heal status` shows it
        assert samples[("heal_stream_length", (("stream", plain),))] == 2
        assert _entry_ms(old) / 1000 < samples[("heal_dead_letter_last_timestamp_seconds", ())]
    finally:
        server.shutdown()
        server.server_close()


def test_metrics_include_this_process_runtime_histogram(base: str) -> None:
    from pipeline.runtime.metrics import REGISTRY

    REGISTRY.observe_handle("servetest", 0.003)
    REGISTRY.observe_handle("servetest", 0.2)
    samples = parse_exposition(call(f"{base}/metrics")[2])
    bucket = "heal_handler_latency_seconds_bucket"
    assert samples[(bucket, (("le", "0.005"), ("stage", "servetest")))] >= 1
    assert samples[(bucket, (("le", "+Inf"), ("stage", "servetest")))] >= 2
    assert samples[("heal_handler_latency_seconds_count", (("stage", "servetest"),))] >= 2


def test_engines_down_answer_503_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEAL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HEAL_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("HEAL_DATABASE_URL", "postgresql://heal@127.0.0.1:1/heal")
    server, url = _start(Settings.from_env())
    try:
        for path in ("/api/breaker", "/api/patterns", "/api/approvals", "/metrics",
                     "/api/status"):
            status, ctype, body = call(url + path)
            assert (status, ctype) == (503, "application/json"), path
            text = json.dumps(body)
            assert "127.0.0.1:1" in text and "Traceback" not in text, path
    finally:
        server.shutdown()
        server.server_close()


def test_approve_applies_a_real_suggestion_and_reject_retires_one(
        base: str, tmp_path: Path, heal_env: dict[str, str]) -> None:
    from pipeline.demo.sample import git
    from pipeline.validate.runner import run_argv
    from tests.integration._heal_validate_support import suggested_format_fix

    s = suggested_format_fix(tmp_path, heal_env["HEAL_REDIS_URL"], "s")
    settings, client, db, store = s.settings, s.client, s.db, s.store
    fix_id, root, verdict = s.fix_id, s.root, s.verdict

    # SAFE suggestions are listed when asked for; the default lists MODERATE and RISKY only
    _, _, body = call(f"{base}/api/approvals?category=SAFE")
    [pending] = [a for a in body["approvals"] if a["fix_id"] == fix_id]
    assert pending["id"] == verdict.error_id and pending["category"] == "SAFE"
    _, _, body = call(f"{base}/api/approvals")
    assert body["categories"] == ["MODERATE", "RISKY"]
    assert all(a["fix_id"] != fix_id for a in body["approvals"])

    head = git(root, "rev-parse", "HEAD")
    # while another request applies it (its lock is held), a second approve is refused
    from pipeline.apply.decision_lock import lock_key

    lock = lock_key(settings, verdict.error_id)
    client.set(lock, b"1")
    status, _, body = call(f"{base}/api/approvals/{verdict.error_id}/approve", "POST")
    assert status == 409 and "being applied by another request" in body["error"]
    assert git(root, "rev-parse", "HEAD") == head
    client.delete(lock)

    # uncommitted work where the fix would land: refused (409), nothing touched, still waiting
    tracked = root / "shop" / "discount.py"  # the file the fix reformats
    mine = tracked.read_text()
    tracked.write_text(mine + "# my uncommitted work\n")
    status, _, body = call(f"{base}/api/approvals/{verdict.error_id}/approve", "POST")
    assert status == 409 and "was not applied" in body["error"] and "still waits" in body["error"]
    assert git(root, "rev-parse", "HEAD") == head
    assert tracked.read_text().endswith("# my uncommitted work\n")
    tracked.write_text(mine)

    status, _, body = call(f"{base}/api/approvals/{verdict.error_id}/approve", "POST")
    assert status == 200 and body["status"] == "applied", body
    assert git(root, "rev-parse", "HEAD") != head
    assert run_argv(["ruff", "format", "--check", "."], str(root), 60)["exit_code"] == 0
    status, _, body = call(f"{base}/api/approvals/{verdict.error_id}/approve", "POST")
    assert status == 409 and "already decided: applied" in body["error"]
    assert not client.exists(lock)  # released after applying

    # reject: a stored suggestion is retired and no longer listed
    other = f"it-{uuid.uuid4().hex[:10]}"
    store.record_attempt({"error_id": other, "fix_id": fix_id, "decision": "suggest",
                          "category": "RISKY", "verdict": verdict.encode().decode()})
    _, _, body = call(f"{base}/api/approvals?category=RISKY")
    assert any(a["id"] == other for a in body["approvals"])
    status, _, body = call(f"{base}/api/approvals/{other}/reject", "POST")
    assert status == 200 and body["status"] == "rejected"
    assert store.apply_result(other)["status"] == "rejected"
    _, _, body = call(f"{base}/api/approvals?category=RISKY")
    assert all(a["id"] != other for a in body["approvals"])
    status, _, _ = call(f"{base}/api/approvals/{other}/approve", "POST")
    assert status == 409
    db.close()


def test_explain_route(base: str) -> None:
    status, _, body = call(f"{base}/api/explain/fp-v1:{uuid.uuid4().hex[:16]}")
    assert status == 404 and "no record of fingerprint" in body["error"]
    status, _, body = call(f"{base}/api/explain/%20")
    assert status == 400 and "give a fingerprint" in body["error"]


def test_explain_a_recorded_fingerprint(base: str, rows: dict[str, str]) -> None:
    # the issue queue row is a record of the fingerprint: explain finds it
    status, _, body = call(f"{base}/api/explain/{rows['fine']}")
    assert status == 200, body
    assert rows["fine"] in json.dumps(body)


def test_explain_route_explains_a_dead_lettered_error_id_as_heal_explain_does(
        base: str, heal_env: dict[str, str]) -> None:
    """``GET /api/explain`` read PostgreSQL only: an error the pipeline dead-lettered was a
    404 there while ``heal explain`` told its dead letter. Both read the streams now."""
    from pipeline.runtime.drain import drain_inline

    settings = Settings.from_env()
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    error_id = f"dead-{uuid.uuid4().hex[:12]}"
    client.xadd(settings.stream("errors"), {"event": json.dumps({"v": 1, "id": error_id})})
    drain_inline(settings, client, stages=["fingerprint"])
    status, _, body = call(f"{base}/api/explain/{error_id}")
    assert status == 200, body
    assert body["level"] == "dead-lettered" and body["problems"] == []
    (letter,) = body["dead_letters"]
    assert letter["error_id"] == error_id and letter["stage"] == "fingerprint"


def test_metrics_report_is_heal_metrics_json(base: str, rows: dict[str, str]) -> None:
    status, _, body = call(f"{base}/api/metrics?window=24h")
    assert status == 200, body
    assert list(body["windows"]) == ["24h"] and body["problems"] == []
    day = body["windows"]["24h"]
    assert {"detection_rate", "auto_fix_rate", "success_rate", "top_errors"} <= set(day)
    status, _, body = call(f"{base}/api/metrics")
    assert status == 200 and set(body["windows"]) == {"24h", "7d", "30d"}
    status, _, body = call(f"{base}/api/metrics?window=1y")
    assert status == 400 and "24h, 7d, 30d" in body["error"]


def test_fingerprints_and_learning(base: str, rows: dict[str, str]) -> None:
    status, _, body = call(f"{base}/api/fingerprints?limit=3")
    assert status == 200
    top = body["fingerprints"][0]  # the test fingerprint has the most hits
    assert (top["fingerprint"], top["level"], top["pattern_id"]) == (
        rows["fine"], "fine", rows["pattern"])
    status, _, body = call(f"{base}/api/learning?limit=10000")
    assert status == 200 and isinstance(body["learnings"], list)
    [mine] = [t for t in body["transitions"] if t["fix_id"] == rows["fix"]]
    assert (mine["src"], mine["dst"], mine["reason"]) == (
        "ACTIVE", "QUARANTINED", "rolled back in a test")


def test_workflow_states_in_status_and_metrics(base: str, redis_url: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import main
    from pipeline.guardrails.execution import ExecutionGuard

    # Given workflow "nightly" quarantined by ten failing steps
    guard = ExecutionGuard(redis.Redis.from_url(redis_url), Settings.from_env())
    for i in range(10):
        guard.on_step_result("nightly", "test", False, f"kind-{i}")
    status, _, body = call(f"{base}/api/status")
    (row,) = [w for w in body["execution"]["workflows"] if w["workflow"] == "nightly"]
    assert row["state"] == "QUARANTINED" and "10 failures" in row["reason"]
    assert body["execution"]["counts"]["QUARANTINED"] == 1
    assert main(["status"]) in (0, 1)
    assert "nightly: QUARANTINED since" in capsys.readouterr().out
    samples = parse_exposition(call(f"{base}/metrics")[2])
    assert samples[("heal_workflow_state", (("state", "QUARANTINED"),
                                            ("workflow", "nightly")))] == 1
    assert samples[("heal_workflows", (("state", "QUARANTINED"),))] == 1
