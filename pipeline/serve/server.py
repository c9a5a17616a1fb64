"""The HTTP layer: a ThreadingHTTPServer whose handler hands every request to :class:`Api`.

Anything that can write to the port may be hostile, so the protocol layer is strict and every
answer, also the ones ``http.server`` itself makes (bad request line, 414, 431, 505), is the
API's JSON ``{"error", "status"}``:

- the method is checked before the token: 405 with ``Allow`` for a method the path does not
  answer (OPTIONS, PATCH, TRACE, DELETE or any unknown verb);
- a body is framed by one plain ``Content-Length`` only (at most :data:`MAX_BODY`): a negative,
  non-numeric or repeated one is 400, ``Transfer-Encoding`` (chunked) is 411; a header line
  that is not ``Name: value`` (whitespace before the colon) and a second ``Host`` are 400
  (RFC 9112 §5.1, §3.2); every error answered before the body was read closes the
  connection, so unread bytes are never taken for the next request of a kept-alive
  connection;
- a client has :data:`REQUEST_TIMEOUT` seconds to send a whole request (a deadline, not a
  per-read timeout: a client trickling one byte at a time is cut off too), and at most
  :data:`MAX_CONNECTIONS` connections are served at once (one thread each); the next one is
  answered 503 and closed, so a slowloris cannot exhaust the threads;
- request text in a log line goes through :func:`shown` (control characters as ``\\xNN``, cut);
- every answer says it must not be framed and sends no referrer (an HTML page's CSP allows its
  own inline code by hash: :mod:`pipeline.serve.dashboard`).
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import logging
import re
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pipeline.config import Settings
from pipeline.console import visible
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

#: paths a GET (or HEAD) may ask for without a token off loopback too (the Host check still
#: applies): the dashboard page (HTML, CSS and JS, no data) and the liveness/readiness check
#: (always ``{"ok": true}``, reads no engine and no state)
OPEN_PATHS = frozenset({"/", "/healthz"})
#: request bodies are not used by any route; refuse big ones instead of reading them
MAX_BODY = 64 * 1024
#: seconds a client has to send one whole request (request line, headers, body) from the
#: moment the server waits for it, also the idle time allowed between two requests of a
#: kept-alive connection; then the connection is closed
REQUEST_TIMEOUT = 20.0
#: connections served at once, one thread each; one more is answered 503 and closed
MAX_CONNECTIONS = 64
#: connections served at once for one client address (a quarter of the whole, so one client
#: cannot hold every slot); one more from it is answered 503 too. 0: no such limit (behind a
#: reverse proxy every client has the proxy's address)
MAX_PER_CLIENT = 16
#: seconds a refused connection (503, over MAX_CONNECTIONS) is kept half-open so that its
#: client reads the answer, and how many such connections are kept at most
LINGER = 2.0
LINGERING = 256
#: every method some route answers (the others are 405 everywhere)
METHODS = ("GET", "HEAD", "POST")
_LENGTH = re.compile(r"[0-9]{1,18}")
#: the Content-Security-Policy of an answer that is no HTML page (JSON, metrics, text)
_NO_CONTENT_POLICY = ("default-src 'none'; base-uri 'none'; form-action 'none'; "
                      "frame-ancestors 'none'")
#: characters of request-derived text (a path, a request line) a log line shows at most
LOG_TEXT = 300
#: clearer words for the errors http.server answers by itself
_STDLIB_ERRORS: dict[int, str] = {
    HTTPStatus.REQUEST_URI_TOO_LONG: "request line over 65536 bytes; shorten the URL",
    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE: "request headers too large",
}


def shown(text: str, limit: int = LOG_TEXT) -> str:
    """Request-derived ``text`` for a log line: control and bidi characters as ``\\xNN``
    (:func:`pipeline.console.visible`: a client must not move the operator's cursor, retitle
    or clear the terminal, or forge a log line with CR), at most ``limit`` characters."""
    out = visible(text[:limit])
    if len(out) > limit or len(text) > limit:
        out = f"{out[:limit]}...({len(text)} characters)"
    return out


class _DeadlineReader(io.RawIOBase):
    """The socket's read side with a deadline for the whole request: each read waits at most
    until ``deadline``. (A socket timeout alone starts again with every byte received, so a
    client sending a byte every few seconds would hold its connection and thread forever.)"""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        super().__init__()
        self.sock = sock
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.received = 0  # bytes since the deadline was set
        self.timed_out = False

    def start(self) -> None:
        """The next request: its own deadline."""
        self.deadline = time.monotonic() + self.timeout
        self.received = 0
        self.timed_out = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self.deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError(f"no whole request within {self.timeout:g} s")
            self.sock.settimeout(remaining)
            try:
                got = self.sock.recv_into(buffer)
            finally:
                self.sock.settimeout(self.timeout)  # what writes wait for
        except TimeoutError:
            self.timed_out = True
            raise
        self.received += got
        return got


def _busy_answer(limit: int, per_client: bool = False) -> bytes:
    whose = "from your address " if per_client else ""
    body = json.dumps({"error": f"heal serve is busy: {limit} connections {whose}are open "
                       f"(the most it serves at once{' for one client' if per_client else ''})"
                       "; retry later", "status": 503}).encode()
    return (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
            ).encode() + body


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's view of an IPv4 client
    return address


#: bound addresses that mean "every address of this machine": no client uses them as a Host
WILDCARDS = frozenset({"0.0.0.0", "::", ""})


def _bindable(address: str) -> bool:
    """``address`` is one of this machine's own (a socket can be bound to it)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((address, 0))
    except OSError:
        return False
    return True


