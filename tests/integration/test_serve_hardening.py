"""``heal serve`` started as a command, probed over raw sockets: request text never reaches
the operator's terminal raw, a token set in the environment with a trailing newline works,
malformed or repeated header framing is refused with 400, the URL printed for a wildcard bind
passes the Host check, and the HTML pages carry anti-framing and CSP headers. Real server,
real embedded engines."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.integration.test_serve_cli import HEAL, stop_or_show_stacks
from tests.integration.test_serve_protocol import exchange, one_json_error, responses


class Serve:
    """A running ``heal serve``: its port, the URLs it printed, and (after :meth:`stop`)
    the rest of its stderr."""

    def __init__(self, proc: subprocess.Popen[str], head: list[str]) -> None:
        self.proc = proc
        self.head = head
        self.urls = re.findall(r"http://(\S+?)/", "".join(head))
        self.port = int(re.findall(r":(\d+)/", "".join(head))[0])
        self.rest = ""

    def stop(self) -> str:
        self.rest = stop_or_show_stacks(self.proc, signal.SIGTERM)
        return self.rest


@contextmanager
def serve(*args: str, env: dict[str, str] | None = None) -> Iterator[Serve]:
    proc = subprocess.Popen([*HEAL, "serve", "--port", "0", *args], stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})})
    try:
        assert proc.stderr is not None
        head: list[str] = []
        while not any("#token=" in line for line in head):
            line = proc.stderr.readline()
            assert line, f"heal serve ended: {''.join(head)}{proc.communicate()[1]}"
            head.append(line)
        yield Serve(proc, head)
    finally:
        if proc.poll() is None:
            stop_or_show_stacks(proc, signal.SIGTERM)


def test_request_text_in_the_log_is_shown_visibly_and_cut(heal_env: dict[str, str]) -> None:
    """The access log and the "refused" warning once wrote the request path raw: anyone
    reaching the port could retitle or clear the operator's terminal (ESC, BEL) or forge a
    log line (CR). Every request-derived text is now shown with \\xNN escapes and cut."""
    with serve() as srv:
        port = srv.port
        for target in (b"/\x1b]0;PWNED\x07\x1b[2J\x1b[31mRED\x1b[0m",
                       b"/api/explain/abc\rFAKE", b"/" + b"a" * 9000):
            exchange(port, b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Connection: close\r\n\r\n")
        exchange(port, b"POST /api/approvals/\x1b[31mX\x1b[0m/approve HTTP/1.1\r\n"
                 b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n")
        exchange(port, b"GET /\x1b[2J HTTP/1.1\x1b\r\nHost: 127.0.0.1\r\n\r\n")  # a 400
        log = srv.stop()
    for byte in ("\x1b", "\x07", "\r"):
        assert byte not in log, repr(log[-3000:])
    assert "\\x1b]0;PWNED\\x07\\x1b[2J" in log, log[-3000:]
    assert "abc\\x0dFAKE" in log and "refused POST /api/approvals/\\x1b[31mX" in log, log
    assert max(len(line) for line in log.splitlines()) < 700, "a log line was not cut"


def test_a_token_from_the_environment_is_trimmed_like_the_file_token(
        heal_env: dict[str, str]) -> None:
    """A HEAL_SERVE_TOKEN ending in a newline (a Kubernetes secret, a .env file) was
    accepted at start, but no request could match it: every POST got 401."""
    token = "Abcdefghijklmnop12"
    for value in (token + "\n", f"  {token}  "):
        with serve(env={"HEAL_SERVE_TOKEN": value}) as srv:
            raw = exchange(srv.port, b"POST /api/approvals/nope/reject HTTP/1.1\r\nHost: "
                           b"127.0.0.1\r\nAuthorization: Bearer " + token.encode() +
                           b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            assert responses(raw)[0][0] == 404, raw  # the token is the approver's
    # the strength checks look at the trimmed value: 8 characters and spaces are too short
    done = subprocess.run([*HEAL, "serve", "--port", "0"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "HEAL_SERVE_TOKEN": "abcdefgh" + " " * 10})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "HEAL_SERVE_TOKEN is 8 characters; use at least 16" in done.stderr, done.stderr


def test_whitespace_before_a_header_colon_is_refused(heal_env: dict[str, str]) -> None:
    """``Content-Length : N`` was ignored and its body answered as a second request (RFC 9112
    §5.1: such a request must get 400)."""
    smuggled = b"GET /api/approvals?category=SAFE HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with serve() as srv:
        for header in (b"Content-Length : %d" % len(smuggled),
                       b"Transfer-Encoding\t: chunked"):
            raw = exchange(srv.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + header +
                           b"\r\n\r\n" + smuggled)
            error = one_json_error(raw, 400)["error"]
            assert "before its colon" in error, error


def test_two_host_headers_are_refused(heal_env: dict[str, str]) -> None:
    with serve() as srv:
        for first, second in ((b"127.0.0.1", b"evil.example"), (b"evil.example", b"127.0.0.1")):
            raw = exchange(srv.port, b"GET /healthz HTTP/1.1\r\nHost: " + first +
                           b"\r\nHost: " + second + b"\r\n\r\n")
            assert "more than one Host" in one_json_error(raw, 400)["error"]


@pytest.mark.parametrize("bind", ["0.0.0.0", "::"])
def test_the_url_printed_for_a_wildcard_bind_passes_the_host_check(
        heal_env: dict[str, str], bind: str) -> None:
    """``--host 0.0.0.0`` printed http://0.0.0.0:PORT/#token=..., which the Host check
    refuses; the URLs printed now name this machine, and the 403 lists what is accepted."""
    if ":" in bind and not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    with serve("--host", bind) as srv:
        assert srv.urls, srv.head
        assert not any(h.startswith(("0.0.0.0", "[::]")) for h in srv.urls), srv.head
        for host in srv.urls:
            name = host.rsplit(":", 1)[0].strip("[]")
            # connect to the printed address itself; a name may not resolve here, so to
            # loopback with that name as Host
            target = name if re.fullmatch(r"[0-9.]+|[0-9a-f:]+", name) else "127.0.0.1"
            raw = exchange(srv.port, f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close"
                           "\r\n\r\n".encode(), host=target)
            assert responses(raw)[0][0] == 200, (host, raw[:300])
        raw = exchange(srv.port, b"GET / HTTP/1.1\r\nHost: 0.0.0.0\r\n\r\n")
        error = one_json_error(raw, 403)["error"]
        assert socket.gethostname().lower() in error and "localhost" in error, error
        assert "--allow-host" in error


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_html_pages_cannot_be_framed_and_run_only_their_own_script(
        heal_env: dict[str, str]) -> None:
    with serve() as srv:
        for path in ("/", "/report"):
            raw = exchange(srv.port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           "Connection: close\r\n\r\n".encode())
            status, headers, page = responses(raw)[0]
            assert status == 200 and headers["content-type"].startswith("text/html"), raw[:300]
            assert headers["x-frame-options"] == "DENY", headers
            assert headers["referrer-policy"] == "no-referrer", headers
            csp = dict((d.strip().split(" ", 1) + [""])[:2]
                       for d in headers["content-security-policy"].split(";"))
            assert csp["frame-ancestors"] == "'none'" and csp["default-src"] == "'none'", csp
            assert csp["base-uri"] == "'none'" and csp["form-action"] == "'none'", csp
            assert "unsafe" not in headers["content-security-policy"], csp
            for tag, directive in (("script", "script-src"), ("style", "style-src")):
                for block in re.findall(rf"<{tag}>(.*?)</{tag}>", page, re.S):
                    assert _sha256(block) in csp[directive], (path, tag)
            assert "style=" not in page  # style attributes would need 'unsafe-inline'
