"""Configuration refused before any work: malformed engine URLs (as HEAL_PARTITIONS is) and a
state home heal cannot use, each with a message naming the variable and what to change."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.errors import ConfigError
from pipeline.homedir import home_problem, require_home


@pytest.mark.parametrize("variable, value, says", [
    ("HEAL_REDIS_URL", "http://foo", "HEAL_REDIS_URL=http://foo: unsupported scheme 'http'"),
    ("HEAL_REDIS_URL", "redis://:pw@[::1", "HEAL_REDIS_URL is not a valid URL (Invalid IPv6"),
    ("HEAL_REDIS_URL", "redis://:pw@h:99999/0", "HEAL_REDIS_URL=redis://:***@h:99999/0: bad port"),
    ("HEAL_REDIS_URL", "redis://h:6379/x", "the database 'x' is not a number"),
    ("HEAL_REDIS_URL", "unix://", "no socket path"),
    ("HEAL_DATABASE_URL", "mysql://u:pw@h/db", "HEAL_DATABASE_URL=mysql://u:***@h/db: "
                                               "unsupported scheme 'mysql'"),
    ("HEAL_DATABASE_URL", "postgresql://h:x/db", "HEAL_DATABASE_URL=postgresql://h:x/db: bad port"),
])
def test_a_malformed_engine_url_is_a_configuration_error(variable: str, value: str,
                                                          says: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"HEAL_HOME": "/tmp/h", variable: value})
    assert says in str(info.value) and "pw@" not in str(info.value)
    assert "give it as" in str(info.value) or "use one of" in str(info.value)


@pytest.mark.parametrize("value", [
    "redis://localhost", "redis://:pw@h:6379/0", "rediss://h:6380", "unix:///tmp/r.sock",
    "redis+cluster://h:7000", "rediss+cluster://h:7000/0",
])
def test_well_formed_redis_urls_are_kept(value: str) -> None:
    assert Settings.from_env({"HEAL_HOME": "/tmp/h", "HEAL_REDIS_URL": value}).redis_url == value


def test_a_home_under_a_file_is_refused_without_creating_anything(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.touch()
    assert home_problem(afile) == f"{afile} is not a directory"
    assert home_problem(afile / "a" / "home") == f"{afile} is not a directory"
    assert home_problem(tmp_path / "new" / "home") == ""
    with pytest.raises(ConfigError, match="set HEAL_HOME to a directory heal may create"):
        require_home(afile / "home", f"{afile / 'home'} (from HEAL_HOME)")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("variable, good, bad", [
    ("HEAL_EMBEDDER", ["", "lean", "reference"], ["bogus", "Reference", " lean"]),
    ("HEAL_PROGRESS", ["", "0", "1"], ["yes", "true", "2"]),
])
def test_a_choice_setting_takes_its_words_only(variable: str, good: list[str],
                                               bad: list[str]) -> None:
    for value in good:
        Settings.from_env({"HEAL_HOME": "/tmp/h", variable: value})
    for value in bad:
        with pytest.raises(ConfigError, match=f"{variable}=.*must be one of"):
            Settings.from_env({"HEAL_HOME": "/tmp/h", variable: value})
