"""Shadow mode on the real engines: history through fingerprint/lookup/validate in isolation;
the report counts what auto-safe would have done, and neither the repository nor the real
streams change."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest
import redis

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.demo.sample import break_assertion, break_formatting, create_repo
from pipeline.events import ErrorEvent, Repo, Source, Workflow
from pipeline.trust.attest import attest
from pipeline.validate.runner import run_argv

UNITTEST = ("python", "-m", "unittest", "discover", "-s", "tests", "-t", ".", "-q")
MISSING = ("python", "-c", "import yaml_heal_shadow_missing")


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                          text=True).stdout


def _state(root: Path) -> tuple[str, str, str, str]:
    """Everything verification could change in a repository: HEAD, branches, status, tree."""
    files = sorted(str(p.relative_to(root)) + ":" + p.read_text(errors="replace")
                   for p in root.rglob("*") if p.is_file() and ".git" not in p.parts)
    return (_git(root, "rev-parse", "HEAD"), _git(root, "branch", "-a"),
            _git(root, "status", "--porcelain"), "\n".join(files))


def _event(root: Path, name: str, command: tuple[str, ...]) -> ErrorEvent:
    run = run_argv(list(command), str(root), 60.0)
    assert run["exit_code"] != 0, f"{name} should fail: {run}"
    # history heal run published (signed as the operator): the shadow may re-run its commands
    return attest(ErrorEvent(
        id=f"hist-{name}", text=run["tail"], source=Source(kind="subprocess", name="ci"),
        workflow=Workflow(id="ci", run_id="7", step=name),
        repo=Repo(path=str(root), commit=_git(root, "rev-parse", "HEAD").strip(),
                  branch="main"),
        command=command, exit_code=run["exit_code"], tags={"cwd": str(root)}),
        Settings.from_env())


@pytest.fixture
def history(heal_env: dict[str, str], tmp_path: Path) -> tuple[Path, Settings, redis.Redis]:
    """A repository with a formatting break and a real bug, and three failures of it in the
    real error stream (published earlier, never processed)."""
    root = tmp_path / "shop"
    create_repo(root)
    break_formatting(root)
    break_assertion(root)
    settings = Settings.from_env()
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    for name, command in (("format", ("ruff", "format", "--check", ".")),
                          ("missing-module", MISSING), ("logic-bug", UNITTEST)):
        client.xadd(settings.stream("errors"), {"event": _event(root, name, command).encode()})
    return root, settings, client


def test_shadow_replay_reports_what_auto_safe_would_do_and_changes_nothing(
    history: tuple[Path, Settings, redis.Redis], capsys: pytest.CaptureFixture[str],
) -> None:
    root, settings, client = history
    before = _state(root)
    keys_before = sorted(client.scan_iter(match=f"{settings.prefix}*"))

    assert main(["backfill", "--replay", "--shadow", "--mode", "auto-safe", "--json"]) == 0
    captured = capsys.readouterr()
    report = orjson.loads(captured.out)
    rows = {r["original_id"]: r for r in report["rows"]}

    assert any(n.startswith("database:") for n in report["notes"])
    assert report["mode"] == "auto-safe"
    assert report["errors"] == 3
    assert report["would_apply"] == 1, rows
    assert rows["hist-format"]["decision"] == "apply"
    assert rows["hist-format"]["verified"] == "passed"
    assert rows["hist-logic-bug"]["decision"] == "escalate"
    # a missing module is a MODERATE install command: auto-safe leaves it as a suggestion
    assert rows["hist-missing-module"]["decision"] == "suggest"
    assert rows["hist-missing-module"]["category"] == "MODERATE"
    assert (report["matched"], report["unmatched"]) == (2, 1)
    assert report["by_tier"] == {"1": 2}
    assert (report["suggestions"], report["escalations"]) == (1, 1)
    assert report["auto_fix_rate"] == pytest.approx(1 / 3)
    assert report["precision"] == 1.0
    assert "heal shadow:" in captured.err  # progress goes to stderr

    # nothing changed: the repository, and the real prefix (no new stream, no new key)
    assert _state(root) == before
    assert sorted(client.scan_iter(match=f"{settings.prefix}*")) == keys_before
    assert client.xlen(settings.stream("errors")) == 3


def test_shadow_suggest_mode_would_apply_nothing(
    history: tuple[Path, Settings, redis.Redis], capsys: pytest.CaptureFixture[str],
) -> None:
    root, _settings, _client = history
    before = _state(root)
    assert main(["backfill", "--replay", "--shadow", "--mode", "suggest"]) == 0
    out = capsys.readouterr().out
    assert "would auto-apply  0" in out
    assert "auto-fix rate     0%" in out
    # under suggest, precision covers every fix put to a human: the format fix verified
    assert "precision         100% (verification passed / verified, among 1 fix(es) " \
        "suggested)" in out
    assert "suggest   format.ruff_format/fix (SAFE, tier 1, passed)" in out
    assert _state(root) == before


def test_shadow_of_discovered_logs_publishes_nothing_and_saves_no_mark(
    heal_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path / "shop"
    create_repo(root)
    (root / "logs").mkdir()
    (root / "logs/ci.log").write_text(
        "2024-01-01 INFO collecting\n"
        "Traceback (most recent call last):\n"
        '  File "shop/cli.py", line 1, in <module>\n'
        "ModuleNotFoundError: No module named 'yaml'\n"
        "would reformat shop/prices.py\n"
        "FAILED tests/test_shop.py::PriceTest::test_parse - AssertionError: 120 != 1205\n")
    before = _state(root)
    settings = Settings.from_env()
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])

    assert main(["backfill", "--discover", str(root), "--shadow", "--json"]) == 0
    captured = capsys.readouterr()
    assert "1 log file(s) under" in captured.err  # with --json the listing goes to stderr
    report = orjson.loads(captured.out)
    assert report["errors"] >= 2
    assert report["errors"] == (report["would_apply"] + report["suggestions"]
                                + report["escalations"] + report["rejected"]
                                + report["observed"] + report["no_verdict"])
    # a log line names no command: nothing can be verified, so nothing would be auto-applied
    assert report["would_apply"] == 0
    assert report["precision"] is None
    assert _state(root) == before
    assert list(client.scan_iter(match=f"{settings.prefix}*")) == []


def test_shadow_of_an_agent_transcript_verifies_in_a_copy(
    heal_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = tmp_path / "shop"
    create_repo(root)
    break_formatting(root)
    # a transcript is untrusted: heal acts on it only where the operator registered the
    # repository and allowed the command (pipeline.trust)
    operator = tmp_path / "operator.toml"
    operator.write_text(f'[trust]\nrepos = ["{root.resolve()}"]\ncommands = [["ruff", "format",'
                        ' "--check", "."], ["python", "-m", "unittest", "*"]]\n')
    operator.chmod(0o600)
    monkeypatch.setenv("HEAL_CONFIG", str(operator))
    run = run_argv(["ruff", "format", "--check", "."], str(root), 60.0)
    transcript = tmp_path / "session.jsonl"
    transcript.write_text(orjson.dumps({
        "tool": "Bash", "input": {"command": "ruff format --check ."}, "output": run["tail"],
        "exit_code": run["exit_code"], "cwd": str(root), "sessionId": "s1"}).decode() + "\n")
    before = _state(root)

    assert main(["backfill", "--transcript", str(transcript), "--shadow", "--json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert (report["errors"], report["would_apply"]) == (1, 1), report["rows"]
    assert report["rows"][0]["fix_id"] == "format.ruff_format/fix"
    assert report["precision"] == 1.0
    assert _state(root) == before
