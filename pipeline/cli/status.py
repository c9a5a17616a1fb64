"""``heal status [--json]``: health of the engines, every stream and consumer group, dead
letters, the circuit breaker and the budget.

JSON shape (DESIGN.md, fields may be added)::

    {"state": {"home", "source": "HEAL_HOME"|"repository"|"xdg", "describe"},
     "engines": {"redis": {...}, "postgres": {...}},
     "streams": {name: {"length", "groups": {group: {"pending", "lag", "consumers", ...}}}},
     "dead_letters": int, "breaker": {"state", ...}, "budget": {...},
     "execution": {"counts": {state: n}, "workflows": [{"workflow", "state", "reason",
     "since"}]},
     "outbox": {"waiting": int, "parked": [{"op_id", "kind", "reason"}]},
     "stranded": {"streams": [{"stream", "partition", "length", "unread", "unread_exact",
     "pending"}], "complete": bool},
     "unserved": [{"stage", "stream", "waiting", "registered"}],
     "ok": bool, "problems": [str, ...], "warnings": [str, ...]}

Each stage's group (``fingerprint``, ``lookup``, ...) also has ``"live_consumers"`` (workers
with a fresh heartbeat, :mod:`pipeline.runtime.heartbeat`; ``"consumers"`` counts every name
registered, stopped ones too) and each member ``"alive"``. Events waiting for a stage no
running worker serves are a problem (``ok`` false, exit 1: the work is not being done; the
same rule as events stranded in another partition layout) naming the stage and the command
to start it, and an entry of ``"unserved"``: ``{"stage", "stream", "waiting",
"registered"}``.

``collect_status(settings)`` builds the same dict for ``heal serve``'s ``/api/status``. When an
engine cannot be reached, everything that can still be gathered is shown and the command exits
1 with the reason on stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import importlib.util
import sys
from typing import Any

import redis

from pipeline.config import PIPELINE_STREAMS, STREAM_DEAD, Settings
from pipeline.console import clip, colour_enabled, dump_json, visible
from pipeline.errors import HealError
from pipeline.runtime.connection import probe_scripts
from pipeline.runtime.heartbeat import live_workers
from pipeline.runtime.layout import text_of, xinfo_fields
from storage.engines import (
    check_cluster_layout,
    check_urls,
    connect_redis,
    engine_info,
    engine_label,
    settle_state,
)

#: Beyond this many undelivered entries, lag is reported as a lower bound (``lag_exact`` false)
#: on servers older than Redis 7, which do not report lag themselves.
LAG_COUNT_CAP = 100_000
_PAGE = 1_000


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "status", help="health of engines, streams, consumer groups, dead letters, breaker"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    check_urls(settings)  # a malformed URL is a configuration error (exit 2), not an outage
    check_cluster_layout(settings)  # so is a cross-slot cluster layout, as for emit and worker
    status = collect_status(settings)
    if args.json:
        dump_json(status)
    elif colour_enabled(sys.stdout):
        from pipeline.operator.render_status import print_rich

        print_rich(status, [*stopped_consumer_lines(status["streams"]),
                            *_budget_lines(status["budget"]),
                            *_execution_lines(status.get("execution") or {}),
                            *outbox_lines(status["outbox"])])
    else:
        print(render(status))
    for warning in status.get("warnings") or []:
        print(f"heal: warning: {warning}", file=sys.stderr)
    for problem in status["problems"]:
        print(f"heal: error: {problem}", file=sys.stderr)
    if any(info.get("config_error") for info in status["engines"].values()):
        return 2  # e.g. a redis:// URL naming a Redis Cluster node: a setting to change
    return 0 if status["ok"] else 1


# -- gathering -------------------------------------------------------------------------------


def collect_status(settings: Settings) -> dict[str, Any]:
    """Everything ``heal status`` reports. Never raises HealError: unreachable parts are
    listed in ``problems`` and ``ok`` is false."""
    problems: list[str] = []
    engines = engine_info(settings)
    for name, info in engines.items():
        problem = info.get("error") or f"{name} is not reachable"
        if not info.get("reachable") and problem not in problems:  # one home, said once
            problems.append(problem)
    status: dict[str, Any] = {
        "state": {"home": str(settings.home), "source": settings.home_source,
                  "describe": settings.describe_home()},
        "engines": engines,
        "streams": {},
        "dead_letters": None,
        "breaker": {"state": "unknown"},
        "budget": {},
        "execution": {},
        "outbox": _outbox(settings, problems),
        # streams of another partition layout holding work (see pipeline.runtime.layout)
        "stranded": {"streams": [], "complete": True},
        "warnings": [],
        "unserved": [],
    }
    if engines["redis"].get("reachable"):
        try:
            client = connect_redis(settings)
            try:
                _collect_redis(client, settings, status, problems)
            finally:
                client.close()
        except HealError as exc:
            problems.append(str(exc))
    status["problems"] = problems
    status["ok"] = not problems
    return status


def _collect_redis(
    client: redis.Redis, settings: Settings, status: dict[str, Any], problems: list[str]
) -> None:
    try:
        for suffix in (*PIPELINE_STREAMS, STREAM_DEAD):
            status["streams"][settings.stream(suffix)] = partitioned_status(
                client, settings, suffix)
        status["dead_letters"] = status["streams"][settings.stream(STREAM_DEAD)]["length"]
        _collect_stranded(client, settings, status, problems)
        # work waiting for a stage no running worker serves: a problem (exit 1), listed for
        # scripts in ``unserved`` too
        unserved = _unserved(status, settings, live_workers(client, settings))
        status["unserved"] = [{k: v for k, v in u.items() if k != "message"} for u in unserved]
        problems.extend(u["message"] for u in unserved)
        # the scripts every stage runs (a user refused them passed as ok, its workers idle)
        probe_scripts(client, settings.stream(PIPELINE_STREAMS[0]))
    except redis.RedisError as exc:
        from pipeline.runtime.connection import acl_refusal, redis_error_text

        refusal = acl_refusal(exc, settings.prefix)
        if refusal is not None:  # up, but its user may not use heal's keys: exit 2
            status["engines"]["redis"].update(config_error=True, refused=True)
            settle_state(status["engines"]["redis"])
            problems.append(str(refusal))
            return
        problems.append(f"cannot read the streams: {redis_error_text(exc)}")
        return
    status["breaker"] = _optional_section(
        "pipeline.guardrails.breaker", "breaker_status", client, settings, problems
    )
    status["budget"] = _optional_section(
        "pipeline.guardrails.budget", "budget_status", client, settings, problems
    )
    status["execution"] = _optional_section(
        "pipeline.guardrails.execution", "execution_status", client, settings, problems
    )


def _unserved(status: dict[str, Any], settings: Settings,
              live: dict[str, set[str]]) -> list[dict[str, Any]]:
    """Mark each stage group's live consumers; for each stage whose input holds events
    (undelivered or pending) while no running worker serves it: ``stage``, ``stream``,
    ``waiting``, ``registered`` (its consumers, all stopped) and ``message``."""
    from pipeline.config import STAGES
    from pipeline.runtime.heartbeat import TTL_S

    found = []
    for stage, (source, _) in STAGES.items():
        stream = settings.stream(source)
        info = status["streams"].get(stream) or {"length": 0, "groups": {}}
        alive = live.get(stage, set())
        group = info["groups"].get(stage)
        if group is not None:
            group["live_consumers"] = len(alive)
            for member in group["members"]:
                member["alive"] = member["name"] in alive
            waiting = (group["lag"] or 0) + group["pending"]
            registered = group["consumers"]
        else:  # no worker of this stage ever read the stream
            waiting, registered = info["length"], 0
        if waiting and not alive:
            stopped = (f"; its {registered} registered consumer(s) are stopped"
                       if registered else "")
            found.append({
                "stage": stage, "stream": stream, "waiting": waiting, "registered": registered,
                "message": (
                    f"{waiting} event(s) wait on {stream} and no worker serves stage {stage} "
                    f"(none sent a heartbeat in the last {TTL_S} s{stopped}): start one with "
                    f"`heal worker {stage}` or `heal up`")})
    return found


def consumers_cell(group: dict[str, Any]) -> str:
    """The table's consumers cell: registered, and how many of them run (``2 (0 live)``)."""
    if "live_consumers" not in group:
        return str(group["consumers"])
    return f"{group['consumers']} ({group['live_consumers']} live)"


