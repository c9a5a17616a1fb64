"""The routes of ``heal serve``: pure functions of (method, path, query, body) returning a
:class:`Response`, so they are tested without sockets and the HTTP layer stays thin.

Errors never reach the client as a traceback: :class:`HttpError` and HealError subclasses
become JSON ``{"error": message}`` with 400 (bad input), 404 (unknown path or id), 409 (not
pending any more), 503 (an engine is down); anything else is logged and answered 500.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from pipeline.config import Settings
from pipeline.console import visible
from pipeline.errors import ConfigError, EngineError, HealError, UsageError
from pipeline.serve import prometheus
from pipeline.serve.collect import top_errors
from pipeline.serve.engines import Engines
from storage.serve_queries import ServeQueries

log = logging.getLogger(__name__)

JSON = "application/json"
CATEGORIES = ("SAFE", "MODERATE", "RISKY")
#: what /api/approvals lists unless ?category= says otherwise (SAFE suggestions can be applied
#: by ``heal apply`` too, but the fixes that wait for a human are the riskier ones)
DEFAULT_APPROVAL_CATEGORIES = ("MODERATE", "RISKY")
_EXPLAIN = re.compile(r"^/api/explain/(?P<fp>[^/]+)$")
_APPROVAL = re.compile(r"^/api/approvals/(?P<id>[^/]+)/(?P<action>approve|reject)$")


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


#: ``issue_queue.status`` values (``all`` = every one of them)
ISSUE_STATUSES = ("open", "ignored", "pattern", "all")


def json_response(status: int, payload: Any) -> Response:
    return Response(status, json.dumps(payload, indent=1, sort_keys=True, default=str).encode())


def error_response(status: int, message: str) -> Response:
    return json_response(status, {"error": message, "status": status})


def _int_arg(query: dict[str, list[str]], name: str, default: int, top: int) -> int:
    raw = (query.get(name) or [str(default)])[-1]
    try:
        value = int(raw)
    except ValueError:
        raise HttpError(400, f"?{name}={raw!r} is not a whole number; use 1..{top}") from None
    if not 1 <= value <= top:
        raise HttpError(400, f"?{name}={value} is out of range; use 1..{top}")
    return value


def _categories(query: dict[str, list[str]]) -> tuple[str, ...]:
    raw = ",".join(query.get("category") or [])
    if not raw:
        return DEFAULT_APPROVAL_CATEGORIES
    wanted = tuple(c.strip().upper() for c in raw.split(",") if c.strip())
    bad = [c for c in wanted if c not in CATEGORIES]
    if bad or not wanted:
        raise HttpError(400, f"?category={raw!r}: use a comma-separated list of "
                        f"{', '.join(CATEGORIES)}")
    return wanted


class Api:
    def __init__(self, settings: Settings, engines: Engines | None = None) -> None:
        self.settings = settings
        self.engines = engines or Engines(settings)
        #: (connections served now, most served at once), told by the server (/metrics)
        self.connections: Callable[[], tuple[int, int]] | None = None
        self._get: dict[str, Callable[[dict[str, list[str]]], Response]] = {
            "/api/status": self.status,
            "/api/patterns": self.patterns,
            "/api/breaker": self.breaker,
            "/api/issues": self.issues,
            "/api/approvals": self.approvals,
            "/api/overview": self.overview,
            "/api/metrics": self.report,
            "/api/fingerprints": self.fingerprints,
            "/api/learning": self.learning,
            "/report": self.healing_report,
            "/metrics": self.metrics,
            "/": self.dashboard,
            "/healthz": lambda _q: json_response(200, {"ok": True}),
        }

    # -- dispatch ---------------------------------------------------------------------------
    def allowed_methods(self, path: str) -> tuple[str, ...] | None:
        """The methods ``path`` answers (None for an unknown path), so the HTTP layer can
        answer 405 before asking for a token."""
        if len(path) > 1:
            path = path.rstrip("/")
        if path in self._get or _EXPLAIN.match(path):
            return ("GET", "HEAD")
        if _APPROVAL.match(path):
            return ("POST",)
        return None

    def handle(self, method: str, path: str, query: dict[str, list[str]]) -> Response:
        """The response for one request; never raises."""
        try:
            return self._dispatch(method, path, query)
        except HttpError as exc:
            return error_response(exc.status, str(exc))
        except EngineError as exc:
            return error_response(503, str(exc))
        except (UsageError, ConfigError) as exc:
            return error_response(400, str(exc))
        except HealError as exc:
            return error_response(500, str(exc))
        except Exception as exc:  # the last line of defence: log it, answer without traceback
            log.exception("heal serve: internal error on %s %s", visible(method[:40]),
                          visible(path[:300]))
            return error_response(500, f"internal error: {type(exc).__name__}; see the "
                                  "server log")

    def _dispatch(self, method: str, path: str, query: dict[str, list[str]]) -> Response:
        if len(path) > 1:
            path = path.rstrip("/")
        route = self._get.get(path)
        if route is not None:
            if method not in ("GET", "HEAD"):
                raise HttpError(405, f"{method} {path}: only GET is allowed here")
            return route(query)
        match = _EXPLAIN.match(path)
        if match is not None:
            if method not in ("GET", "HEAD"):
                raise HttpError(405, f"{method} {path}: only GET is allowed here")
            return self.explain(unquote(match["fp"]))
        match = _APPROVAL.match(path)
        if match is not None:
            if method != "POST":
                raise HttpError(405, f"{method} {path}: use POST")
            return self.decide(unquote(match["id"]), match["action"], query)
        raise HttpError(404, f"no such path: {path}; see / for the dashboard, /api/status, "
                        "/api/patterns, /api/breaker, /api/issues, /api/approvals, "
                        "/api/explain/FP, /api/metrics, /api/fingerprints, /api/learning, /metrics")

    # -- read-only routes -------------------------------------------------------------------
    def status(self, _query: dict[str, list[str]]) -> Response:
        """Exactly ``heal status --json``; 503 when it reports a problem."""
        from pipeline.cli.status import collect_status

        status = collect_status(self.settings)
        return json_response(200 if status["ok"] else 503, status)

    def patterns(self, query: dict[str, list[str]]) -> Response:
        limit = _int_arg(query, "limit", 500, 10_000)
        return self._db_call(lambda q: json_response(200, {
            "patterns": q.patterns(limit), "funnel": q.funnel()}))

    def breaker(self, _query: dict[str, list[str]]) -> Response:
        from pipeline.guardrails.breaker import breaker_status

        return json_response(200, self.engines.with_redis(
            lambda client: breaker_status(client, self.settings)))

    def issues(self, query: dict[str, list[str]]) -> Response:
        limit = _int_arg(query, "limit", 100, 10_000)
        status = (query.get("status") or ["open"])[-1]
        if status not in ISSUE_STATUSES:
            raise HttpError(400, f"?status={status!r}: choose one of {', '.join(ISSUE_STATUSES)}")

        def rows(q: ServeQueries) -> Response:
            from pipeline.operator.groups import by_template

            issues = q.issues(status, limit)  # one per fine fingerprint, the identity
            return json_response(200, {"issues": issues, "groups": by_template(issues)})

        return self._db_call(rows)

    def fingerprints(self, query: dict[str, list[str]]) -> Response:
        limit = _int_arg(query, "limit", 200, 10_000)
        return self._db_call(lambda q: json_response(200, {
            "fingerprints": q.fingerprints(limit)}))

    def learning(self, query: dict[str, list[str]]) -> Response:
        limit = _int_arg(query, "limit", 100, 10_000)
        return self._db_call(lambda q: json_response(200, q.learning(limit)))

    def approvals(self, query: dict[str, list[str]]) -> Response:
        """Each with ``will_run``: the exact argv, diff or playbook steps approving runs."""
        from pipeline.apply.preview import will_run

        categories = _categories(query)

        def rows(q: ServeQueries) -> Response:
            out = []
            for row in q.approvals(categories):
                fix = row.pop("fix", None)
                row["will_run"] = will_run(fix if isinstance(fix, dict) else None)
                out.append(row)
            return json_response(200, {"categories": list(categories), "approvals": out})

        return self._db_call(rows)

    def overview(self, _query: dict[str, list[str]]) -> Response:
        """What the dashboard draws from PostgreSQL in one request."""
        def rows(q: ServeQueries) -> Response:
            groups, top = top_errors(q, 10)
            return json_response(200, {
                "funnel": q.funnel(), "top_errors": top, "apply": q.apply_counts(),
                "issues_open": groups, "issue_fingerprints_open": q.open_issues()})

        return self._db_call(rows)

    def report(self, query: dict[str, list[str]]) -> Response:
        """``heal metrics --json`` (``?window=24h|7d|30d``, all three by default); budget
        spend is left out, and named in ``problems``, when Redis is unreachable."""
        from pipeline.operator.metrics import WINDOWS, collect
        from storage.reports import ReportStore

        window = (query.get("window") or [""])[-1] or None
        if window is not None and window not in WINDOWS:
            raise HttpError(400, f"?window={window!r}: choose one of {', '.join(WINDOWS)}")
        problems: list[str] = []
        spend = self._spend_reader(problems)
        result = self.engines.with_db(
            lambda db: collect(ReportStore(db), window, spend=spend))
        result["problems"] = problems
        return json_response(200, result)

    def healing_report(self, query: dict[str, list[str]]) -> Response:
        """``heal report`` (``?since=7d``, ``?format=html|md|text|json``, default html)."""
        from pipeline.cli.report import FORMATS, collect, render
        from pipeline.errors import UsageError

        since = (query.get("since") or ["7d"])[-1]
        fmt = (query.get("format") or ["html"])[-1]
        if fmt not in FORMATS:
            raise HttpError(400, f"?format={fmt!r}: choose one of {', '.join(FORMATS)}")
        try:
            data = self.engines.with_db(lambda db: collect(self.settings, db, since))
        except UsageError as exc:
            raise HttpError(400, f"?since={since!r}: {exc}") from exc
        kinds = {"html": "text/html; charset=utf-8", "json": JSON,
                 "md": "text/markdown; charset=utf-8", "text": "text/plain; charset=utf-8"}
        text = render(data, fmt)
        headers = {"Cache-Control": "no-store"}
        if fmt == "html":
            from pipeline.serve.dashboard import content_security_policy

            headers["Content-Security-Policy"] = content_security_policy(text)
        return Response(200, text.encode(), kinds[fmt], headers)

    def _spend_reader(self, problems: list[str]) -> Any:
        from pipeline.guardrails.budget import Budget

        try:
            budget = self.engines.with_redis(lambda client: Budget(client, self.settings))
            budget.spent()  # reachable now, or say so once instead of failing per day
        except HealError as exc:
            problems.append(f"budget spend not shown: {exc}")
            return None
        return budget.spent

    def explain(self, fingerprint: str) -> Response:
        """``heal explain FP --json`` (a fingerprint, a unique prefix or an error id, a
        dead-lettered one included); 404 for what nobody recorded. What the streams add is
        left out, and named in ``problems``, when Redis cannot be read."""
        from pipeline.operator.explain import (
            NotFound,
            explain,
            guarded,
            lifecycle_in_force,
            stream_readers,
        )
        from storage.reports import ReportStore

        problems: list[str] = []
        client = guarded(lambda _: self.engines.client(), None, problems)(None)
        readers = stream_readers(client, self.settings, problems)
        try:
            story = self.engines.with_db(
                lambda db: explain(ReportStore(db), fingerprint, streams=readers,
                                   problems=problems,
                                   lifecycle=lifecycle_in_force(self.settings)))
        except NotFound as exc:
            raise HttpError(404, str(exc)) from exc
        story["problems"] = problems
        return json_response(200, story)

    def _db_call(self, fn: Callable[[ServeQueries], Response]) -> Response:
        return self.engines.with_db(lambda db: fn(ServeQueries(db)))

    # -- approvals --------------------------------------------------------------------------
    def decide(self, attempt_id: str, action: str, query: dict[str, list[str]]) -> Response:
        from pipeline.serve.approvals import approve, reject

        raw_force = (query.get("force") or ["0"])[-1]
        if raw_force not in ("0", "1", "true", "false", "yes", "no"):
            raise HttpError(400, f"?force={raw_force!r}: choose one of 0, 1, true, false, yes, no")
        force = raw_force in ("1", "true", "yes")
        if action == "approve":
            result = approve(self.settings, self.engines, attempt_id, force=force)
        else:
            result = reject(self.settings, self.engines, attempt_id)
        return json_response(200, result)

    # -- /metrics and / ---------------------------------------------------------------------
    def metrics(self, _query: dict[str, list[str]]) -> Response:
        from pipeline.serve.collect import collect_metrics

        text = collect_metrics(self.settings, self.engines,
                               self.connections() if self.connections else None)
        return Response(200, text.encode(), prometheus.CONTENT_TYPE)

    def dashboard(self, _query: dict[str, list[str]]) -> Response:
        from pipeline.serve.dashboard import page, page_policy

        return Response(200, page(), "text/html; charset=utf-8",
                        {"Cache-Control": "no-store", "Content-Security-Policy": page_policy()})

