"""Escalation rules, the notifications they produce, the log sink, and the ``[escalation]``
table's parser, pinned on their values: which rule fires at which boundary, the text and id a
person receives, and the exact message for each invalid key (pipeline.guardrails.escalation,
pipeline.guardrails.escalation_policy, pipeline.guardrails.alerts)."""

from __future__ import annotations

import hashlib
import json
import logging
import stat
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import HealError, PolicyError
from pipeline.guardrails.alerts import (
    ACTIONS,
    AlertingAudit,
    build_notifier,
    change_notification,
)
from pipeline.guardrails.escalation import (
    DEFAULT_RULES,
    EscalationContext,
    EscalationRule,
    LogSink,
    Notification,
    NotificationFailed,
    Notifier,
    Severity,
    Trigger,
    WebhookSink,
    evaluate,
)
from pipeline.guardrails.escalation_policy import EscalationPolicy, parse_escalation


def ctx(**kw: Any) -> EscalationContext:
    base: dict[str, Any] = {"fingerprint": "0123456789abcdef0123", "now": 1000.0,
                            "first_seen": 1000.0, "category": "SAFE", "fix_kind": "command"}
    return EscalationContext(**{**base, **kw})


def test_rule_filters_and_trigger_boundaries() -> None:
    attempts = EscalationRule("n", Trigger.AFTER_ATTEMPTS, attempts=3)
    assert not attempts.matches(ctx(attempts=2)) and attempts.matches(ctx(attempts=3))
    duration = EscalationRule("d", Trigger.AFTER_DURATION, duration_s=60.0)
    assert not duration.matches(ctx(now=1059.0)) and duration.matches(ctx(now=1060.0))
    immediate = EscalationRule("i", Trigger.IMMEDIATE)
    assert immediate.matches(ctx())
    cats = EscalationRule("c", Trigger.IMMEDIATE, categories=frozenset({"RISKY"}))
    assert cats.matches(ctx(category="RISKY")) and not cats.matches(ctx(category="SAFE"))
    pats = EscalationRule("p", Trigger.IMMEDIATE, patterns=frozenset({"db.*", "net.dns"}))
    assert pats.matches(ctx(pattern_id="db.lock")) and pats.matches(ctx(pattern_id="net.dns"))
    assert not pats.matches(ctx(pattern_id="DB.lock")) and not pats.matches(ctx(pattern_id=""))
    kinds = EscalationRule("k", Trigger.IMMEDIATE, fix_kinds=frozenset({"escalate"}))
    assert kinds.matches(ctx(fix_kind="escalate")) and not kinds.matches(ctx())
    # filters apply before the trigger
    both = EscalationRule("b", Trigger.AFTER_ATTEMPTS, attempts=1,
                          categories=frozenset({"RISKY"}))
    assert not both.matches(ctx(attempts=5)) and both.matches(ctx(attempts=5, category="RISKY"))
    assert EscalationRule("x", Trigger.IMMEDIATE).severity is Severity.WARNING


def test_the_default_rules_in_order() -> None:
    assert [r.name for r in DEFAULT_RULES] == ["no-mechanical-fix", "risky-needs-human",
                                               "three-attempts", "unfixed-for-a-day"]
    assert evaluate(ctx(attempts=2, now=1000.0 + 86399)) is None
    assert evaluate(ctx(attempts=3, category="RISKY")).rule == "risky-needs-human"
    assert evaluate(ctx(fix_kind="escalate", category="RISKY")).rule == "no-mechanical-fix"


@pytest.mark.parametrize(("workflow", "step", "where"), [
    ("nightly", "lint", "nightly/lint"), ("nightly", "", "nightly"), ("", "lint", "step lint"),
    ("", "", "no named step")])
def test_the_notification_says_what_where_and_what_to_do(workflow: str, step: str,
                                                         where: str) -> None:
    rule = EscalationRule("page", Trigger.AFTER_ATTEMPTS, attempts=2, severity=Severity.CRITICAL,
                          suggested_action="page the DBA")
    n = evaluate(ctx(attempts=4, workflow=workflow, step=step, actions_tried=("a", "b"),
                     last_error="x" * 5000 + "END"), [rule])
    assert n is not None
    assert n.summary == f"heal escalates 0123456789abcdef in {where}: rule page, 4 attempt(s)"
    assert n.id == hashlib.sha256(b"0123456789abcdef0123|page").hexdigest()[:16]
    assert (n.rule, n.fingerprint, n.attempts, n.actions_tried) == (
        "page", "0123456789abcdef0123", 4, ("a", "b"))
    assert len(n.last_error) == 4000 and n.last_error.endswith("END")
    assert (n.suggested_action, n.workflow, n.step, n.severity, n.kind) == (
        "page the DBA", workflow, step, "critical", "escalation")
    out = n.to_dict()
    assert out["actions_tried"] == ["a", "b"] and out["created_at"] == n.created_at
    assert json.loads(json.dumps(out))["summary"] == n.summary


