"""Escalation rules and notification sinks (a real local HTTP server for the webhook)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import fakeredis

from pipeline.guardrails.escalation import (
    EscalationContext,
    LogSink,
    Notifier,
    WebhookSink,
    evaluate,
)


def ctx(**kw: Any) -> EscalationContext:
    base: dict[str, Any] = {"fingerprint": "fp1", "now": 1000.0, "first_seen": 1000.0,
                            "category": "SAFE", "fix_kind": "command"}
    return EscalationContext(**{**base, **kw})


def test_rules() -> None:
    assert evaluate(ctx()) is None
    assert evaluate(ctx(fix_kind="escalate")).rule == "no-mechanical-fix"
    assert evaluate(ctx(category="RISKY")).rule == "risky-needs-human"
    n = evaluate(ctx(attempts=3, actions_tried=("ruff format",), last_error="E501"))
    assert n is not None and n.rule == "three-attempts"
    assert n.actions_tried == ("ruff format",) and n.last_error == "E501"
    assert evaluate(ctx(now=1000.0 + 86400)).rule == "unfixed-for-a-day"


def test_sinks_deliver_and_contain_failures(tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        good = WebhookSink(f"http://127.0.0.1:{server.server_port}/hook")
        broken = WebhookSink("http://127.0.0.1:9/nothing", timeout_s=1)
        broken.name = "broken"
        log_sink = LogSink(tmp_path / "notifications.jsonl")
        notifier = Notifier([broken, good, log_sink], client=fakeredis.FakeRedis())
        n = evaluate(ctx(attempts=5))
        assert n is not None
        results = notifier.notify(n)
        assert results["webhook"] == "ok" and results["log"] == "ok"
        assert "broken" in results and results["broken"] != "ok"
        assert received[0]["fingerprint"] == "fp1" and "text" in received[0]
        logged = json.loads((tmp_path / "notifications.jsonl").read_text())
        assert logged["rule"] == "three-attempts"
        assert set(notifier.notify(n).values()) == {"deduplicated"}
    finally:
        server.shutdown()
