"""``heal policy [--repo PATH] [--json]``: the effective policy of a repository, every key with
its value and where it came from (``default`` or ``file``: the repository's ``heal.toml``;
``operator`` for a value the operator configuration set or capped: the mode, a human for
RISKY fixes, a guardrail threshold), and the operator configuration runs would use (a broken
one named by ``HEAL_CONFIG`` exits 2, any other is a warning)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pipeline.console import dump_json, visible
from pipeline.errors import ConfigError, GitError, UsageError
from pipeline.policy import (
    MAX_DEDUPE_MINUTES,
    MAX_DIFF_LINES,
    MAX_FILES,
    MAX_TIMEOUT_S,
    POLICY_FILE,
    Policy,
    read_policy,
)
from pipeline.policy_limits import KEYS


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "policy", help="the effective policy (heal.toml) and where each value came from")
    parser.add_argument("--repo", default=".", metavar="PATH",
                        help="a path inside the repository (default: the current directory)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def _root(path: str) -> Path | None:
    from pipeline.gitops import find_root

    if not Path(path).exists():
        raise UsageError(f"--repo {path}: no such path")
    try:
        return find_root(path)
    except GitError:
        return None  # outside a repository: the defaults


def _has(data: dict[str, Any], dotted: str) -> bool:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _rule(rule: Any) -> dict[str, Any]:
    """One escalation rule as the ``[[escalation.rules]]`` table that would declare it."""
    from pipeline.guardrails.escalation_policy import WHEN

    when = {trigger: word for word, trigger in WHEN.items()}[rule.trigger]
    out: dict[str, Any] = {"name": rule.name, "when": when,
                           "severity": str(rule.severity), "action": rule.suggested_action}
    if rule.attempts:
        out["attempts"] = rule.attempts
    if rule.duration_s:
        out["after_hours"] = round(rule.duration_s / 3600, 3)
    for key, values in (("patterns", rule.patterns), ("categories", rule.categories),
                        ("fix_kinds", rule.fix_kinds)):
        if values:
            out[key] = sorted(values)
    return out


CORE_RANGES = {
    "limits.max_diff_lines": f"a positive integer <= {MAX_DIFF_LINES}",
    "limits.max_files": f"a positive integer <= {MAX_FILES}",
    "limits.dedupe_minutes": f"a number >= 0 and <= {MAX_DEDUPE_MINUTES} (0 turns it off)",
    "limits.check_timeout_s": f"a positive number <= {MAX_TIMEOUT_S}",
}


#: how ``heal policy`` marks a repository check the operator configuration does not allow
NOT_RUN = "not run (not allowed by the operator)"


def _check(i: int, check: Any, allowed: bool, most_s: float) -> dict[str, Any]:
    """``most_s``: limits.check_timeout_s in force, which bounds a repository check's (and
    is its timeout when it names none); a cut timeout shows ``requested_timeout_s`` and
    ``reason``, as a capped key does."""
    from pipeline.trust.operator import bounded_check

    bounded, why = bounded_check(i, check, most_s)
    out: dict[str, Any] = {"name": check.name, "argv": list(check.argv),
                           "timeout_s": bounded.timeout_s}
    if why:
        out.update(requested_timeout_s=check.timeout_s, reason=why)
    return out if allowed else {**out, "status": NOT_RUN}


def _rows(policy: Policy, data: dict[str, Any], operator: Any) -> list[dict[str, Any]]:
    """(key, value, source) for every key, core keys first, then the guardrail thresholds
    (``policy``: the repository's, its thresholds already under the operator's rule)."""
    core: list[tuple[str, Any]] = [
        ("mode", policy.mode.value),
        ("verify.include_failing", policy.include_failing),
        ("verify.checks", [_check(i, c, operator.command_allowed(c.argv),
                                  policy.check_timeout_s)
                           for i, c in enumerate(policy.checks)]),
        ("protect.paths", list(policy.protected)),
        ("limits.max_diff_lines", policy.max_diff_lines),
        ("limits.max_files", policy.max_files),
        ("limits.dedupe_minutes", policy.dedupe_minutes),
        ("limits.check_timeout_s", policy.check_timeout_s),
        ("judges.human_for_risky", policy.human_for_risky),
        ("judges.llm.enabled", policy.llm.enabled),
        ("windows", [{"days": list(w.days), "start": w.start.isoformat(),
                      "end": w.end.isoformat()} for w in policy.windows]),
        ("backfill.paths", list(policy.backfill_paths)),
        ("backfill.exclude", list(policy.backfill_exclude)),
        ("escalation.dedupe_hours", policy.escalation.dedupe_hours),
        ("escalation.rules", [_rule(r) for r in policy.escalation.rules]),
    ]
    core_set = dict(operator.core)
    if operator.dedupe_hours is not None:
        core_set["escalation.dedupe_hours"] = operator.dedupe_hours
    rows = [{"key": k, "value": v,
             "source": "file" if _has(data, k) else "operator" if k in core_set else "default",
             **({"allowed": CORE_RANGES[k]} if k in CORE_RANGES else {})}
            for k, v in core]
    limits = policy.limits
    for key in KEYS:
        value = limits.get(key.path)
        rows.append({"key": key.path, "value": int(value) if key.integer else value,
                     "source": limits.source(key.path),
                     "allowed": key.rule().removeprefix("must be ")})
    return rows


def _operator(settings: Any) -> Any:
    """The operator configuration runs would use. A broken file named by ``HEAL_CONFIG``
    raises (exit 2, like every configuration error); a broken ``$HEAL_HOME/heal.toml`` is
    what runs meet too: the refused configuration (modes capped), reported as a warning."""
    from pipeline.trust.operator import load_operator, named_by_env, refused_config

    try:
        return load_operator(settings)
    except ConfigError as exc:
        if named_by_env():
            raise
        return refused_config(str(exc))


def effective_policy(path: str) -> dict[str, Any]:
    """``{"file": path or None, "keys": [{"key", "value", "source"[, "allowed"]}],
    "operator": {"file", "source", "max_mode", "refused"}, "warnings": [...]}``.

    The ``mode`` row is the mode in force: the repository's (or the default), capped by the
    operator's ``[trust] max_mode`` (or at ``suggest`` when a repository check cannot run);
    when capped its source is ``operator`` and ``requested`` / ``reason`` say what and why.

    Raises:
        PolicyError: the file is invalid (the message names the key and the allowed range).
        ConfigError: ``HEAL_CONFIG`` names an operator configuration that cannot be used.
    """
    import os

    from pipeline.config import Settings
    from pipeline.trust.operator import cap_limits, config_path, mode_reason, restrict

    root = _root(path)
    file = root / POLICY_FILE if root is not None else None
    policy, data = read_policy(file) if file is not None else (Policy(), {})
    settings = Settings.from_env(dict(os.environ), cwd=str(root) if root else None)
    operator = _operator(settings)
    effective, warnings, _ceiling = restrict(policy, operator)
    capped, caps = cap_limits(policy, operator)
    rows = _rows(capped, data, operator)
    by_key = {r["key"]: r for r in rows}
    for cap in caps:  # a repository's threshold the operator's side overrode
        key = next((k for k in KEYS if k.path == cap.key), None)
        by_key[cap.key].update(source="operator", reason=cap.warning,
                               requested=int(cap.requested) if key is not None and key.integer
                               or cap.key in ("limits.max_diff_lines", "limits.max_files")
                               else cap.requested)
    if effective.mode != policy.mode:
        by_key["mode"].update(value=effective.mode.value, source="operator",
                              requested=policy.mode.value,
                              reason=mode_reason(policy, operator, warnings))
    if effective.human_for_risky != policy.human_for_risky:
        row = next(r for r in rows if r["key"] == "judges.human_for_risky")
        row.update(value=effective.human_for_risky, source="operator",
                   requested=policy.human_for_risky,
                   reason="only operator configuration may waive the human for RISKY fixes")
    op_file = config_path(settings)
    return {"file": str(file) if policy.source != "defaults" else None, "keys": rows,
            "operator": {"file": str(op_file) if os.path.lexists(op_file) else None,
                         "source": operator.source, "max_mode": operator.max_mode.value,
                         "refused": operator.refused},
            "warnings": warnings}


def run(args: argparse.Namespace) -> int:
    report = effective_policy(args.repo)
    for warning in report["warnings"]:
        print(f"heal: {warning}", file=sys.stderr)
    if args.json:
        dump_json(report)  # (the JSON convention: one sorted line off a terminal)
        return 0
    print(f"policy: {report['file'] or 'no heal.toml: defaults'}")
    op = report["operator"]
    print(f"operator configuration: {op['file'] or 'none: defaults'} "
          f"({'refused' if op['refused'] else 'max_mode ' + op['max_mode']})")
    width = max(len(r["key"]) for r in report["keys"])
    for row in report["keys"]:
        value = json.dumps(row["value"])
        allowed = f"  ({row['allowed']})" if "allowed" in row else ""
        capped = (f"  (heal.toml asks {json.dumps(row['requested'])}; "
                  f"{visible(str(row['reason']))})" if "requested" in row else "")
        print(f"  {row['key']:<{width}}  {value:<12} {row['source']:<7}{allowed}{capped}")
    return 0