def _collect_stranded(
    client: redis.Redis, settings: Settings, status: dict[str, Any], problems: list[str]
) -> None:
    """Streams of another partition layout that hold unread or pending entries (nobody
    reads them: HEAL_PARTITIONS changed, or a producer runs with another one): a problem.
    Raises: redis.RedisError."""
    from pipeline.runtime.layout import stranded_streams

    report = stranded_streams(client, settings)
    status["stranded"] = {"streams": [s.as_dict() for s in report.stranded],
                          "complete": report.complete}
    problem = report.problem(settings)
    if problem:
        problems.append(problem)


def _outbox(settings: Settings, problems: list[str]) -> dict[str, Any]:
    """The lookup's local outbox under HEAL_HOME: writes waiting for PostgreSQL (they sync
    once it answers) and ops it rejected, parked with their reason. Read only when the cache
    file exists: status creates no state."""
    import sqlite3

    from pipeline.errors import EngineError
    from storage.cache import LocalCache

    path = LocalCache.file_at(settings.home)
    if not path.exists():
        return {"waiting": 0, "parked": []}
    try:
        cache = LocalCache(path)
    except EngineError as exc:
        problems.append(str(exc))
        return {"waiting": None, "parked": []}
    try:
        cache.check()
        return {"waiting": cache.pending_count(),
                "parked": [{"op_id": o, "kind": k, "reason": r} for o, k, r in cache.parked()]}
    except EngineError as exc:  # damaged past what opening it reads: what it is, what to do
        problems.append(str(exc))
        return {"waiting": None, "parked": []}
    except sqlite3.Error as exc:
        problems.append(f"cannot read the local cache {path}: {exc}")
        return {"waiting": None, "parked": []}
    finally:
        cache.close()


