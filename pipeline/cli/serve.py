"""``heal serve [--host 127.0.0.1] [--port 8377]``: HTTP API, Prometheus ``/metrics`` and
the web dashboard (``/``)."""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import socket
import socketserver
import sys
import threading
from typing import Any

from pipeline.config import Settings
from pipeline.errors import ConfigError, UsageError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve", help="HTTP API, Prometheus /metrics and the web dashboard",
        description="Serve the JSON API (/api/status, /api/patterns, /api/breaker, "
                    "/api/issues, /api/approvals), Prometheus metrics (/metrics) and a "
                    "dashboard (/). Binds to 127.0.0.1 unless --host says otherwise.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind, IPv4 or IPv6 (default 127.0.0.1; ::1 is IPv6 "
                             "loopback; 0.0.0.0 or :: expose the API, which can apply fixes, "
                             "to the network)")
    parser.add_argument("--port", type=int, default=8377, help="TCP port (default 8377)")
    parser.add_argument("--quiet", action="store_true", help="no access log")
    parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        help="a host name clients use to reach a server bound off loopback "
                             "(repeatable; the Host header is always checked)")
    parser.add_argument("--max-per-client", type=int, default=None, metavar="N",
                        help="connections served at once for one client address (default "
                             "16 of the 64 in all; 0: no such limit, for a reverse proxy, "
                             "whose clients all share its address)")
    parser.add_argument("--verbose", action="store_true",
                        help="show the embedded engines' own log lines (default: they go to "
                             "$HEAL_HOME/logs/engines.log)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pipeline.serve.server import MAX_CONNECTIONS, MAX_PER_CLIENT, make_server
    from storage.engines import check_urls

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: use 0..65535")
    per_client = MAX_PER_CLIENT if args.max_per_client is None else args.max_per_client
    if not 0 <= per_client <= MAX_CONNECTIONS:
        raise UsageError(f"--max-per-client {per_client}: use 0..{MAX_CONNECTIONS} (0: no "
                         "limit per client)")
    settings = Settings.from_env()
    check_urls(settings)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(message)s", stream=sys.stderr)
    from pipeline.enginelogs import route_engine_logs

    route_engine_logs(settings.home, args.verbose)
    try:
        server = make_server(settings, args.host, args.port, tuple(args.allow_host),
                             max_per_client=per_client)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; "
                          f"{bind_hint(exc, args.host)}") from exc
    # a wildcard bind (0.0.0.0, ::) is no Host a client sends: this machine's name and
    # addresses instead, each accepted by the Host check
    where, *others = server.authorities
    bound = str(server.server_address[0])
    also = (f"; listening on every address ({bound}), also http://"
            + ", http://".join(f"{o}/" for o in others) if others else
            f"; listening on every address ({bound})" if bound in ("0.0.0.0", "::") else "")
    print(f"heal serve: http://{where}/  (API /api/..., metrics /metrics; Ctrl-C stops{also})",
          file=sys.stderr, flush=True)
    tokens = server.tokens
    print(f"heal serve: approving needs the approver token ({tokens.approver_source}); "
          f"open http://{where}/#token=<approver token> to approve from the dashboard"
          + ("" if server.loopback else
             "; off loopback every request but the dashboard page and /healthz needs a "
             "token (viewers: "
             f"{tokens.viewer_source}; the page sends the one in its #token=)"),
          file=sys.stderr, flush=True)
    # SIGTERM (docker stop, Kubernetes) and SIGINT stop the server the same way; set
    # explicitly because a process started in the background may inherit SIGINT ignored
    stopper = Stopper(server)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stopper)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()  # also closes the engine handles (embedded engines' leases)
    return 0


def bind_hint(exc: OSError, host: str) -> str:
    """What to change when the address cannot be bound: the port only when it is in use."""
    if exc.errno == errno.EADDRINUSE:
        return "choose another --port or stop what uses it"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "ports below 1024 need privileges; choose a --port of 1024 or more"
    if isinstance(exc, socket.gaierror) or exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
        return (f"--host {host} is not an address of this machine; use one of its addresses "
                "(127.0.0.1, ::1, 0.0.0.0 for every IPv4 address, :: for every address)")
    return "check --host and --port"


class Stopper:
    """The signal handler: asks ``serve_forever`` to return after the request in hand.

    It raises nothing. A handler that raised ran wherever the main thread happened to be,
    and inside socketserver's request handling its ``except Exception`` logged the exception
    and served on: one SIGINT in a test once left a server running for an hour.
    ``shutdown()`` waits for the loop to end, so it runs in a thread of its own.
    """

    def __init__(self, server: socketserver.BaseServer) -> None:
        self.server = server
        self.asked = threading.Event()

    def __call__(self, _signum: int, _frame: Any) -> None:
        if not self.asked.is_set():
            self.asked.set()
            threading.Thread(target=self.server.shutdown, name="heal-serve-stop",
                             daemon=True).start()
