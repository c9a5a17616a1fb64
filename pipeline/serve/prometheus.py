"""Prometheus text exposition (format 0.0.4) of heal's figures.

Names used by ``deploy/prometheus-rules.yaml`` and ``deploy/k8s/hpa.yaml``:
``heal_stream_lag{group=...}``, ``heal_dead_letters``,
``heal_dead_letter_last_timestamp_seconds``, ``heal_breaker_open``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: breaker states that refuse fixes
OPEN_STATES = frozenset({"OPEN", "FORCED_OPEN"})


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class Exposition:
    """Collects families (HELP, TYPE, samples) and renders them in one text."""

    def __init__(self) -> None:
        self._families: dict[str, tuple[str, str, list[str]]] = {}

    def add(self, name: str, kind: str, help_text: str, value: float,
            labels: Mapping[str, str] | None = None, *, sample: str | None = None) -> None:
        family = self._families.setdefault(name, (kind, help_text, []))
        label_text = ""
        if labels:
            label_text = "{" + ",".join(f'{k}="{_escape(str(v))}"'
                                         for k, v in labels.items()) + "}"
        family[2].append(f"{sample or name}{label_text} {_number(value)}")

    def render(self) -> str:
        lines: list[str] = []
        for name, (kind, help_text, samples) in self._families.items():
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(samples)
        return "\n".join(lines) + "\n"


def add_streams(out: Exposition, streams: Mapping[str, Any], dead_stream: str) -> None:
    """Stream lengths, and pending/lag/consumers per consumer group (``stream_status``);
    the dead-letter figures from ``dead_stream``'s ``dead_letters`` (entries in every dead
    stream; else its length) and ``last_added_ms`` (the newest over them)."""
    for stream, info in streams.items():
        out.add("heal_stream_length", "gauge", "Entries in the stream.", info["length"],
                {"stream": stream})
        for group, g in (info.get("groups") or {}).items():
            labels = {"group": group, "stream": stream}
            out.add("heal_stream_lag", "gauge",
                    "Entries not yet delivered to the consumer group.", g["lag"], labels)
            out.add("heal_stream_pending", "gauge",
                    "Entries delivered to the group and not yet acknowledged.", g["pending"],
                    labels)
            out.add("heal_stream_consumers", "gauge", "Consumers in the group.",
                    g["consumers"], labels)
    dead = streams.get(dead_stream, {})
    # a gauge: the length drops when retention trims the stream or letters are deleted, so
    # it is no counter (increase() took every drop for a counter reset and alerted)
    out.add("heal_dead_letters", "gauge",
            "Events in the dead-letter streams now (drops when retention trims them).",
            dead.get("dead_letters", dead.get("length", 0)))
    last = dead.get("last_added_ms")
    if last is not None:
        out.add("heal_dead_letter_last_timestamp_seconds", "gauge",
                "Unix time of the newest dead letter (trims and deletions leave it alone).",
                last / 1000)


def add_breaker(out: Exposition, breaker: Mapping[str, Any]) -> None:
    state = str(breaker.get("state", "unknown"))
    out.add("heal_breaker_open", "gauge",
            "1 when the circuit breaker refuses fixes somewhere (OPEN or FORCED_OPEN).",
            1 if state in OPEN_STATES else 0)
    for name in ("CLOSED", "HALF_OPEN", "OPEN", "FORCED_OPEN"):
        out.add("heal_breaker_state", "gauge", "Worst breaker state over all scopes.",
                1 if state == name else 0, {"state": name})


def add_execution(out: Exposition, execution: Mapping[str, Any]) -> None:
    """``heal_workflows{state}`` (how many workflows are in each state) and
    ``heal_workflow_state{workflow,state}`` 1 for each workflow not RUNNING."""
    for state, n in (execution.get("counts") or {}).items():
        out.add("heal_workflows", "gauge", "Workflows with a recorded execution state, by "
                "state (RUNNING / DEGRADED / QUARANTINED).", float(n), {"state": str(state)})
    for w in execution.get("workflows") or []:
        if w.get("state") != "RUNNING":
            out.add("heal_workflow_state", "gauge", "1 for each workflow that is DEGRADED or "
                    "QUARANTINED (automatic fixes restricted or stopped).", 1.0,
                    {"workflow": str(w.get("workflow")), "state": str(w.get("state"))})


def add_runtime(out: Exposition, snapshot: Mapping[str, Mapping[str, Any]],
                buckets: Iterable[float]) -> None:
    """Counters and the handler latency histogram of the stage workers in this process."""
    bounds = list(buckets)
    counters = (("handled", "Events handled."), ("emitted", "Events handed to the next stream."),
                ("acked", "Entries acknowledged."), ("duplicates", "Duplicate events dropped."),
                ("retries", "Retries scheduled."), ("dead_letters", "Events dead-lettered."),
                ("reconnects", "Redis reconnects."))
    for stage, m in sorted(snapshot.items()):
        labels = {"stage": stage}
        for key, help_text in counters:
            out.add(f"heal_stage_{key}_total", "counter", help_text + " (workers in this "
                    "process)", m.get(key, 0), labels)
        cumulative = 0
        name = "heal_handler_latency_seconds"
        help_text = "Handler latency per stage (workers in this process)."
        for bound, count in zip(bounds, m.get("latency_buckets", []), strict=False):
            cumulative += count
            out.add(name, "histogram", help_text, cumulative,
                    {"stage": stage, "le": _number(bound)}, sample=f"{name}_bucket")
        out.add(name, "histogram", help_text, m.get("latency_sum_s", 0.0), labels,
                sample=f"{name}_sum")
        out.add(name, "histogram", help_text, m.get("handled", 0), labels,
                sample=f"{name}_count")


def add_storage(out: Exposition, apply_counts: Mapping[str, int],
                funnel: Mapping[str, Mapping[str, int]], open_issues: int,
                open_fingerprints: int | None = None) -> None:
    """``open_issues``: open issue groups by mined template (cluster); ``open_fingerprints``:
    the fine fingerprints in them."""
    out.add("heal_fixes_applied_total", "counter", "Fixes applied and verified.",
            apply_counts.get("applied", 0))
    out.add("heal_fixes_reverted_total", "counter", "Applied fixes reverted (rolled back).",
            apply_counts.get("rolled_back", 0))
    for status, n in sorted(apply_counts.items()):
        out.add("heal_apply_results", "gauge", "Apply results per status.", n,
                {"status": status})
    for state, n in funnel.get("fixes", {}).items():
        out.add("heal_fixes_by_state", "gauge", "Fixes per lifecycle state.", n,
                {"state": state})
    out.add("heal_issues_open", "gauge", "Unmatched error groups (by mined template) waiting "
            "for review.", open_issues)
    if open_fingerprints is not None:
        out.add("heal_issue_fingerprints_open", "gauge", "Fine fingerprints in the unmatched "
                "error groups waiting for review.", open_fingerprints)


def add_connections(out: Exposition, served: int, limit: int) -> None:
    """``heal_serve_connections`` (this scrape's own included) and ``_max``: a server near its
    limit answers new connections 503 (``heal serve --max-connections``)."""
    out.add("heal_serve_connections", "gauge",
            "Connections heal serve is serving now (this scrape's included).", served)
    out.add("heal_serve_connections_max", "gauge",
            "Connections heal serve serves at once; more are answered 503.", limit)


def add_up(out: Exposition, engine: str, up: bool) -> None:
    out.add("heal_engine_up", "gauge", "1 when heal serve reached the engine for this scrape.",
            1 if up else 0, {"engine": engine})