def _optional_section(
    module_name: str, func_name: str, client: redis.Redis, settings: Settings, problems: list[str]
) -> dict[str, Any]:
    """The section another component reports, or ``{"state": "not built yet"}`` when that
    component does not exist in this installation."""
    if importlib.util.find_spec(module_name) is None:
        return {"state": "not built yet"}
    func = getattr(importlib.import_module(module_name), func_name, None)
    if func is None:
        return {"state": "not built yet"}
    try:
        return dict(func(client, settings))
    except (HealError, redis.RedisError) as exc:
        problems.append(f"{module_name.rsplit('.', 1)[-1]}: {exc}")
        return {"state": "unknown", "error": str(exc)}


def partitioned_status(client: redis.Redis, settings: Settings, suffix: str) -> dict[str, Any]:
    """``stream_status`` of one pipeline stream, summed over its partitions when
    ``HEAL_PARTITIONS`` > 1 (length, pending, lag; consumers: the most any partition has;
    members merged by name); each partition's own figures under ``"partitions"``."""
    if settings.partitions <= 1:
        return stream_status(client, settings.stream(suffix))
    parts = {view.stream(suffix): stream_status(client, view.stream(suffix))
             for view in settings.partition_views()}
    groups: dict[str, Any] = {}
    for part in parts.values():
        for name, group in part["groups"].items():
            total = groups.setdefault(name, {"pending": 0, "lag": 0, "lag_exact": True,
                                             "consumers": 0, "members": {}})
            total["pending"] += group["pending"]
            total["lag"] += group["lag"] or 0
            total["lag_exact"] = total["lag_exact"] and group["lag_exact"]
            total["consumers"] = max(total["consumers"], group["consumers"])
            for member in group["members"]:
                seen = total["members"].setdefault(
                    member["name"], {"name": member["name"], "pending": 0, "idle_ms": None})
                seen["pending"] += member["pending"]
                idle = member["idle_ms"]
                seen["idle_ms"] = idle if seen["idle_ms"] is None else min(seen["idle_ms"], idle)
    for total in groups.values():
        total["members"] = list(total["members"].values())
    return {"length": sum(p["length"] for p in parts.values()), "groups": groups,
            "partitions": parts}


def stream_status(client: redis.Redis, stream: str) -> dict[str, Any]:
    """``{"length", "groups": {...}}`` of one stream (length 0 and no groups if missing)."""
    length = int(client.xlen(stream))
    groups: dict[str, Any] = {}
    if not client.exists(stream):
        return {"length": length, "groups": groups}
    for raw in client.xinfo_groups(stream):
        group = xinfo_fields(raw)
        name = text_of(group["name"])
        groups[name] = _group_status(client, stream, name, group, length)
    return {"length": length, "groups": groups}


