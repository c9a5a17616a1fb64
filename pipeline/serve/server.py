"""The HTTP layer: a ThreadingHTTPServer whose handler hands every request to :class:`Api`."""

from __future__ import annotations

import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pipeline.config import Settings
from pipeline.serve.api import Api, Response, error_response
from pipeline.serve.auth import (
    LOOPBACK_NAMES,
    Role,
    Tokens,
    allowed_hosts,
    how_to_get_a_token,
    load_tokens,
)
from pipeline.serve.auth import host_name as _host_name

log = logging.getLogger(__name__)

#: request bodies are not used by any route; refuse big ones instead of reading them
MAX_BODY = 64 * 1024


class HealServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: Api, tokens: Tokens,
                 allow_hosts: tuple[str, ...] = ()) -> None:
        self.api = api  # before binding: a failed bind calls server_close()
        self.tokens = tokens
        self.loopback = _host_name(address[0]) in LOOPBACK_NAMES
        self.hosts = allowed_hosts(address[0], allow_hosts)
        super().__init__(address, Handler)

    def server_close(self) -> None:
        super().server_close()
        self.api.engines.close()


class Handler(BaseHTTPRequestHandler):
    server: HealServer
    server_version = "heal-serve"
    protocol_version = "HTTP/1.1"

    def _refusal(self, method: str) -> Response | None:
        """403 for a Host this server is not (DNS rebinding), 401/403 without the token the
        request's role needs (pipeline.serve.auth), 413 for an oversized body."""
        host = _host_name(self.headers.get("Host", ""))
        if host not in self.server.hosts:
            where = ("use http://127.0.0.1:PORT (a loopback server answers only loopback "
                     "names)" if self.server.loopback else
                     "start heal serve with --allow-host NAME (or HEAL_SERVE_HOSTS) for the "
                     "name clients use")
            return error_response(403, f"Host {self.headers.get('Host')!r} is not this "
                                  f"server; {where}")
        needed = Role.VIEWER if method in ("GET", "HEAD") else Role.APPROVER
        if needed is Role.VIEWER and self.server.loopback:
            needed = Role.NONE  # the operator's own browser on this machine
        role = self.server.tokens.role(self.headers.get("Authorization"))
        if role < needed:
            status = 401 if role is Role.NONE else 403
            what = ("approving or rejecting needs the approver role" if needed is
                    Role.APPROVER else "this server is reachable from the network, so "
                    "every request needs a token")
            log.warning("heal serve: refused %s %s from %s (%s)", method, self.path[:200],
                        self.client_address[0], "no valid token" if status == 401
                        else "viewer token")
            response = error_response(status, f"{what}: "
                                      f"{how_to_get_a_token(self.server.tokens, needed)}")
            response.headers["WWW-Authenticate"] = 'Bearer realm="heal"'
            return response
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


def make_server(settings: Settings, host: str = "127.0.0.1", port: int = 8377,
                allow_hosts: tuple[str, ...] = ()) -> HealServer:
    """A bound (not yet serving) server; port 0 picks a free port (``server.server_port``).

    Raises OSError when the address cannot be bound, ConfigError when the tokens cannot be
    read or created.
    """
    return HealServer((host, port), Api(settings), load_tokens(settings), allow_hosts)