def test_the_log_sink_appends_private_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "notifications.jsonl"
    sink = LogSink(path)
    first = evaluate(ctx(attempts=3))
    second = evaluate(ctx(attempts=3, fingerprint="other"))
    assert first is not None and second is not None
    sink.send(first)
    sink.send(second)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["fingerprint"] for line in lines] == [first.fingerprint, "other"]
    assert lines[0] == first.to_dict()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    blocked = LogSink(tmp_path / "file" / "n.jsonl")
    (tmp_path / "file").write_text("a file where a folder should be")
    with pytest.raises(NotificationFailed, match="log sink"):
        blocked.send(first)


def test_a_failing_sink_is_reported_and_the_others_still_deliver(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        name = "broken"

        def send(self, notification: Notification) -> None:
            raise NotificationFailed("webhook down")

    n = evaluate(ctx(attempts=3))
    assert n is not None
    notifier = Notifier([Broken(), LogSink(tmp_path / "n.jsonl")])  # no Redis: no dedupe
    with caplog.at_level(logging.ERROR, logger="heal.escalation"):
        assert notifier.notify(n) == {"broken": "webhook down", "log": "ok"}
    assert caplog.messages == ["notification sink failed: webhook down"]
    assert notifier.notify(n) == {"broken": "webhook down", "log": "ok"}
    assert len((tmp_path / "n.jsonl").read_text().splitlines()) == 2


def test_webhook_urls_must_be_http() -> None:
    for bad in ("ftp://x", "file:///etc/passwd", "x"):
        with pytest.raises(HealError, match="must start with http:// or https://"):
            WebhookSink(bad)
    assert WebhookSink("https://hooks.example/x").timeout_s == 5.0


def test_change_notifications_follow_the_alert_table() -> None:
    n = change_notification("breaker.transition", "step:w/t",
                            {"from": "CLOSED", "to": "OPEN", "reason": "2 reverts"})
    assert n is not None
    assert (n.rule, n.kind, n.severity, n.fingerprint) == ("breaker-open", "breaker",
                                                           "critical", "")
    assert n.summary == "heal breaker step:w/t: CLOSED -> OPEN (2 reverts)"
    assert n.suggested_action == ACTIONS["breaker.transition"]
    assert (n.workflow, n.step, n.attempts, n.actions_tried, n.last_error) == ("", "", 0, (), "")
    assert n.id == hashlib.sha256(
        b"breaker.transition|step:w/t|CLOSED|OPEN|2 reverts").hexdigest()[:16]
    forced = change_notification("breaker.transition", "global", {"to": "FORCED_OPEN"})
    assert forced is not None and forced.severity == "warning"
    assert forced.summary == "heal breaker global: ? -> FORCED_OPEN ()"
    assert change_notification("breaker.transition", "global", {"to": "CLOSED"}) is None
    assert change_notification("breaker.transition", "global", {"to": "HALF_OPEN"}) is None
    q = change_notification("lifecycle.transition", "fp1", {"from": "ACTIVE",
                                                            "to": "QUARANTINED"})
    assert q is not None and (q.fingerprint, q.severity, q.rule) == ("fp1", "warning",
                                                                      "lifecycle-quarantined")
    assert change_notification("lifecycle.transition", "fp1", {"to": "ACTIVE"}) is None
    severities = {to: change_notification("execution.transition", "wf",
                                          {"to": to, "step": "s", "workflow": "wf"})
                  for to in ("QUARANTINED", "DEGRADED", "RUNNING")}
    assert {to: n.severity for to, n in severities.items() if n} == {
        "QUARANTINED": "critical", "DEGRADED": "warning", "RUNNING": "info"}
    assert (severities["RUNNING"].step, severities["RUNNING"].workflow) == ("s", "wf")
    assert change_notification("apply.applied", "x", {"to": "OPEN"}) is None


def test_the_alerting_audit_records_first_and_notifies_the_changes(tmp_path: Path) -> None:
    class Inner:
        def __init__(self) -> None:
            self.calls: list[tuple[str, str, dict[str, Any], str]] = []

        def append(self, kind: str, subject: str, data: dict[str, Any], *,
                   once: str = "") -> Any:
            self.calls.append((kind, subject, data, once))
            return {"seq": len(self.calls)}

    class Failing:
        name = "failing"

        def send(self, notification: Notification) -> None:
            raise OSError("no space")

    inner = Inner()
    sink = LogSink(tmp_path / "n.jsonl")
    audit = AlertingAudit(inner, Notifier([sink]))
    assert audit.append("apply.applied", "e1", None, once="o1") == {"seq": 1}
    assert audit.append("breaker.transition", "global", {"to": "OPEN"}) == {"seq": 2}
    assert inner.calls == [("apply.applied", "e1", {}, "o1"),
                           ("breaker.transition", "global", {"to": "OPEN"}, "")]
    lines = (tmp_path / "n.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["rule"] == "breaker-open"
    # a notification that cannot go out never undoes the recorded change
    failing = AlertingAudit(inner, Notifier([Failing()]))
    assert failing.append("breaker.transition", "global", {"to": "OPEN"}) == {"seq": 3}


def test_build_notifier_adds_the_webhook_when_configured(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    from pipeline.config import Settings

    settings = Settings(None, None, tmp_path, "pfx")
    monkeypatch.delenv("HEAL_WEBHOOK_URL", raising=False)
    plain = build_notifier(settings, None, dedupe_s=7)
    assert [s.name for s in plain.sinks] == ["log"] and plain.dedupe_s == 7
    assert plain.key_prefix == "pfx" and plain.sinks[0].path == tmp_path / "notifications.jsonl"
    monkeypatch.setenv("HEAL_WEBHOOK_URL", "https://hooks.example/x")
    assert [s.name for s in build_notifier(settings, None).sinks] == ["log", "webhook"]
    assert build_notifier(settings, None).dedupe_s == 86400
    monkeypatch.setenv("HEAL_WEBHOOK_URL", "gopher://x")
    with pytest.raises(HealError):
        build_notifier(settings, None)


def test_an_absent_table_gives_the_defaults_and_defaults_can_be_dropped() -> None:
    assert parse_escalation({}) == EscalationPolicy()
    assert EscalationPolicy().rules == DEFAULT_RULES
    only = parse_escalation({"defaults": False, "dedupe_hours": 0.5,
                             "rules": [{"name": "mine"}]})
    assert [r.name for r in only.rules] == ["mine"] and only.dedupe_s == 1800
    mine_first = parse_escalation({"rules": [{"name": "mine"}]})
    assert [r.name for r in mine_first.rules] == ["mine", *(r.name for r in DEFAULT_RULES)]
    unresolved = parse_escalation({"rules": [{"name": "u", "when": "unresolved",
                                              "after_hours": 4}]}).rules[0]
    assert (unresolved.trigger, unresolved.duration_s, unresolved.attempts) == (
        Trigger.AFTER_DURATION, 4 * 3600.0, 0)
    edge = parse_escalation({"dedupe_hours": 24 * 365, "rules": [
        {"name": "a", "when": "attempts", "attempts": 1000},
        {"name": "b", "when": "unresolved", "after_hours": 0.01},
        {"name": "c", "categories": ["SAFE", "MODERATE", "RISKY"], "severity": "info"}]})
    assert edge.dedupe_hours == 24 * 365
    assert [r.attempts for r in edge.rules[:1]] == [1000]
    assert edge.rules[1].duration_s == pytest.approx(36.0)
    assert edge.rules[2].severity is Severity.INFO


@pytest.mark.parametrize(("raw", "message"), [
    ([], "escalation = []: must be a table"),
    ({"rule": []}, "escalation.rule = []: unknown key; allowed: dedupe_hours, defaults, rules"),
    ({"defaults": "yes"}, "escalation.defaults = \"yes\": must be true or false"),
    ({"dedupe_hours": -1}, "escalation.dedupe_hours = -1: must be a number from 0 to 8760"),
    ({"dedupe_hours": 8761}, "escalation.dedupe_hours = 8761: must be a number from 0 to 8760"),
    ({"dedupe_hours": True}, "escalation.dedupe_hours = true: must be a number from 0 to 8760"),
    ({"dedupe_hours": "1"}, "escalation.dedupe_hours = \"1\": must be a number from 0 to 8760"),
    ({"rules": {"name": "x"}}, "escalation.rules = { name = \"x\" }: must be an array of tables "
                               "([[escalation.rules]])"),
    ({"rules": ["x"]}, "escalation.rules[0] = \"x\": must be a table"),
    ({"rules": [{"name": "a"}, {"nam": "b"}]},
     "escalation.rules[1].nam = \"b\": unknown key; allowed: action, after_hours, attempts, "
     "categories, name, patterns, severity, when"),
    ({"rules": [{"when": "immediate"}]},
     "escalation.rules[0].name = (not set): every rule needs a non-empty name"),
    ({"rules": [{"name": ""}]},
     "escalation.rules[0].name = \"\": every rule needs a non-empty name"),
    ({"rules": [{"name": "a", "when": "later"}]}, "escalation.rules[0].when = \"later\": must be "
                                                  "one of immediate, attempts, unresolved"),
    ({"rules": [{"name": "a", "when": "attempts"}]},
     "escalation.rules[0].attempts = (not set): required when when = \"attempts\""),
    ({"rules": [{"name": "a", "when": "attempts", "attempts": 0}]},
     "escalation.rules[0].attempts = 0: must be an integer from 1 to 1000"),
    ({"rules": [{"name": "a", "when": "attempts", "attempts": 1001}]},
     "escalation.rules[0].attempts = 1001: must be an integer from 1 to 1000"),
    ({"rules": [{"name": "a", "when": "attempts", "attempts": 2.0}]},
     "escalation.rules[0].attempts = 2.0: must be an integer from 1 to 1000"),
    ({"rules": [{"name": "a", "when": "unresolved"}]},
     "escalation.rules[0].after_hours = (not set): required when when = \"unresolved\""),
    ({"rules": [{"name": "a", "when": "unresolved", "after_hours": 0.001}]},
     "escalation.rules[0].after_hours = 0.001: must be a number from 0.01 to 8760"),
    ({"rules": [{"name": "a", "categories": ["SAFE", "BAD", "AWFUL"]}]},
     "escalation.rules[0].categories = [\"AWFUL\", \"BAD\"]: must be among SAFE, MODERATE, RISKY"),
    ({"rules": [{"name": "a", "categories": "SAFE"}]},
     "escalation.rules[0].categories = \"SAFE\": must be a list of non-empty strings"),
    ({"rules": [{"name": "a", "patterns": ["db.*", ""]}]},
     "escalation.rules[0].patterns = [\"db.*\", \"\"]: must be a list of non-empty strings"),
    ({"rules": [{"name": "a", "patterns": [1]}]},
     "escalation.rules[0].patterns = [1]: must be a list of non-empty strings"),
    ({"rules": [{"name": "a", "severity": "loud"}]},
     "escalation.rules[0].severity = \"loud\": must be one of info, warning, critical"),
    ({"rules": [{"name": "a", "action": 3}]}, "escalation.rules[0].action = 3: must be a string"),
    ({"rules": [{"name": "a"}, {"name": "b"}, {"name": "a"}, {"name": "b"}]},
     "escalation.rules = [\"a\", \"b\"]: rule names must be unique"),
])
def test_each_invalid_value_is_named(raw: Any, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_escalation(raw)
    assert str(info.value) == f"heal.toml: {message}"


def test_a_rule_without_action_gets_the_default_advice() -> None:
    rule = parse_escalation({"rules": [{"name": "a"}]}).rules[0]
    assert rule.suggested_action == EscalationRule("x", Trigger.IMMEDIATE).suggested_action
    assert rule.severity is Severity.WARNING


def test_the_webhook_posts_json_and_any_non_2xx_answer_is_a_failure() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received: list[tuple[str, str, dict[str, Any]]] = []
    answers = [204, 500, 302]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append((self.path, self.headers["Content-Type"], body))
            status = answers.pop(0)
            self.send_response(status)
            if status == 302:
                self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802 - the redirect target answers 404
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook"
        sink = WebhookSink(url, timeout_s=5)
        n = evaluate(ctx(attempts=3))
        assert n is not None
        sink.send(n)
        assert received[0] == ("/hook", "application/json",
                               {"text": n.summary, **json.loads(json.dumps(n.to_dict()))})
        with pytest.raises(NotificationFailed, match=f"webhook {url}: HTTP Error 500"):
            sink.send(n)
        with pytest.raises(NotificationFailed, match="HTTP Error 404"):
            sink.send(n)
    finally:
        server.shutdown()