def _group_status(
    client: redis.Redis, stream: str, name: str, group: dict[str, Any], length: int
) -> dict[str, Any]:
    lag, exact = _lag(client, stream, group, length)
    members = [xinfo_fields(c) for c in client.xinfo_consumers(stream, name)]
    return {
        "pending": int(group.get("pending") or 0),
        "lag": lag,
        "lag_exact": exact,
        "consumers": int(group.get("consumers") or 0),
        "last_delivered_id": text_of(group.get("last-delivered-id", "0-0")),
        "members": [
            {
                "name": text_of(m["name"]),
                "pending": int(m.get("pending") or 0),
                "idle_ms": int(m.get("idle") or 0),
            }
            for m in members
        ],
    }


def _lag(client: redis.Redis, stream: str, group: dict[str, Any], length: int) -> tuple[int, bool]:
    """Entries not yet delivered to the group: Redis 7 reports it; on 6.2 count the entries
    after the group's last-delivered id (exactly, up to LAG_COUNT_CAP)."""
    if group.get("lag") is not None:
        return int(group["lag"]), True
    last = text_of(group.get("last-delivered-id", "0-0"))
    if last == "0-0":
        return length, True
    counted = 0
    start = f"({last}"
    while counted < LAG_COUNT_CAP:
        page: list[Any] = list(client.xrange(stream, min=start, max="+", count=_PAGE) or [])
        counted += len(page)
        if len(page) < _PAGE:
            return counted, True
        start = f"({text_of(page[-1][0])}"
    return counted, False


# -- rendering -------------------------------------------------------------------------------


def _engine_line(name: str, info: dict[str, Any]) -> str:
    label = engine_label(info)
    if label is not None:
        return f"  {name:<9} {info.get('mode', '?'):<9} {label}  {info.get('url') or ''}"
    version = info.get("version") or "?"
    extra = f"  pgvector {info['vector']}" if info.get("vector") else ""
    if name == "postgres" and not info.get("vector"):
        extra = "  pgvector: not yet created"
    count = len(info.get("users") or ())
    users = (f"  ({count} heal process{'' if count == 1 else 'es'} attached)" if count else "")
    return f"  {name:<9} {info['mode']:<9} {version:<8} {info.get('url')}{extra}{users}"


def render(status: dict[str, Any]) -> str:
    """The human-readable table."""
    lines = []
    if status.get("state"):
        lines += [f"state: {status['state']['describe']}", ""]
    lines.append("engines")
    lines += [_engine_line(name, info) for name, info in status["engines"].items()]
    lines.append("")
    lines.append(f"{'stream':<28} {'length':>8}  {'group':<12} {'pending':>8} {'lag':>8} consumers")
    for stream, info in status["streams"].items():
        groups = info["groups"] or {"-": None}
        for i, (group, g) in enumerate(groups.items()):
            head = f"{stream:<28} {info['length']:>8}" if i == 0 else " " * 37
            if g is None:
                lines.append(f"{head}  {'-':<12}")
                continue
            lag = f"{g['lag']}{'' if g['lag_exact'] else '+'}"
            lines.append(f"{head}  {group:<12} {g['pending']:>8} {lag:>8} {consumers_cell(g):>9}")
    stranded = (status.get("stranded") or {}).get("streams") or []
    for item in stranded:
        lag = f"{item['unread']}{'' if item['unread_exact'] else '+'}"
        lines.append(f"{item['stream']:<28} {item['length']:>8}  {'(no reader)':<12} "
                     f"{item['pending']:>8} {lag:>8}  another partition layout")
    lines += stopped_consumer_lines(status["streams"])
    lines.append("")
    dead = status["dead_letters"]
    lines.append(f"dead letters: {dead if dead is not None else 'unknown'}")
    lines += _breaker_lines(status["breaker"])
    lines += _budget_lines(status["budget"])
    lines += _execution_lines(status.get("execution") or {})
    lines += outbox_lines(status.get("outbox") or {})
    return "\n".join(line.rstrip() for line in lines)


def stopped_consumer_lines(streams: dict[str, Any]) -> list[str]:
    """How the consumers listed without a running worker ("3 (2 live)") go away."""
    from pipeline.runtime.heartbeat import DEAD_IDLE_MS

    # (a live worker not registered in the group yet would count below zero)
    stopped = sum(max(0, g["consumers"] - g["live_consumers"]) for info in streams.values()
                  for g in (info["groups"] or {}).values()
                  if g is not None and "live_consumers" in g)
    if not stopped:
        return []
    return [f"stopped consumers: {stopped} (no heartbeat): a running worker of their stage "
            f"removes each one that holds no entries once it has been idle "
            f"{DEAD_IDLE_MS // 1000} s (checked every minute); the entries one holds are "
            "first claimed by that worker after its claim timeout (--claim-idle-ms), so "
            "nothing is dropped. With no worker of the stage running they stay listed until "
            "one starts (`heal worker STAGE` or `heal up`)"]


