"""``heal policy [--repo PATH] [--json]``: the effective policy of a repository, every key with
its value and where it came from (``default`` or ``file``: the repository's ``heal.toml``)."""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path
from typing import Any

from pipeline.errors import GitError, UsageError
from pipeline.policy import POLICY_FILE, Policy, load_policy
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


def _rows(policy: Policy, data: dict[str, Any]) -> list[dict[str, Any]]:
    """(key, value, source) for every key, core keys first, then the guardrail thresholds."""
    core: list[tuple[str, Any]] = [
        ("mode", policy.mode.value),
        ("verify.include_failing", policy.include_failing),
        ("verify.checks", [{"name": c.name, "argv": list(c.argv), "timeout_s": c.timeout_s}
                           for c in policy.checks]),
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
    rows = [{"key": k, "value": v, "source": "file" if _has(data, k) else "default"}
            for k, v in core]
    limits = policy.limits
    for key in KEYS:
        value = limits.get(key.path)
        rows.append({"key": key.path, "value": int(value) if key.integer else value,
                     "source": limits.source(key.path),
                     "allowed": key.rule().removeprefix("must be ")})
    return rows


def effective_policy(path: str) -> dict[str, Any]:
    """``{"file": path or None, "keys": [{"key", "value", "source"[, "allowed"]}]}``.

    Raises:
        PolicyError: the file is invalid (the message names the key and the allowed range).
    """
    root = _root(path)
    file = root / POLICY_FILE if root is not None else None
    if file is None or not file.exists():
        return {"file": None, "keys": _rows(Policy(), {})}
    policy = load_policy(file)
    data = tomllib.loads(file.read_text(encoding="utf-8"))
    return {"file": str(file), "keys": _rows(policy, data)}


def run(args: argparse.Namespace) -> int:
    report = effective_policy(args.repo)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"policy: {report['file'] or 'no heal.toml: defaults'}")
    width = max(len(r["key"]) for r in report["keys"])
    for row in report["keys"]:
        value = json.dumps(row["value"])
        allowed = f"  ({row['allowed']})" if "allowed" in row else ""
        print(f"  {row['key']:<{width}}  {value:<12} {row['source']:<7}{allowed}")
    return 0
