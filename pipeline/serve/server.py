"""The HTTP layer: a ThreadingHTTPServer whose handler hands every request to :class:`Api`."""

from __future__ import annotations

import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pipeline.config import Settings
from pipeline.serve.api import Api, Response, error_response

log = logging.getLogger(__name__)

#: request bodies are not used by any route; refuse big ones instead of reading them
MAX_BODY = 64 * 1024
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
#: header every POST must carry: a cross-site form or no-cors fetch cannot set it, so another
#: web page open in the operator's browser cannot approve a fix
CSRF_HEADER = "X-Requested-By"


def _host_name(host_header: str) -> str:
    """The host of a Host header without the port (``[::1]:80`` -> ``::1``)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class HealServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: Api) -> None:
        self.api = api  # before binding: a failed bind calls server_close()
        self.loopback = _host_name(address[0]) in LOOPBACK_NAMES
        super().__init__(address, Handler)

    def server_close(self) -> None:
        super().server_close()
        self.api.engines.close()


class Handler(BaseHTTPRequestHandler):
    server: HealServer
    server_version = "heal-serve"
    protocol_version = "HTTP/1.1"

    def _refusal(self, method: str) -> Response | None:
        """403 for a foreign Host on a loopback server (DNS rebinding) and for a POST without
        the CSRF header; 413 for an oversized body."""
        if self.server.loopback and _host_name(self.headers.get("Host", "")) not in \
                LOOPBACK_NAMES:
            return error_response(403, f"Host {self.headers.get('Host')!r} is not this "
                                  "server; use http://127.0.0.1:PORT (a loopback server "
                                  "answers only loopback names)")
        if method == "POST" and not self.headers.get(CSRF_HEADER):
            return error_response(403, f"POST needs the header '{CSRF_HEADER}: heal' "
                                  "(protection against cross-site requests)")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return error_response(400, "Content-Length is not a number")
        if length > MAX_BODY:
            return error_response(413, f"request body over {MAX_BODY} bytes")
        return None

    def _serve(self, method: str) -> None:
        refused = self._refusal(method)
        if refused is not None:
            self.close_connection = True  # the body, if any, was not read
            self._send(refused, method)
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)  # drained so a keep-alive connection stays in sync
        url = urlsplit(self.path)
        try:
            query = parse_qs(url.query, keep_blank_values=True, strict_parsing=False)
        except ValueError as exc:
            self._send(error_response(400, f"bad query string: {exc}"), method)
            return
        self._send(self.server.api.handle(method, url.path, query), method)

    def _send(self, response: Response, method: str) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(response.body)

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        self._serve("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._serve("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        log.info("%s %s", self.address_string(), format % args)


def make_server(settings: Settings, host: str = "127.0.0.1", port: int = 8377) -> HealServer:
    """A bound (not yet serving) server; port 0 picks a free port (``server.server_port``).

    Raises OSError when the address cannot be bound.
    """
    return HealServer((host, port), Api(settings))
