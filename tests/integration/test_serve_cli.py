"""``heal serve`` as a command: binds to 127.0.0.1, prints its URL, answers, stops on SIGINT or
SIGTERM with exit 0; a busy port or a bad --port is a clear usage/configuration error (exit 2)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

import pytest

HEAL = [sys.executable, "-c",
        "import sys; from pipeline.cli import main; sys.exit(main(sys.argv[1:]))"]


def stacks_of(proc: subprocess.Popen[str]) -> str:
    """The rest of ``proc``'s stderr after SIGABRT: it runs with ``-X faulthandler``, which
    then prints every thread's stack (killed if even that does not end it)."""
    proc.send_signal(signal.SIGABRT)
    try:
        return proc.communicate(timeout=30)[1][-8000:]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[1][-8000:]


def stop_or_show_stacks(proc: subprocess.Popen[str], signum: signal.Signals) -> str:
    """Send ``signum`` and wait for the exit; the rest of stderr. A process still running
    after 120 s fails the test with its threads' stacks (this test once hung under load;
    the stacks are what tell why)."""
    proc.send_signal(signum)
    try:
        # communicate drains stderr while waiting (a full pipe cannot stall the exit); the
        # deadline is generous for a loaded machine: the stop itself takes well under 1 s
        return proc.communicate(timeout=120)[1]
    except subprocess.TimeoutExpired:
        pytest.fail(f"heal serve did not stop within 120 s of {signum.name}; its stderr "
                    f"and thread stacks:\n{stacks_of(proc)}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_binds_loopback_answers_and_stops_on_a_signal(
        heal_env: dict[str, str], signum: signal.Signals) -> None:
    proc = subprocess.Popen([sys.executable, "-X", "faulthandler", *HEAL[1:], "serve",
                             "--port", "0"], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, line
        port = int(match[1])
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/breaker",
                                        timeout=60) as r:
                assert json.loads(r.read())["state"] == "CLOSED"
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60) as r:
                assert b"<title>heal dashboard</title>" in r.read()
        except (OSError, AssertionError) as exc:  # (a timeout is an OSError)
            pytest.fail(f"{exc!r}; heal serve's stderr and thread stacks:\n"
                        f"{stacks_of(proc)}")
        rest = stop_or_show_stacks(proc, signum)
    finally:
        if proc.poll() is None:  # (a failure above, or this test's own timeout)
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert "Traceback" not in rest


