"""The dashboard (``GET /``): self-contained (no external URL), and rendered by headless
Chromium against a server on the real embedded engines: the charts the JS builds are in the
DOM and the error banner shows the status problem the fixture made, and nothing else. Skipped when Chromium is not installed."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from pipeline.config import Settings
from pipeline.serve.server import make_server
from tests.integration.test_serve_api import rows  # noqa: F401 - a fixture used below

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             shutil.which("google-chrome")) if p), None)


@pytest.fixture
def base(heal_env: dict[str, str], redis_url: str, prefix: str) -> Iterator[str]:
    """A server over streams with a started consumer group and some lag."""
    client = redis.Redis.from_url(redis_url)
    for i in range(4):
        client.xadd(f"{prefix}:errors", {"event": json.dumps({"v": 1, "id": str(i), "text": "x"})})
    client.xgroup_create(f"{prefix}:errors", "fingerprint", id="0")
    client.xreadgroup("fingerprint", "w1", {f"{prefix}:errors": ">"}, count=1)
    server = make_server(Settings.from_env(), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                     daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_page_is_self_contained(base: str) -> None:
    with urllib.request.urlopen(base + "/", timeout=30) as resp:
        assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
        html = resp.read().decode()
    # no CDN, no external fonts or scripts: the only URL is the SVG namespace
    assert re.findall(r"https?://[^\"' )]+", html) == ["http://www.w3.org/2000/svg"]
    assert "<script src" not in html and "<link" not in html
    assert "innerHTML" not in html  # data from errors is untrusted; the JS uses textContent


def _chromium(args: list[str], url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=12000", *args, url],
        capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install "
                    "chromium); the dashboard's browser test needs it")
def test_dashboard_renders_charts_in_headless_chromium(
        base: str, tmp_path: Path, rows: dict[str, str],  # noqa: F811 - fixture
        redis_url: str) -> None:
    from pipeline.guardrails.execution import ExecutionGuard

    guard = ExecutionGuard(redis.Redis.from_url(redis_url), Settings.from_env())
    for i in range(10):  # a quarantined workflow, shown with its state
        guard.on_step_result("nightly", "test", False, f"kind-{i}")
    done = _chromium(["--dump-dom"], base + "/", tmp_path)
    dom = done.stdout
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'data-refreshed="' in dom, "the refresh never completed"
    # the error banner shows the one problem the fixture made (events wait on the errors
    # stream and no running worker serves stage fingerprint: /api/status answers 503 with
    # its body, still drawn), and nothing else: no other failed fetch, no drawing error
    banner = re.search(r'<div id="error-banner"([^>]*)>(.*?)</div>', dom, re.S)
    assert banner is not None and "visible" in banner[1], banner
    shown = [line for line in html.unescape(banner[2]).splitlines() if line.strip()]
    assert len(shown) == 1 and shown[0].startswith("/api/status: HTTP 503: "), shown
    assert "no worker serves stage fingerprint" in shown[0], shown
    # every chart the JS draws is there
    for chart in ("lag", "rates", "funnel", "windows"):
        assert f'data-chart="{chart}"' in dom, chart
    # the test pattern (the most frequent) is in the top errors
    assert 'data-chart="top"' in dom and f"<title>{rows['pattern']}</title>" in dom
    # after a few refreshes (virtual time) the rate chart has its three series
    for series in ("errors", "outcomes", "dead"):
        assert f'data-series="{series}"' in dom, series
    # the lag chart has the fingerprint group's bar with its lag (3 undelivered)
    assert re.search(r"<text[^>]*>fingerprint<title>", dom)
    assert 'class="bar" data-value="3"' in dom
    # every lifecycle state has its funnel bar; the breaker is shown as CLOSED
    for state in ("DRAFT", "ACTIVE", "AUTOMATED", "DEPRECATED", "QUARANTINED"):
        assert f'data-state="{state}"' in dom
    assert re.search(r'data-state="ACTIVE" data-value="[1-9]', dom)
    for window in ("24h", "7d", "30d"):
        assert f'data-window="{window}" data-rate="success_rate"' in dom
    assert 'id="breaker-badge" class="badge CLOSED"' in dom
    assert 'data-workflow="nightly" data-state="QUARANTINED"' in dom
    assert "heal unquarantine --workflow nightly</td>" in dom  # (the server's lift command)

    shot = tmp_path / "dashboard.png"
    done = _chromium([f"--screenshot={shot}", "--window-size=1280,1000"], base + "/", tmp_path)
    assert done.returncode == 0 and shot.stat().st_size > 10_000, done.stderr[-2000:]
    keep = Path("/tmp/heal-serve-dashboard.png")
    shutil.copy(shot, keep)  # for a person to look at after the run


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_dashboard_shows_the_banner_when_engines_are_down(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEAL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HEAL_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("HEAL_DATABASE_URL", "postgresql://heal@127.0.0.1:1/heal")
    server = make_server(Settings.from_env(), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dom = _chromium(["--dump-dom"], f"http://127.0.0.1:{server.server_port}/",
                        tmp_path).stdout
    finally:
        server.shutdown()
        server.server_close()
    banner = re.search(r'<div id="error-banner"([^>]*)>(.*?)</div>', dom, re.S)
    assert banner is not None and "visible" in banner[1]
    assert "HTTP 503" in banner[2] and "127.0.0.1:1" in banner[2]


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_off_loopback_the_dashboard_opens_with_its_token_in_the_fragment(
        heal_env: dict[str, str], tmp_path: Path) -> None:
    """Bound off loopback every data request needs a token, and a browser opening a URL
    cannot send one: the page itself is served without a token, reads it from #token= and
    sends it with each request. Without the fragment the page shows why it has no data."""
    from pipeline.serve.auth import load_tokens

    server = make_server(Settings.from_env(), "127.0.0.2", 0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                     daemon=True).start()
    url = f"http://127.0.0.2:{server.server_port}/"
    try:
        viewer = load_tokens(Settings.from_env()).viewer
        done = _chromium(["--dump-dom"], f"{url}#token={viewer}", tmp_path)
        dom = done.stdout
        assert done.returncode == 0, done.stderr[-2000:]
        banner = re.search(r'<div id="error-banner"([^>]*)>(.*?)</div>', dom, re.S)
        assert banner is not None and "visible" not in banner[1], banner
        assert 'data-refreshed="' in dom, "the refresh never completed"
        assert 'data-chart="funnel"' in dom and 'data-chart="windows"' in dom
        dom = _chromium(["--dump-dom"], url, tmp_path / "without").stdout
        banner = re.search(r'<div id="error-banner"([^>]*)>(.*?)</div>', dom, re.S)
        assert banner is not None and "visible" in banner[1]
        assert "HTTP 401" in banner[2] and "viewer.token" in banner[2]
    finally:
        server.shutdown()
        server.server_close()
