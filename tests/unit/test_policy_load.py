"""heal.toml: defaults, validation naming key/value/rule, hot reload, last valid kept."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from pipeline.errors import PolicyError
from pipeline.model import Mode
from pipeline.policy import Policy, PolicyLoader, load_policy, parse_policy

GOOD = """
mode = "auto-safe"
[verify]
[[verify.checks]]
name = "tests"
argv = ["python", "-m", "pytest", "-q"]
timeout_s = 30
[protect]
paths = ["migrations/**", "*.lock"]
[limits]
max_diff_lines = 50
max_files = 3
[[windows]]
days = ["mon", "tue"]
start = "08:00"
end = "18:00"
"""


def test_defaults_without_a_file(tmp_path: Path) -> None:
    # Given no heal.toml, When loaded, Then DESIGN.md defaults apply
    policy = load_policy(tmp_path / "heal.toml")
    assert policy.mode == Mode.SUGGEST
    assert policy.checks == ()
    assert policy.include_failing is True
    assert policy.is_protected(".git/config") is not None
    assert policy.is_protected("src/app.py") is None
    assert policy.window_open()


def test_full_file_parses() -> None:
    import tomllib

    policy = parse_policy(tomllib.loads(GOOD))
    assert policy.mode == Mode.AUTO_SAFE
    assert policy.checks[0].argv == ("python", "-m", "pytest", "-q")
    assert policy.checks[0].timeout_s == 30
    assert policy.is_protected("migrations/0001.sql") == "migrations/**"
    assert policy.is_protected("uv.lock") == "*.lock"
    assert policy.max_diff_lines == 50
    monday_noon = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
    sunday_noon = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
    assert policy.window_open(monday_noon)
    assert not policy.window_open(sunday_noon)


@pytest.mark.parametrize(
    ("data", "key", "rule"),
    [
        ({"mode": "yolo"}, "mode", "must be one of"),
        ({"limits": {"max_files": 0}}, "limits.max_files", "positive integer"),
        ({"limits": {"max_diff_lines": "many"}}, "limits.max_diff_lines", "positive integer"),
        ({"verify": {"checks": [{"argv": "pytest -q"}]}}, "verify.checks[0].argv",
         "not a shell string"),
        ({"verify": {"checks": [{"argv": []}]}}, "verify.checks[0].argv", "non-empty"),
        ({"protect": {"paths": "secret/**"}}, "protect.paths", "list"),
        ({"windows": [{"start": "18:00", "end": "08:00"}]}, "windows[0].end", "later than"),
        ({"windows": [{"days": ["funday"]}]}, "windows[0].days", "must list days"),
        ({"colour": "blue"}, "colour", "unknown key"),
        ({"limits": {"max_lines": 3}}, "limits.max_lines", "unknown key"),
        ({"judges": {"llm": {"enabled": True}}}, "judges.llm.enabled",
         "only operator configuration"),
        ({"judges": {"llm": {"url": "http://evil.example/v1"}}}, "judges.llm.url",
         "only operator configuration"),
        ({"judges": {"llm": {"api_key_env": "AWS_SECRET_ACCESS_KEY"}}},
         "judges.llm.api_key_env", "only operator configuration"),
    ],
)
def test_invalid_values_name_key_value_and_rule(data: dict, key: str, rule: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(data)
    assert info.value.key == key
    assert rule in info.value.rule
    assert key in str(info.value)


def test_not_toml_is_a_policy_error(tmp_path: Path) -> None:
    (tmp_path / "heal.toml").write_text("mode = \n")
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_policy(tmp_path / "heal.toml")


def _touch_later(path: Path, text: str) -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def test_hot_reload_and_last_valid_policy_kept(tmp_path: Path) -> None:
    loader = PolicyLoader(tmp_path)
    assert loader.current() == Policy()
    # Given a valid file, When it appears, Then it is loaded without restarting
    _touch_later(tmp_path / "heal.toml", 'mode = "auto"\n')
    assert loader.current().mode == Mode.AUTO
    # When it becomes invalid, Then the last valid policy stays and the warning says so
    _touch_later(tmp_path / "heal.toml", 'mode = "sometimes"\n')
    assert loader.current().mode == Mode.AUTO
    assert "mode" in loader.warning and "keeping the last valid policy" in loader.warning
    # When it is fixed again, Then the new value is used and the warning clears
    _touch_later(tmp_path / "heal.toml", 'mode = "observe"\n')
    assert loader.current().mode == Mode.OBSERVE
    assert loader.warning == ""


def test_of_two_valid_policies_the_newer_wins_and_in_doubt_the_lower_mode() -> None:
    from pipeline.model import Mode
    from pipeline.policy import DOUBT_S, Policy, _Seen, newest

    auto, observe = Policy(mode=Mode.AUTO), Policy(mode=Mode.OBSERVE)
    older_auto, newer_observe = _Seen(auto, 100.0), _Seen(observe, 100.0 + DOUBT_S + 5)
    assert newest(older_auto, newer_observe) is newer_observe
    assert newest(newer_observe, older_auto) is newer_observe
    newer_auto = _Seen(auto, 100.0 + DOUBT_S + 5)
    assert newest(_Seen(observe, 100.0), newer_auto) is newer_auto
    # seen within DOUBT_S of each other: the order is in doubt, the lower mode wins
    close_auto = _Seen(auto, 100.0 + DOUBT_S / 2)
    assert newest(_Seen(observe, 100.0), close_auto).policy.mode == Mode.OBSERVE
    assert newest(None, older_auto) is older_auto and newest(None, None) is None