def test_busy_port_and_bad_port_exit_2(heal_env: dict[str, str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        done = subprocess.run([*HEAL, "serve", "--port", str(port)], capture_output=True,
                              text=True, timeout=60)
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr
    assert "choose another --port" in done.stderr
    done = subprocess.run([*HEAL, "serve", "--port", "70000"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "--port 70000: use 0..65535" in done.stderr


@pytest.mark.parametrize("flag", ["--help"])
def test_help_names_the_routes(flag: str) -> None:
    done = subprocess.run([*HEAL, "serve", flag], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "/metrics" in done.stdout and "127.0.0.1" in done.stdout


def test_a_stop_signal_during_a_request_still_stops_the_server(
        heal_env: dict[str, str]) -> None:
    """The signal handler can run anywhere in the main thread, also in the middle of
    socketserver's request handling, whose ``except Exception`` once swallowed the exception
    a raising handler threw (a SIGINT left the server running). Given the handler called
    right inside the handling of a request, serving still ends, once that request is
    answered."""
    import threading

    from pipeline.cli.serve import Stopper
    from pipeline.config import Settings
    from pipeline.serve.server import make_server

    server = make_server(Settings.from_env(), "127.0.0.1", 0)
    stopper = Stopper(server)
    handle = server.process_request

    def signalled_meanwhile(request: Any, address: Any) -> None:
        stopper(signal.SIGINT, None)  # as if the signal arrived right here
        handle(request, address)

    server.process_request = signalled_meanwhile  # type: ignore[method-assign]
    done = threading.Event()

    def serve() -> None:
        server.serve_forever(poll_interval=0.1)
        done.set()

    threading.Thread(target=serve, daemon=True).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/api/breaker",
                                    timeout=60) as r:
            assert json.loads(r.read())["state"] == "CLOSED"
        assert done.wait(30), "serve_forever went on after the stop signal"
    finally:
        if not done.is_set():
            server.shutdown()
        server.server_close()


def test_serve_listens_on_ipv6_and_names_what_to_change_when_it_cannot_bind(
        heal_env: dict[str, str]) -> None:
    """``--host ::1`` once failed with "Address family for hostname not supported; choose
    another --port" (the server was IPv4 only, and the hint named the port whatever failed).
    Now an IPv6 address is served (its URL printed in brackets), and the hint names the port
    only when the port is in use."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    proc = subprocess.Popen([*HEAL, "serve", "--host", "::1", "--port", "0"],
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"http://\[::1\]:(\d+)/", line)
        assert match, line
        with urllib.request.urlopen(f"http://[::1]:{match[1]}/api/breaker", timeout=60) as r:
            assert json.loads(r.read())["state"] == "CLOSED"
        rest = stop_or_show_stacks(proc, signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0 and "Traceback" not in rest
    # an address this machine does not have (TEST-NET-3): the hint is about --host
    done = subprocess.run([*HEAL, "serve", "--host", "203.0.113.7", "--port", "0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "cannot listen on 203.0.113.7:0" in done.stderr
    assert "--host 203.0.113.7 is not an address of this machine" in done.stderr
    assert "--port" not in done.stderr.split("cannot listen on", 1)[1].split(":0", 1)[1]


def _ask(port: int, path: str, host: str, token: str | None = None,
         method: str = "GET") -> tuple[int, bytes]:
    """``method path`` to 127.0.0.2:``port`` with Host ``host``: the status and the body."""
    headers = {"Host": host, **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(f"http://127.0.0.2:{port}{path}", headers=headers,
                                     method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_off_loopback_the_health_check_needs_no_token_and_everything_else_still_does(
        heal_env: dict[str, str]) -> None:
    """deploy/k8s/serve.yaml runs ``heal serve --host 0.0.0.0`` with an httpGet readiness
    probe on /healthz, which sends no token: /healthz answered 401, so the pod never became
    Ready. Now GET /healthz needs no token (its answer is always {"ok": true}); the Host check
    and every other route's token check are unchanged, and the Service name set in
    HEAL_SERVE_HOSTS is answered, with the viewer token from HEAL_SERVE_VIEWER_TOKEN (what the
    Prometheus scrape sends)."""
    viewer = "viewer-" + "abcdefghijklmnop0123"
    env = {**os.environ, "HEAL_SERVE_VIEWER_TOKEN": viewer,
           "HEAL_SERVE_HOSTS": "heal-serve,heal-serve.heal.svc"}
    proc = subprocess.Popen([*HEAL, "serve", "--host", "127.0.0.2", "--port", "0"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"http://127\.0\.0\.2:(\d+)/", line)
        assert match, line
        port = int(match[1])
        here = f"127.0.0.2:{port}"
        status, body = _ask(port, "/healthz", here)
        assert status == 200 and json.loads(body) == {"ok": True}  # nothing else in it
        assert _ask(port, "/healthz", "heal-serve:8377")[0] == 200
        assert _ask(port, "/healthz", here, method="HEAD")[0] == 200
        # the Host check still applies to it, and it answers GET and HEAD only
        status, body = _ask(port, "/healthz", "evil.example")
        assert status == 403 and b"is not this server" in body
        assert _ask(port, "/healthz", here, method="POST")[0] == 405
        # every data route still needs the token
        for path in ("/metrics", "/api/status", "/api/breaker", "/healthz/../metrics"):
            status, body = _ask(port, path, here)
            assert status == 401, (path, body)
        status, body = _ask(port, "/metrics", "heal-serve.heal.svc:8377", viewer)
        assert status == 200 and b"heal_breaker_open" in body
        assert _ask(port, "/api/breaker", "heal-serve:8377", viewer)[0] == 200
        rest = stop_or_show_stacks(proc, signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0 and "Traceback" not in rest
