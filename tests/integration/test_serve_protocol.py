"""``heal serve`` against a hostile HTTP client, over raw sockets (what curl or urllib would
tidy up): every error is JSON ``{error, status}`` and closes the connection when a body was
left unread, the method is checked before the token, chunked bodies are refused (never parsed
as the next request), slow clients are cut off and connections are capped, IPv6 addresses
work. Real server, real embedded engines."""

from __future__ import annotations

import json
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pipeline.config import Settings
from pipeline.serve.auth import load_tokens
from pipeline.serve.server import MAX_BODY, HealServer, make_server


def _run(server: HealServer) -> HealServer:
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                     daemon=True).start()
    return server


@pytest.fixture
def server(heal_env: dict[str, str]) -> Iterator[HealServer]:
    srv = _run(make_server(Settings.from_env(), "127.0.0.1", 0))
    yield srv
    srv.shutdown()
    srv.server_close()


def exchange(port: int, data: bytes, host: str = "127.0.0.1", wait: float = 30) -> bytes:
    """Send ``data`` and read until the server closes the connection (fails after ``wait``
    seconds: the server must close it, not leave it hanging)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(wait)
        sock.connect((host, port))
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
        except TimeoutError:
            pytest.fail(f"the server left the connection open; got {b''.join(chunks)!r}")
    return b"".join(chunks)


def responses(raw: bytes) -> list[tuple[int, dict[str, str], Any]]:
    """Each HTTP response in ``raw``: (status, headers lower-cased, body: JSON decoded)."""
    out = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        assert sep, raw
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        body, raw = rest[:length], rest[length:]
        ctype = headers.get("content-type", "")
        out.append((status, headers, json.loads(body) if ctype == "application/json"
                    else body.decode()))
    return out


def one_json_error(raw: bytes, status: int) -> dict[str, Any]:
    """Exactly one response, a JSON error with ``status``, and the connection closed."""
    answers = responses(raw)
    assert len(answers) == 1, answers
    got, headers, body = answers[0]
    assert got == status, answers
    assert headers["content-type"] == "application/json", headers
    assert isinstance(body, dict) and body["status"] == status and body["error"], body
    assert headers.get("connection") == "close", headers
    return {"headers": headers, **body}


def _approver() -> str:
    return load_tokens(Settings.from_env()).approver


def test_every_protocol_error_is_json_and_closes_the_connection(server: HealServer) -> None:
    port = server.server_port
    auth = f"Authorization: Bearer {_approver()}\r\n"
    post = f"POST /api/approvals/x/reject HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}"
    # Content-Length: negative (once a traceback and no answer at all), not a number, twice
    for length, words in ((b"Content-Length: -5", "is not a number"),
                          (b"Content-Length: 5x", "is not a number"),
                          (b"Content-Length: +5", "is not a number"),
                          (b"Content-Length: 1\r\nContent-Length: 1", "more than one")):
        body = one_json_error(exchange(port, post.encode() + length + b"\r\n\r\nx"), 400)
        assert words in body["error"], body
    body = one_json_error(exchange(port, post.encode() + f"Content-Length: {MAX_BODY + 1}"
                                   "\r\n\r\n".encode()), 413)
    assert "65536" in body["error"]
    # what http.server answers by itself: a request line over 64 KiB, a header line over
    # 64 KiB, over 100 headers, a malformed request line, an unknown HTTP version
    body = one_json_error(exchange(port, b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n"), 414)
    assert "shorten the URL" in body["error"]
    big = b"X-Big: " + b"a" * 70_000 + b"\r\n"
    body = one_json_error(exchange(port, b"GET /api/status HTTP/1.1\r\n" + big + b"\r\n"), 431)
    assert "request headers too large" in body["error"]
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(120))
    body = one_json_error(exchange(port, b"GET /api/status HTTP/1.1\r\n" + many + b"\r\n"), 431)
    assert "100 headers" in body["error"]
    one_json_error(exchange(port, b"GET\r\n\r\n"), 400)
    assert "HTTP/0.9" in one_json_error(exchange(port, b"GET /\r\n\r\n"), 400)["error"]
    one_json_error(exchange(port, b"GET / HTTP/3.7\r\nHost: 127.0.0.1\r\n\r\n"), 505)
    # an absolute target the URL parser refuses
    one_json_error(exchange(port, b"GET http://[::1/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"), 400)


def test_methods_are_checked_before_the_token(server: HealServer) -> None:
    port = server.server_port
    for method in ("OPTIONS", "PATCH", "TRACE", "DELETE", "PUT", "BREW", "get"):
        request = f"{method} /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        body = one_json_error(exchange(port, request), 405)
        assert body["headers"]["allow"] == "GET, HEAD", body
        assert "only GET" in body["error"], body
    # the approvals route answers POST only; an unknown path any of the server's methods
    body = one_json_error(exchange(
        port, b"DELETE /api/approvals/x/approve HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"), 405)
    assert body["headers"]["allow"] == "POST" and "use POST" in body["error"]
    body = one_json_error(exchange(
        port, b"OPTIONS /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"), 405)
    assert body["headers"]["allow"] == "GET, HEAD, POST"
    body = one_json_error(exchange(port, b"OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"), 405)


def test_a_chunked_body_is_refused_and_never_read_as_the_next_request(
        server: HealServer) -> None:
    """Behind a proxy that forwards chunked bodies, chunk data read as the next request of a
    kept-alive connection would be a request the proxy never saw (request smuggling)."""
    port = server.server_port
    smuggled = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    chunk = b"%x\r\n%s\r\n0\r\n\r\n" % (len(smuggled), smuggled)
    for target in (b"/api/approvals/x/reject", b"/api/status"):
        raw = exchange(port, b"POST " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       b"Authorization: Bearer " + _approver().encode() + b"\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n" + chunk)
        assert b'"ok"' not in raw  # /healthz was never answered
        body = one_json_error(raw, 405 if target == b"/api/status" else 411)
        assert target == b"/api/status" or "Content-Length" in body["error"]
    # an error answered before a Content-Length body is read closes the connection too
    raw = exchange(port, b"POST /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: "
                   b"%d\r\n\r\n%s" % (len(smuggled), smuggled))
    one_json_error(raw, 405)
    raw = exchange(port, b"POST /api/approvals/x/reject HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (len(smuggled), smuggled))
    assert one_json_error(raw, 401)
    # a body that is read keeps the connection in sync: the next request is answered
    raw = exchange(port, b"POST /api/approvals/nope/reject HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   b"Authorization: Bearer " + _approver().encode() + b"\r\n"
                   b"Content-Length: 5\r\n\r\nhello" + smuggled[:-2] +
                   b"Connection: close\r\n\r\n")
    answers = responses(raw)
    assert [a[0] for a in answers] == [404, 200], answers
    assert answers[1][2] == {"ok": True}


def _open(port: int, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(data)
    return sock


def _wait(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def served_connections(port: int, source: str = "127.0.0.1") -> tuple[int, int]:
    """(``heal_serve_connections``, ``heal_serve_connections_max``) of a ``/metrics`` scrape
    (the scrape's own connection is one of them), from the address ``source``."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    raw = b""
    while chunk := sock.recv(65536):
        raw += chunk
    sock.close()
    text = raw.decode()
    assert text.startswith("HTTP/1.1 200"), text[:300]
    found = dict(re.findall(r"^(heal_serve_connections(?:_max)?) (\d+)$", text, re.M))
    return int(found["heal_serve_connections"]), int(found["heal_serve_connections_max"])


def test_slow_clients_are_cut_off_and_connections_are_capped(heal_env: dict[str, str]) -> None:
    """A slowloris: connections that never finish their headers (silent, or one byte at a
    time) once held a thread each forever. Each now has a deadline for its whole request
    (1.5 s here, REQUEST_TIMEOUT = 20 s by default) and at most max_connections are served
    at once (4 here): the next one is answered 503 at once."""
    server = _run(make_server(Settings.from_env(), "127.0.0.1", 0, request_timeout=1.5,
                              max_connections=4))
    port = server.server_port
    partial = b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    silent: list[socket.socket] = []
    trickler: socket.socket | None = None
    stop = threading.Event()
    try:
        silent = [_open(port, partial) for _ in range(3)]
        trickler = slow = _open(port, b"G")

        def trickle() -> None:  # a byte every 0.2 s, so a per-read timeout never fires,
            # until the server answers (sending on would make it reset the connection)
            for byte in (partial[1:] * 100)[:1000]:
                if stop.is_set() or select.select([slow], [], [], 0.2)[0]:
                    return
                slow.sendall(bytes([byte]))

        threading.Thread(target=trickle, daemon=True).start()
        assert _wait(lambda: server.open_connections == 4, 20), server.open_connections
        started = time.monotonic()
        # the fifth connection: 503 JSON at once, closed
        body = one_json_error(exchange(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1"
                                       b"\r\n\r\n"), 503)
        assert "4 connections" in body["error"] and body["headers"]["retry-after"] == "1"
        # every slow connection is answered 408 and closed after its deadline
        for sock in [*silent, slow]:
            raw = b""
            sock.settimeout(30)
            while chunk := sock.recv(65536):
                raw += chunk
            assert one_json_error(raw, 408)["error"].startswith("the request did not arrive")
        waited = time.monotonic() - started
        assert waited < 15, waited  # 1.5 s plus a loaded machine's slack; never forever
        assert _wait(lambda: server.open_connections == 0, 20), server.open_connections
        # what an operator sees: only the scrape's own connection, of at most 4
        assert served_connections(port) == (1, 4)
        # and the server answers again
        answers = responses(exchange(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                     b"Connection: close\r\n\r\n"))
        assert answers[0][:1] == (200,) and answers[0][2] == {"ok": True}
        # an idle kept-alive connection is closed without a word after its deadline
        sock = _open(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        sock.settimeout(30)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
        sock.close()
        assert [a[0] for a in responses(raw)] == [200]
    finally:
        stop.set()
        for sock in silent:
            sock.close()
        if trickler is not None:
            trickler.close()
        server.shutdown()
        server.server_close()


def test_one_client_cannot_hold_every_connection(heal_env: dict[str, str]) -> None:
    """A slowloris from one address once took all 64 slots for 20 s at a time: one client
    address is now served at most max_per_client connections at once (3 here), and the
    others still get in."""
    server = _run(make_server(Settings.from_env(), "127.0.0.1", 0, request_timeout=30,
                              max_connections=8, max_per_client=3))
    port = server.server_port
    partial = b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    held = [_open(port, partial) for _ in range(3)]
    try:
        assert _wait(lambda: server.open_connections == 3, 20), server.open_connections
        body = one_json_error(exchange(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1"
                                       b"\r\n\r\n"), 503)
        assert "3 connections from your address" in body["error"], body
        # /metrics, scraped from another address, shows them (and the scrape itself)
        assert served_connections(port, "127.0.0.2") == (4, 8)
        # another address (127.0.0.2 is loopback too) is served meanwhile
        other = socket.create_connection(("127.0.0.1", port), timeout=30,
                                         source_address=("127.0.0.2", 0))
        other.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := other.recv(65536):
            raw += chunk
        other.close()
        assert responses(raw)[0][:1] == (200,)
        # once one of the first client's connections ends, it is served again
        held.pop().close()
        assert _wait(lambda: server.open_connections == 2, 20), server.open_connections
        answers = responses(exchange(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                     b"Connection: close\r\n\r\n"))
        assert answers[0][:1] == (200,)
    finally:
        for sock in held:
            sock.close()
        server.shutdown()
        server.server_close()


def test_heal_serve_refuses_a_bad_max_per_client(
        heal_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import main

    assert main(["serve", "--port", "0", "--max-per-client", "-1"]) == 2
    assert "--max-per-client -1: use 0..64" in capsys.readouterr().err


def test_closing_the_server_ends_connections_waiting_for_a_request(
        heal_env: dict[str, str]) -> None:
    """SIGTERM closes the server, which waits for its connections' threads: one waiting for
    its headers must not hold the exit for its whole deadline."""
    server = _run(make_server(Settings.from_env(), "127.0.0.1", 0))
    sock = _open(server.server_port, b"GET /api/status HTTP/1.1\r\n")
    assert _wait(lambda: server.open_connections == 1, 20)
    started = time.monotonic()
    server.shutdown()
    server.server_close()
    assert time.monotonic() - started < 10  # not REQUEST_TIMEOUT (20 s)
    sock.close()


def test_ipv6_loopback(heal_env: dict[str, str]) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    server = _run(make_server(Settings.from_env(), "[::1]", 0))
    try:
        assert server.loopback
        port = server.server_port
        for host in (f"[::1]:{port}", "localhost", "127.0.0.1"):
            raw = exchange(port, f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close"
                           "\r\n\r\n".encode(), host="::1")
            assert responses(raw)[0][:1] == (200,), (host, raw)
        raw = exchange(port, b"GET /healthz HTTP/1.1\r\nHost: evil.example\r\n\r\n", host="::1")
        assert "is not this server" in one_json_error(raw, 403)["error"]
    finally:
        server.shutdown()
        server.server_close()


def test_the_address_a_client_connected_to_is_accepted_as_host(
        heal_env: dict[str, str]) -> None:
    """Bound to every address (0.0.0.0), the server answers a Host that is the very address of
    this machine the client connected to (an address cannot be rebound by DNS); any other
    name still needs --allow-host, and the 403 says so."""
    server = _run(make_server(Settings.from_env(), "0.0.0.0", 0))
    viewer = load_tokens(Settings.from_env()).viewer
    try:
        port = server.server_port
        ask = ("GET /api/breaker HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer "
               f"{viewer}\r\nConnection: close\r\n\r\n")
        raw = exchange(port, ask.format(host=f"127.0.0.2:{port}").encode(), host="127.0.0.2")
        assert responses(raw)[0][0] == 200, raw
        for host in ("127.0.0.3", "evil.example"):
            raw = exchange(port, ask.format(host=host).encode(), host="127.0.0.2")
            error = one_json_error(raw, 403)["error"]
            assert "is not this server" in error and "--allow-host" in error
    finally:
        server.shutdown()
        server.server_close()


def test_the_dashboard_page_needs_no_token_off_loopback_but_its_data_does(
        heal_env: dict[str, str]) -> None:
    """A browser opening http://HOST:PORT/#token=... cannot send a bearer header; the page
    (no data in it) is served, and every data request it makes carries the token."""
    server = _run(make_server(Settings.from_env(), "127.0.0.2", 0))
    try:
        port = server.server_port
        ask = "GET {path} HTTP/1.1\r\nHost: 127.0.0.2:{port}\r\nConnection: close\r\n\r\n"
        raw = exchange(port, ask.format(path="/", port=port).encode(), host="127.0.0.2")
        status, headers, page = responses(raw)[0]
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert re.search(r"Authorization.*Bearer", page)
        for path in ("/api/breaker", "/api/status", "/report", "/metrics"):
            raw = exchange(port, ask.format(path=path, port=port).encode(), host="127.0.0.2")
            assert "viewer.token" in one_json_error(raw, 401)["error"], path
    finally:
        server.shutdown()
        server.server_close()