def outbox_lines(outbox: dict[str, Any]) -> list[str]:
    """Nothing when the outbox is empty; else what waits for PostgreSQL and what it refused."""
    waiting, parked = outbox.get("waiting"), outbox.get("parked") or []
    lines = []
    if waiting:
        lines.append(f"lookup outbox: {waiting} write(s) waiting for PostgreSQL (synced "
                     "automatically once it answers)")
    if parked:
        lines.append(f"lookup outbox: {len(parked)} write(s) parked, rejected by PostgreSQL "
                     "(the rest went on):")
        lines += [f"  {p['kind']} {p['op_id']}: {clip(visible(str(p['reason'])), 160)}"
                  for p in parked[:10]]
        if len(parked) > 10:
            lines.append(f"  ... {len(parked) - 10} more (heal status --json lists them all)")
    return lines


def _breaker_lines(breaker: dict[str, Any]) -> list[str]:
    lines = [f"breaker: {breaker.get('state')}"]
    open_scopes = breaker.get("open_scopes") or []
    if open_scopes:
        lines.append(f"  open: {', '.join(str(s) for s in open_scopes)}")
    return lines


def _execution_lines(execution: dict[str, Any]) -> list[str]:
    workflows = execution.get("workflows")
    if not isinstance(workflows, list):
        return []
    held = [w for w in workflows if w.get("state") != "RUNNING"]
    lines = [f"workflows: {len(held)} DEGRADED or QUARANTINED" if held
             else "workflows: all RUNNING"]
    from pipeline.guardrails.execution import lift_command

    for w in held:
        # a workflow id is whatever HEAL_WORKFLOW or --workflow said (event-derived): shown
        # visible, and in the command to copy quoted for the shell (lift_command)
        since = dt.datetime.fromtimestamp(float(w.get("since") or 0), dt.UTC)
        name = str(w["workflow"])
        lines.append(f"  {visible(name)}: {w['state']} since {since:%Y-%m-%d %H:%M}Z "
                     f"({visible(str(w.get('reason') or 'no reason recorded'))}); lift with "
                     f"`{lift_command(name)}`")
    return lines


def _number(value: Any) -> str:
    from pipeline.console import amount

    return amount(value)


def _budget_lines(budget: dict[str, Any]) -> list[str]:
    if not budget:
        return ["budget: none"]
    spend = budget.get("spend")
    if not isinstance(spend, dict):
        return ["budget: " + ", ".join(f"{k}={v}" for k, v in budget.items())]
    lines = [f"budget ({budget.get('day', 'today')}): used / limit"]
    for kind, figures in spend.items():
        used, limit = _number(figures.get("used")), _number(figures.get("limit"))
        lines.append(f"  {kind:<24} {used:>10} / {limit}")
    # the shared bucket (the operator's rate), then the repository's own when it has one
    for label, name in (("rate", "rate"), ("rate (this repository)", "repository_rate")):
        rate = budget.get(name)
        if isinstance(rate, dict):
            lines.append(
                f"  {label:<24} {_number(rate.get('tokens')):>10} / "
                f"{_number(rate.get('capacity'))} tokens, refill "
                f"{_number(rate.get('per_minute'))}/min"
                + (f" (at most {_number(rate.get('capacity'))} automatic fixes per "
                   f"{_number(rate.get('minutes'))} min)" if rate.get("minutes") else ""))
            if rate.get("set_by"):
                lines.append(f"  {'':<24} {visible(str(rate['set_by']))}")
    if budget.get("policy"):
        lines.append(f"  {'limits from':<24} {visible(str(budget['policy']))}")
    if budget.get("policy_warning"):
        lines.append(f"  {'':<24} {visible(str(budget['policy_warning']))}")
    if budget.get("deferred"):
        lines.append(f"  {'deferred':<24} {budget['deferred']:>10} automatic fix(es) waiting "
                     "for the rate limit (retried automatically)")
    return lines