def machine_addresses(families: tuple[socket.AddressFamily, ...]) -> list[str]:
    """Addresses of this machine a client elsewhere can use (not loopback, not link-local):
    what this host's name resolves to, and the address of the default route (a UDP
    ``connect`` sends nothing), each kept only when it is really this machine's."""
    found: list[str] = []
    for family in families:
        candidates: list[str] = []
        with contextlib.suppress(OSError, UnicodeError):
            candidates += [str(info[4][0]) for info in socket.getaddrinfo(
                socket.gethostname(), None, family, socket.SOCK_STREAM)]
        probe = "2001:db8::1" if family == socket.AF_INET6 else "192.0.2.1"  # (documentation)
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((probe, 9))
            candidates.append(str(sock.getsockname()[0]))
        for candidate in candidates:
            address = _address(candidate.split("%", 1)[0])
            if (address is None or address.is_loopback or address.is_link_local
                    or address.is_unspecified or str(address) in found):
                continue
            if _bindable(str(address)):
                found.append(str(address))
    return found


class HealServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], api: Api, tokens: Tokens,
                 allow_hosts: tuple[str, ...] = (), *,
                 request_timeout: float = REQUEST_TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS,
                 max_per_client: int = MAX_PER_CLIENT) -> None:
        self.api = api  # before binding: a failed bind calls server_close()
        self.tokens = tokens
        self.request_timeout = request_timeout
        self.max_connections: int = max_connections
        self.max_per_client = max_per_client
        api.connections = lambda: (self.open_connections, self.max_connections)
        self._lock = threading.Lock()
        #: the connections being served, each with its client's address
        self._connections: dict[socket.socket, str] = {}
        #: client address -> connections of it being served
        self._per_client: dict[str, int] = {}
        self._lingering: list[tuple[float, socket.socket]] = []  # refused, closing
        host = address[0]
        if ":" in host:  # an IPv6 address ("::1", "::"); names resolve to IPv4
            self.address_family = socket.AF_INET6
        self.loopback = _host_name(host) in LOOPBACK_NAMES
        self.hosts = allowed_hosts(host, allow_hosts)
        super().__init__(address, Handler)
        #: the host[:port] parts of URLs that reach this server and pass its Host check
        self.authorities = self._authorities(host)

    def _authorities(self, host: str) -> list[str]:
        """``host:port`` for the URL to print: the bound address, or for a wildcard bind
        (0.0.0.0, ::), where that address is no Host a client sends, this machine's name and
        its addresses (each accepted by the Host check: the name is one of :attr:`hosts`, an
        address is the one the client connects to)."""
        port = self.server_address[1]
        if host not in WILDCARDS:
            return [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
        families: tuple[socket.AddressFamily, ...] = (socket.AF_INET,)
        if self.address_family == socket.AF_INET6:
            families = (socket.AF_INET6,)
            with contextlib.suppress(OSError, AttributeError):
                if not self.socket.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY):
                    families = (socket.AF_INET6, socket.AF_INET)  # dual stack
        name = socket.gethostname().lower()
        names = [name] if name and name in self.hosts and name not in LOOPBACK_NAMES else []
        names += [f"[{a}]" if ":" in a else a for a in machine_addresses(families)]
        return [f"{n}:{port}" for n in names] or [f"127.0.0.1:{port}"]

    @property
    def open_connections(self) -> int:
        """Connections being served now (``heal_serve_connections`` of ``/metrics``)."""
        with self._lock:
            return len(self._connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread for the connection, or 503 and close when :attr:`max_connections` are
        already served."""
        client = str(client_address[0]) if client_address else ""
        with self._lock:
            busy = len(self._connections) >= self.max_connections
            mine = self._per_client.get(client, 0)
            crowded = not busy and 0 < self.max_per_client <= mine
            if not (busy or crowded):
                self._connections[request] = client
                self._per_client[client] = mine + 1
        if busy or crowded:
            limit = self.max_connections if busy else self.max_per_client
            log.warning("heal serve: refused a connection from %s: %d connections open%s",
                        client, limit, "" if busy else " from that address")
            self._refuse(request, limit, crowded)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._forget(request)
            raise

    def _refuse(self, request: socket.socket, limit: int, per_client: bool) -> None:
        """503 without a thread: sent at once (non-blocking), then the connection lingers
        (closed by :meth:`service_actions`): closing it while the request is still arriving
        would make the kernel reset it, and the client could lose the answer."""
        try:
            request.setblocking(False)
            request.send(_busy_answer(limit, per_client))
            request.shutdown(socket.SHUT_WR)
        except OSError:
            request.close()
            return
        if len(self._lingering) >= LINGERING:
            self._close_lingering(self._lingering.pop(0)[1])
        self._lingering.append((time.monotonic() + LINGER, request))

    def service_actions(self) -> None:
        """Between requests (and every poll interval) in the serving loop: close the refused
        connections whose client closed, or that lingered :data:`LINGER` seconds."""
        now = time.monotonic()
        keep = []
        for until, sock in self._lingering:
            done = now >= until
            try:
                for _ in range(16):  # bounded: a client sending on and on cannot hold the loop
                    if not sock.recv(MAX_BODY):
                        done = True  # the client closed its side
                        break
            except BlockingIOError:
                pass
            except OSError:
                done = True
            if done:
                self._close_lingering(sock)
            else:
                keep.append((until, sock))
        self._lingering = keep

    @staticmethod
    def _close_lingering(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.close()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._forget(request)

    def _forget(self, request: Any) -> None:
        with self._lock:
            client = self._connections.pop(request, None)
            if client is not None:
                left = self._per_client.get(client, 1) - 1
                if left > 0:
                    self._per_client[client] = left
                else:
                    self._per_client.pop(client, None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # the client went away: nothing to answer
            log.info("heal serve: connection from %s ended: %s", client_address[0], exc)
        else:
            log.exception("heal serve: error on a connection from %s", client_address[0])

    def server_close(self) -> None:
        # connections waiting for a request end now (a request being handled is answered
        # first): closing waits for their threads
        with self._lock:
            waiting = list(self._connections)
        for sock in waiting:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)
        for _, sock in self._lingering:
            self._close_lingering(sock)
        self._lingering = []
        super().server_close()
        self.api.engines.close()


class Handler(BaseHTTPRequestHandler):
    server: HealServer
    server_version = "heal-serve"
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self._timeout = self.server.request_timeout
        self.connection.settimeout(self._timeout)  # writes to a client that does not read
        self.rfile.close()  # the plain reader: replaced by one with a deadline
        self._reader = _DeadlineReader(self.connection, self._timeout)
        self.rfile = io.BufferedReader(self._reader)
        self._responded = False

    def handle_one_request(self) -> None:
        self._reader.start()
        self._responded = False
        # what an answer before the request line is parsed needs (parse_request sets them)
        self.command, self.requestline, self.request_version = "", "", "HTTP/1.1"
        super().handle_one_request()  # a timeout ends it (logged) and closes the connection
        if self._reader.timed_out and self._reader.received and not self._responded:
            # part of a request came, not all of it in time: say so (an idle kept-alive
            # connection is closed without a word)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send(error_response(408, f"the request did not arrive whole within "
                                          f"{self._timeout:g} s"), "")

    def parse_request(self) -> bool:
        """http.server's parsing, then 400 for a header block this server does not read the
        way a proxy in front of it might (see :meth:`_header_error`), and 405 (instead of its
        501 page) for a method no route answers: OPTIONS, PATCH, TRACE, DELETE, or any other
        word."""
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":  # "GET /": a status line and headers anyway
            self.send_error(400, "HTTP/0.9 requests are not served; send HTTP/1.1 (or 1.0)")
            return False
        problem = self._header_error()
        if problem:
            self.send_error(400, problem)
            return False
        if self.command not in METHODS:
            self._serve(self.command)
            return False
        return True

    def _header_error(self) -> str:
        """What is wrong with the request's header block, or "".

        - A line that is not ``name: value`` (whitespace before the colon, ``Content-Length :
          5``, or no colon at all): the parser stops there and takes the rest for a body, so
          the header was ignored and what followed read as the next request, while a proxy
          that honours it frames the request otherwise (RFC 9112 §5.1: 400).
        - More than one Host (RFC 9112 §3.2: 400): the first was checked, a proxy may route by
          the last.
        """
        headers = self.headers
        rest = headers.get_payload()
        if headers.defects or rest:
            first = str(rest) if rest else str(getattr(headers.defects[0], "line", "") or "")
            line = first.split("\r\n", 1)[0].split("\n", 1)[0]
            name = line.split(":", 1)[0]
            why = ("whitespace before its colon" if ":" in line and name != name.rstrip()
                   else "not 'Name: value'")
            return (f"header line '{visible(line[:80])}' is malformed: {why}; write each "
                    "header as 'Name: value', with no space or tab before the colon "
                    "(RFC 9112 section 5.1)")
        if len(headers.get_all("Host") or []) > 1:
            return "more than one Host header; send exactly one (RFC 9112 section 3.2)"
        return ""

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """Every error http.server answers by itself (bad request line, 414 URL too long, 431
        headers too large, 505) as JSON ``{error, status}``; the connection is closed."""
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        text = _STDLIB_ERRORS.get(code) or message or phrase
        if message and code in _STDLIB_ERRORS:
            text = f"{text}: {message}"
        if explain:
            text = f"{text} ({explain})"
        self.log_error("code %d, message %s", code, text)
        self.close_connection = True
        self._send(error_response(code, text), getattr(self, "command", None) or "")

    def _host_ok(self) -> bool:
        """The Host header names this server: a name it answers to, or the very address of
        this machine the client connected to (an address cannot be rebound by DNS)."""
        host = _host_name(self.headers.get("Host", ""))
        if host in self.server.hosts:
            return True
        asked = _address(host)
        try:
            local = _address(str(self.connection.getsockname()[0]).split("%", 1)[0])
        except OSError:
            return False
        return asked is not None and asked == local

    def _body_length(self) -> int | Response:
        """The request body's length, or the error answering a framing this server does not
        read (then the connection is closed: the body stays unread)."""
        if self.headers.get_all("Transfer-Encoding"):
            return error_response(411, "Transfer-Encoding (chunked) bodies are not read; send "
                                  "the body with Content-Length (no route needs a body)")
        values = self.headers.get_all("Content-Length") or []
        if len(values) > 1:
            return error_response(400, "more than one Content-Length header")
        raw = values[0].strip() if values else "0"
        if not _LENGTH.fullmatch(raw):
            return error_response(400, f"Content-Length {raw[:40]!r} is not a number of "
                                  f"bytes; use 0..{MAX_BODY}")
        length = int(raw)
        if length > MAX_BODY:
            return error_response(413, f"request body over {MAX_BODY} bytes")
        return length

    def _refusal(self, method: str, path: str) -> Response | int:
        """The error for this request, checked in this order: 403 for a Host this server is
        not (DNS rebinding); 405 for a method the path does not answer; 400/411/413 for a
        body framing it does not read; 401/403 without the token the request's role needs
        (pipeline.serve.auth). Otherwise the body's length."""
        if not self._host_ok():
            names = ", ".join(sorted(self.server.hosts)[:12])
            port = self.server.server_address[1]
            where = (f"a loopback server answers only Host {names}; use "
                     f"http://127.0.0.1:{port}/" if self.server.loopback else
                     f"this server answers Host {names}"
                     f"{', ...' if len(self.server.hosts) > 12 else ''}, or the address of "
                     f"this machine the client connected to (such as http://"
                     f"{self.server.authorities[0]}/); or start heal serve with "
                     "--allow-host NAME (or HEAL_SERVE_HOSTS) for the name clients use")
            return error_response(403, f"Host {self.headers.get('Host')!r} is not this "
                                  f"server; {where}")
        allowed = self.server.api.allowed_methods(path) or METHODS
        if method not in allowed:
            what = ("only GET (and HEAD) is allowed here" if "GET" in allowed and
                    "POST" not in allowed else "use POST" if allowed == ("POST",) else
                    f"this server answers {', '.join(METHODS)} only")
            response = error_response(405, f"{method[:40]} {path[:200]}: {what}")
            response.headers["Allow"] = ", ".join(allowed)
            return response
        length = self._body_length()
        if isinstance(length, Response):
            return length
        needed = Role.VIEWER if method in ("GET", "HEAD") else Role.APPROVER
        if needed is Role.VIEWER and (self.server.loopback or path in OPEN_PATHS):
            # the operator's own browser on this machine; the dashboard page, which holds no
            # data (a browser cannot send a token when it opens a URL: the page reads it from
            # #token= and sends it with every request it makes); and the health check, whose
            # answer is always {"ok": true} (a kubelet probe sends no token)
            needed = Role.NONE
        role = self.server.tokens.role(self.headers.get("Authorization"))
        if role < needed:
            status = 401 if role is Role.NONE else 403
            what = (f"{method} needs the approver role (approving or rejecting a fix)" if
                    needed is Role.APPROVER else "this server is reachable from the network, "
                    "so every request needs a token")
            log.warning("heal serve: refused %s %s from %s (%s)", shown(method, 40),
                        shown(self.path), self.client_address[0], "no valid token" if status == 401
                        else "viewer token")
            response = error_response(status, f"{what}: "
                                      f"{how_to_get_a_token(self.server.tokens, needed)}")
            response.headers["WWW-Authenticate"] = 'Bearer realm="heal"'
            return response
        return length

    def _serve(self, method: str) -> None:
        try:
            self._answer(method)
        except OSError:
            raise  # the connection broke: nothing can be answered (handle_error logs it)
        except Exception:  # a bug here must still answer, never leave the client hanging
            log.exception("heal serve: internal error on %s %s", shown(method, 40),
                          shown(self.path))
            self.close_connection = True
            if not self._responded:
                self._send(error_response(500, "internal error; see the server log"), method)

    def _answer(self, method: str) -> None:
        try:
            url = urlsplit(self.path)
        except ValueError as exc:  # e.g. an unbalanced "[" in an absolute URL
            self.close_connection = True
            self._send(error_response(400, f"bad request target: {exc}"), method)
            return
        refused = self._refusal(method, url.path)
        if isinstance(refused, Response):
            self.close_connection = True  # the body, if any, was not read
            self._send(refused, method)
            return
        if refused:
            self.rfile.read(refused)  # drained so a keep-alive connection stays in sync
        try:
            query = parse_qs(url.query, keep_blank_values=True, strict_parsing=False)
        except ValueError as exc:
            self._send(error_response(400, f"bad query string: {exc}"), method)
            return
        self._send(self.server.api.handle(method, url.path, query), method)

    def _send(self, response: Response, method: str) -> None:
        self._responded = True
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # else http.server sends the body alone
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        # on every answer; an HTML page brings its own policy (its inline code by hash)
        for name, value in {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
                            "Referrer-Policy": "no-referrer",
                            "Content-Security-Policy": _NO_CONTENT_POLICY,
                            **response.headers}.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(response.body)

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        self._serve("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        # the request line and http.server's own messages quote what the client sent
        log.info("%s %s", self.address_string(), shown(format % args, 2 * LOG_TEXT))


def make_server(settings: Settings, host: str = "127.0.0.1", port: int = 8377,
                allow_hosts: tuple[str, ...] = (), *,
                request_timeout: float = REQUEST_TIMEOUT,
                max_connections: int = MAX_CONNECTIONS,
                max_per_client: int = MAX_PER_CLIENT) -> HealServer:
    """A bound (not yet serving) server; port 0 picks a free port (``server.server_port``).
    ``host`` may be an IPv6 address, with or without brackets (``::1``, ``[::]``).

    Raises OSError when the address cannot be bound, ConfigError when the tokens cannot be
    read or created.
    """
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return HealServer((host, port), Api(settings), load_tokens(settings), allow_hosts,
                      request_timeout=request_timeout, max_connections=max_connections,
                      max_per_client=max_per_client)
