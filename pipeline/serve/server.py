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


class HealServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: Api) -> None:
        self.api = api  # before binding: a failed bind calls server_close()
        super().__init__(address, Handler)

    def server_close(self) -> None:
        super().server_close()
        self.api.engines.close()


class Handler(BaseHTTPRequestHandler):
    server: HealServer
    server_version = "heal-serve"
    protocol_version = "HTTP/1.1"

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(error_response(413, f"request body over {MAX_BODY} bytes"), method)
            return
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
