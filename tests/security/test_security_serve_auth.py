"""Attack 4: ``heal serve`` without authentication. Every POST needs the approver's bearer
token (any X-Requested-By is not enough, nor is ``force=1``); viewers may only GET; off
loopback every request needs a token and the Host header is still checked; a 401/403 says
how to get a token. Real HTTP against the real embedded engines."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from pipeline.config import Settings
from pipeline.serve.auth import load_tokens
from pipeline.serve.server import make_server
from tests.integration.test_serve_api import call


def _serve(host: str) -> Iterator[str]:
    server = make_server(Settings.from_env(), host, 0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                     daemon=True).start()
    yield f"http://{host}:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def loopback(heal_env: dict[str, str]) -> Iterator[str]:
    yield from _serve("127.0.0.1")


@pytest.fixture
def exposed(heal_env: dict[str, str]) -> Iterator[str]:
    """Bound to another address than the loopback names (as with --host 0.0.0.0)."""
    yield from _serve("127.0.0.2")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_approving_needs_the_approver_token(loopback: str,
                                            caplog: pytest.LogCaptureFixture) -> None:
    tokens = load_tokens(Settings.from_env())
    url = f"{loopback}/api/approvals/some-error/approve?force=1"
    for headers in ({"X-Requested-By": "heal"}, {"X-Requested-By": "anything"},
                    bearer("guessed-token-guessed-token")):
        status, _, body = call(url, "POST", headers=headers)
        assert status == 401, body
        assert "approver token" in body["error"] and "approver.token" in body["error"]
    status, _, body = call(url, "POST", headers=bearer(tokens.viewer))
    assert status == 403 and "approver role" in body["error"]
    # the approver passes the guard (and gets the route's own answer: no such attempt)
    status, _, body = call(url, "POST", headers=bearer(tokens.approver))
    assert status == 404, body
    assert any("refused POST" in r.getMessage() for r in caplog.records)
    # the token files are private
    home = Settings.from_env().home / "serve"
    assert oct((home / "approver.token").stat().st_mode & 0o777) == "0o600"
    # GETs on loopback stay open for the operator's own browser
    assert call(f"{loopback}/api/breaker")[0] == 200


def test_off_loopback_every_request_needs_a_token_and_the_host_is_checked(
        exposed: str) -> None:
    tokens = load_tokens(Settings.from_env())
    status, _, body = call(f"{exposed}/api/breaker")
    assert status == 401 and "viewer.token" in body["error"]
    assert call(f"{exposed}/api/breaker", headers=bearer(tokens.viewer))[0] == 200
    assert call(f"{exposed}/api/breaker", headers=bearer(tokens.approver))[0] == 200
    status, _, body = call(f"{exposed}/api/breaker",
                           headers={**bearer(tokens.viewer), "Host": "evil.example"})
    assert status == 403 and "is not this server" in body["error"]
    status, _, _ = call(f"{exposed}/api/approvals/x/reject", "POST",
                        headers=bearer(tokens.viewer))
    assert status == 403


def test_the_token_may_come_from_the_environment(heal_env: dict[str, str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEAL_SERVE_TOKEN", "an-operator-chosen-token-123")
    for base in _serve("127.0.0.1"):
        status, _, _ = call(f"{base}/api/approvals/x/approve", "POST",
                            headers=bearer("an-operator-chosen-token-123"))
        assert status == 404
        status, _, body = call(f"{base}/api/approvals/x/approve", "POST", headers={})
        assert status == 401 and "HEAL_SERVE_TOKEN" in body["error"]
