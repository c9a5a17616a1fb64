"""Guardrail thresholds as heal.toml keys: validated with the key and the allowed range, hot
reloaded, and shown by `heal policy` with where each value came from."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.errors import PolicyError
from pipeline.guardrails.budget import apply_rates
from pipeline.policy import PolicyLoader, parse_policy


def _repo(tmp_path: Path, text: str) -> Path:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "heal.toml").write_text(text)
    return tmp_path


@pytest.mark.parametrize(("table", "message"), [
    ({"execution": {"degrade_after": 0}},
     "execution.degrade_after = 0: must be an integer >= 1 and <= 1000"),
    ({"execution": {"degraded_confidence_bonus": 2.0}},
     "execution.degraded_confidence_bonus = 2.0: must be a number >= 0 and <= 1"),
    ({"budget": {"automatic_fixes_minutes": 0}},
     "budget.automatic_fixes_minutes = 0: must be a number > 0 and <= 10080"),
    ({"breaker": {"cooldown_minutes": "soon"}}, 'breaker.cooldown_minutes = "soon"'),
    ({"lifecycle": {"unrunnable_quarantine_after": 1.5}},
     "lifecycle.unrunnable_quarantine_after = 1.5: must be an integer"),
    ({"breaker": {"cooldown": 5}}, "breaker.cooldown = 5: unknown key; allowed: window_minutes"),
    ({"branches": {"keep": -1}}, "branches.keep = -1: must be an integer >= 0 and <= 100000"),
    ({"branches": {"keep": 2.5}}, "branches.keep = 2.5: must be an integer"),
    ({"branches": {"max_age_days": 0}},
     "branches.max_age_days = 0: must be a number > 0 and <= 36500"),
    ({"branches": {"max_age_days": float("inf")}}, "branches.max_age_days = inf: must be a number"),
    ({"branches": {"prune": True}},
     "branches.prune = true: unknown key; allowed: keep, max_age_days"),
    ({"limits": {"dedupe_minutes": -1}}, "limits.dedupe_minutes = -1: must be a number >= 0"),
    # NaN compares False with everything and infinity is no limit: both are refused
    ({"lifecycle": {"confidence": float("nan")}},
     "lifecycle.confidence = nan: must be a number >= 0.5 and <= 0.999"),
    ({"execution": {"min_auto_confidence": float("nan")}},
     "execution.min_auto_confidence = nan: must be a number >= 0 and <= 1"),
    ({"budget": {"llm_tokens": float("inf")}}, "budget.llm_tokens = inf: must be a number"),
    ({"limits": {"check_timeout_s": float("nan")}},
     "limits.check_timeout_s = nan: must be a positive number <= 86400"),
    ({"limits": {"check_timeout_s": 1e308}},
     "limits.check_timeout_s = 1e308: must be a positive number <= 86400"),
    ({"limits": {"dedupe_minutes": float("nan")}},
     "limits.dedupe_minutes = nan: must be a number >= 0 and <= 10080"),
    ({"limits": {"dedupe_minutes": 1e300}}, "limits.dedupe_minutes = 1e300: must be a number"),
    ({"limits": {"max_files": 99999999999999999999999}},
     "limits.max_files = 99999999999999999999999: must be a positive integer <= 100000"),
    ({"limits": {"max_diff_lines": 10**400}}, "…: must be a positive integer <= 1000000"),
    ({"verify": {"checks": [{"argv": ["make"], "timeout_s": float("inf")}]}},
     "verify.checks[0].timeout_s = inf: must be a positive number <= 86400"),
    ({"escalation": {"dedupe_hours": float("nan")}}, "escalation.dedupe_hours = nan"),
])
def test_invalid_thresholds_name_the_key_and_the_allowed_range(table: dict[str, object],
                                                               message: str) -> None:
    with pytest.raises(PolicyError, match=None) as info:
        parse_policy(table)
    assert message in str(info.value)


def test_thresholds_reach_the_guardrails_config_objects(tmp_path: Path) -> None:
    policy = parse_policy({"execution": {"quarantine_window_minutes": 5, "degrade_after": 4},
                           "budget": {"automatic_fixes": 6, "automatic_fixes_minutes": 3},
                           "breaker": {"cooldown_minutes": 2, "step_threshold": 3,
                                       "half_open_probes": 2, "probe_timeout_minutes": 4},
                           "lifecycle": {"min_attempts": 4},
                           "limits": {"dedupe_minutes": 0}})
    limits = policy.limits
    assert limits.execution().quarantine_window_s == 300 and limits.execution().degrade_after == 4
    settings = Settings.from_env({"HEAL_HOME": str(tmp_path)})
    own = apply_rates(settings, limits, Path("/repo"))[0]  # the repository's own bucket
    assert own.config().bucket_capacity == 6 and own.config().bucket_per_s == 6 / 180
    assert limits.breaker().cooldown_s == 120 and limits.breaker().step_threshold == 3
    assert limits.breaker().half_open_probes == 2 and limits.breaker().probe_timeout_s == 240
    assert limits.lifecycle().min_attempts == 4
    assert policy.dedupe_minutes == 0  # 0 turns dedupe off


def test_thresholds_are_hot_reloaded(tmp_path: Path) -> None:
    root = _repo(tmp_path, "[budget]\nautomatic_fixes = 5\n")
    loader = PolicyLoader(root)
    assert loader.current().limits.get("budget.automatic_fixes") == 5
    (root / "heal.toml").write_text("[budget]\nautomatic_fixes = 50\n")
    assert loader.current().limits.get("budget.automatic_fixes") == 50
    (root / "heal.toml").write_text("[budget]\nautomatic_fixes = -50\n")  # invalid: kept
    assert loader.current().limits.get("budget.automatic_fixes") == 50
    assert "budget.automatic_fixes" in loader.warning


def test_heal_policy_shows_values_and_sources(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # (min_auto_confidence = 0.8 tightens the default 0.7: a repository may only tighten it)
    root = _repo(tmp_path, "mode = \"auto-safe\"\n[execution]\nmin_auto_confidence = 0.8\n")
    assert main(["policy", "--repo", str(root), "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out)
    # (off a terminal: one line, keys sorted, as every --json output)
    assert out.count("\n") == 1 and out.index('"file"') < out.index('"keys"'), out[:200]
    rows = {r["key"]: r for r in report["keys"]}
    assert rows["mode"] == {"key": "mode", "value": "auto-safe", "source": "file"}
    assert rows["execution.min_auto_confidence"]["value"] == 0.8
    assert rows["execution.min_auto_confidence"]["source"] == "file"
    assert rows["execution.recover_after"]["source"] == "default"
    assert rows["breaker.cooldown_minutes"]["value"] == 30
    assert rows["breaker.half_open_probes"]["value"] == 1
    # the escalation rules in force (the built-in ones here) are part of the policy shown
    assert rows["escalation.rules"]["source"] == "default"
    assert {r["when"] for r in rows["escalation.rules"]["value"]} >= {"immediate", "attempts"}
    assert main(["policy", "--repo", str(root)]) == 0
    assert "execution.min_auto_confidence" in capsys.readouterr().out
    (root / "heal.toml").write_text("[execution]\ndegrade_after = 0\n")
    assert main(["policy", "--repo", str(root)]) == 2
    assert "execution.degrade_after = 0: must be an integer >= 1" in capsys.readouterr().err
