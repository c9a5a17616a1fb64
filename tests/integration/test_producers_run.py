"""``heal run`` against the real embedded Redis: publish on failure, wait, rerun."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from pipeline.cli import main
from pipeline.config import STAGES, Settings
from pipeline.events import ErrorEvent, OutcomeEvent
from producers.decision import DecisionWaiter
from producers.run import RunOptions, RunSession


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
             ) -> Settings:
    env = {"HEAL_HOME": str(tmp_path / "home"), "HEAL_REDIS_URL": redis_url,
           "HEAL_STREAM_PREFIX": prefix}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings.from_env()


def errors(client: redis.Redis, settings: Settings) -> list[ErrorEvent]:
    return [ErrorEvent.decode(f[b"event"]) for _, f in client.xrange(settings.stream("errors"))]


def git_repo(path: Path) -> str:
    path.mkdir()
    for cmd in (["init", "-q", "-b", "main"], ["-c", "user.email=t@t", "-c", "user.name=t",
                                                 "commit", "-q", "--allow-empty", "-m", "x"]):
        subprocess.run(["git", "-C", str(path), *cmd], check=True)
    return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()


def session(settings: Settings, client: redis.Redis, argv: list[str], **opts: Any) -> RunSession:
    return RunSession(RunOptions(argv, **opts), settings, client, out=open_log())


def open_log() -> Any:
    import io

    return io.StringIO()


def test_failure_is_published_with_exit_code_tail_and_repo(
    tmp_path: Path, settings: Settings, client: redis.Redis
) -> None:
    commit = git_repo(tmp_path / "repo")
    argv = ["sh", "-c", "echo compiling; echo 'ImportError: no yaml' >&2; exit 3"]
    run = session(settings, client, argv, wait=False, cwd=str(tmp_path / "repo"), step="build",
                  mode="suggest")
    assert run.execute() == 3
    (event,) = errors(client, settings)
    assert event.exit_code == 3 and event.command == tuple(argv)
    assert "compiling" in event.text and "ImportError: no yaml" in event.text
    assert event.source.kind == "subprocess"
    assert (event.repo.commit, event.repo.branch) == (commit, "main")
    assert event.workflow.step == "build"
    assert event.tags["mode"] == "suggest" and event.tags["stderr_bytes"] == 21
    assert event.id in run.out.getvalue()


def test_a_later_success_resolves_the_failure(settings: Settings, client: redis.Redis,
                                              tmp_path: Path) -> None:
    marker = tmp_path / "ok"
    argv = ["sh", "-c", f"test -f {marker}"]
    assert session(settings, client, argv, wait=False, step="check").execute() == 1
    (event,) = errors(client, settings)
    marker.touch()
    assert session(settings, client, argv, wait=False, step="check").execute() == 0
    (row,) = client.xrange(settings.stream("resolutions"))
    assert row[1][b"error_id"].decode() == event.id
    assert len(errors(client, settings)) == 1  # a success is never published as an error


def fake_pipeline(client: redis.Redis, settings: Settings, status: str,
                  done: threading.Event) -> None:
    """Answers the first error with an outcome, like the apply stage would."""
    reply = client.xread({settings.stream("errors"): "0-0"}, block=5000, count=1)
    if reply:
        event = ErrorEvent.decode(reply[0][1][0][1][b"event"])
        outcome = OutcomeEvent(id=f"{event.id}:apply", error_id=event.id, error=event,
                               status=status, fix_id="fix-1", detail="installed pyyaml")
        client.xadd(settings.stream("outcomes"), {"event": outcome.encode()})
    done.set()


def all_live(_c: Any, _s: Settings) -> set[str]:
    return set(STAGES)


def test_applied_fix_reruns_the_command_and_exits_with_its_status(
    settings: Settings, client: redis.Redis, tmp_path: Path
) -> None:
    marker = tmp_path / "fixed"
    argv = ["sh", "-c", f"test -f {marker} || {{ touch {marker}; echo broken >&2; exit 1; }}"]
    done = threading.Event()
    threading.Thread(target=fake_pipeline, args=(client, settings, "applied", done)).start()
    run = session(settings, client, argv, timeout_s=10)
    run.waiter_factory = lambda c, s: DecisionWaiter(c, s, live=all_live)
    assert run.execute() == 0
    assert done.is_set()
    out = run.out.getvalue()
    assert "applied and verified fix fix-1" in out and "running the command again" in out
    assert len(client.xrange(settings.stream("resolutions"))) == 1


def test_json_file_holds_the_decision(settings: Settings, client: redis.Redis,
                                      tmp_path: Path) -> None:
    import json

    marker = tmp_path / "fixed"
    argv = ["sh", "-c", f"test -f {marker} || {{ touch {marker}; echo broken >&2; exit 1; }}"]
    done = threading.Event()
    threading.Thread(target=fake_pipeline, args=(client, settings, "applied", done)).start()
    out = tmp_path / "decision.json"
    run = session(settings, client, argv, timeout_s=10, json_to=str(out))
    run.waiter_factory = lambda c, s: DecisionWaiter(c, s, live=all_live)
    assert run.execute() == 0
    decision = json.loads(out.read_text())
    assert decision["decision"] == "applied" and decision["resolved"] is True
    assert decision["exit_code"] == 1 and decision["exit_status"] == 0
    assert decision["fix"] == {"id": "fix-1"} and decision["detail"] == "installed pyyaml"
    assert decision["error_id"] == errors(client, settings)[0].id


def test_without_workers_the_stages_run_inline(settings: Settings, client: redis.Redis) -> None:
    drained: list[list[str]] = []

    def drain(s: Settings, c: Any, stages: list[str]) -> int:
        drained.append(stages)
        done = threading.Event()
        fake_pipeline(c, s, "suggested", done)
        return 1

    run = session(settings, client, ["sh", "-c", "exit 5"], timeout_s=10)
    run.waiter_factory = lambda c, s: DecisionWaiter(c, s, drain=drain, live=lambda *_: set())
    assert run.execute() == 5  # a suggestion changes nothing: the original status stays
    assert drained == [list(STAGES)]
    # (the handle to apply it: the error id, as the CI reports name it)
    error_id = errors(client, settings)[0].id
    assert (f"suggested fix fix-1: installed pyyaml (apply it with `heal apply {error_id}`)"
            in run.out.getvalue())


def test_no_decision_in_time_keeps_the_status(settings: Settings, client: redis.Redis) -> None:
    run = session(settings, client, ["sh", "-c", "exit 2"], timeout_s=0.3)
    run.waiter_factory = lambda c, s: DecisionWaiter(c, s, live=all_live)
    assert run.execute() == 2
    assert "no decision within 0.3s" in run.out.getvalue()


def test_a_dead_letter_ends_the_wait(settings: Settings, client: redis.Redis) -> None:
    def drain(s: Settings, c: Any, stages: list[str]) -> int:
        (entry,) = c.xrange(s.stream("errors"))
        c.xadd(s.stream("dead"), {"reason": "handler crashed", "raw": entry[1][b"event"]})
        return 1

    run = session(settings, client, ["sh", "-c", "exit 1"], timeout_s=10)
    run.waiter_factory = lambda c, s: DecisionWaiter(c, s, drain=drain, live=lambda *_: set())
    assert run.execute() == 1
    assert "could not process the error: handler crashed" in run.out.getvalue()


def test_cli_exit_codes(settings: Settings, client: redis.Redis,
                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--no-wait", "--", "sh", "-c", "exit 4"]) == 4
    assert main(["run", "--", "true"]) == 0
    assert main(["run"]) == 2
    assert main(["run", "--", "no-such-command-heal"]) == 2
    err = capsys.readouterr().err
    assert "no command given" in err and "command not found: 'no-such-command-heal'" in err
    (event,) = errors(client, settings)
    assert event.exit_code == 4 and orjson.loads(event.encode())["command"][0] == "sh"


def test_live_stages_counts_worker_heartbeats_not_inline_drains(
    settings: Settings, client: redis.Redis
) -> None:
    from producers.decision import live_stages

    stream = settings.stream("errors")
    assert live_stages(client, settings) == set()
    client.xgroup_create(stream, "fingerprint", id="0", mkstream=True)
    client.xadd(stream, {"event": b"{}"})
    client.xreadgroup("fingerprint", "inline-host-1", {stream: ">"}, count=1)
    assert live_stages(client, settings) == set()  # a `heal run` drain is not a worker
    client.set(settings.key("alive", "fingerprint", "host-42-0"), "1", ex=15)
    assert live_stages(client, settings) == {"fingerprint"}


def test_a_failing_stage_does_not_change_the_exit_status(
    settings: Settings, client: redis.Redis
) -> None:
    def drain(s: Settings, c: Any, stages: list[str]) -> int:
        raise RuntimeError("stage exploded")

    run = session(settings, client, ["sh", "-c", "exit 6"], timeout_s=5)
    run.waiter_factory = lambda c, s: DecisionWaiter(c, s, drain=drain, live=lambda *_: set())
    assert run.execute() == 6
    assert "pipeline failed while deciding (RuntimeError: stage exploded)" in run.out.getvalue()


def test_a_decision_file_that_cannot_be_written_only_warns(
    settings: Settings, client: redis.Redis, tmp_path: Path
) -> None:
    # the folder went away after the CLI checked it: the status is the command's own
    for argv, status in ((["true"], 0), (["sh", "-c", "exit 3"], 3)):
        run = session(settings, client, argv, wait=False,
                      json_to=str(tmp_path / "gone" / "decision.json"))
        assert run.execute() == status
        assert "could not write the decision to --json-file" in run.out.getvalue()


def test_a_directory_as_the_command_is_named_a_directory_not_permission_denied(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    """`heal run -- DIR` says the command is a directory (exit 2, before anything runs);
    "Permission denied" would send the user to chmod. A file without the execute bit still
    says it is not executable, and how to run it."""
    worktree = Path(__file__).resolve().parents[2]
    (tmp_path / "adir").mkdir()
    script = tmp_path / "noexec.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    env = {**os.environ, **heal_env, "PYTHONPATH": str(worktree)}
    cli = "import sys; from pipeline.cli import main; sys.exit(main())"

    def heal_run(program: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", cli, "run", "--", program], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=60)

    done = heal_run(str(tmp_path / "adir"))
    assert done.returncode == 2, done.stderr
    assert f"command is a directory, not a program: '{tmp_path / 'adir'}'" in done.stderr
    assert "Permission denied" not in done.stderr
    done = heal_run("./noexec.sh")
    assert done.returncode == 2, done.stderr
    assert "command not executable: './noexec.sh' (Permission denied)" in done.stderr
    assert "chmod +x ./noexec.sh" in done.stderr


def test_an_empty_command_is_called_empty_and_the_interpreter_hint_fits_the_script(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    """QA s13 D10: `heal run -- ''` said "command is a directory"; the hint for a file
    without the execute bit always proposed `sh`, also for a Python file."""
    worktree = Path(__file__).resolve().parents[2]
    scripts = {"app.py": "print('hi')\n",  # no #! line: its extension
               "tool": "#!/usr/bin/env bash\necho hi\n",  # its #! line (through env)
               "job.sh": "#!/usr/bin/python3 -u\nprint('hi')\n",  # the #! over the extension
               "data": "hello\n"}  # neither: no guess
    for name, body in scripts.items():
        (tmp_path / name).write_text(body)
        (tmp_path / name).chmod(0o644)
    env = {**os.environ, **heal_env, "PYTHONPATH": str(worktree)}
    cli = "import sys; from pipeline.cli import main; sys.exit(main())"

    def heal_run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", cli, "run", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=60)

    # Given an empty command: it is called empty (exit 2), not a directory
    for args in (("--", ""), ("--json", "--", "")):
        done = heal_run(*args)
        assert done.returncode == 2, done.stderr
        assert "command is empty: ''" in done.stderr, done.stderr
        assert "directory" not in done.stderr
    # and each script without the execute bit gets the hint of its own interpreter
    for name, interpreter in (("app.py", "python3"), ("tool", "bash"), ("job.sh", "python3"),
                              ("data", "INTERPRETER")):
        done = heal_run("--", f"./{name}")
        assert done.returncode == 2, done.stderr
        assert f"chmod +x ./{name}" in done.stderr, done.stderr
        assert f"(e.g. heal run -- {interpreter} ./{name})" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_a_sigkilled_command_is_not_diagnosed_as_out_of_memory_for_certain(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    """A command killed by SIGKILL with no output (exit 137) is escalated with a hedged
    diagnosis: killed by SIGKILL, commonly the OOM killer, but a timeout or a cancelled job
    kills the same way; never the flat "The process ran out of memory." (the pattern stays
    proc.oom_killed)."""
    worktree = Path(__file__).resolve().parents[2]
    env = {**os.environ, **heal_env, "PYTHONPATH": str(worktree)}
    cli = "import sys; from pipeline.cli import main; sys.exit(main())"
    done = subprocess.run([sys.executable, "-c", cli, "run", "--json", "--timeout", "60", "--",
                           "sh", "-c", "kill -9 $$"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 137, done.stdout + done.stderr
    # (the decision object goes to stderr: stdout is the command's)
    decision = orjson.loads(done.stderr.strip().splitlines()[-1])
    assert decision["decision"] == "escalated", decision
    assert decision["match"]["pattern_id"] == "proc.oom_killed", decision
    detail = decision["detail"]
    assert "The process ran out of memory." not in detail, detail
    for said in ("SIGKILL", "OOM killer", "timeout", "cancel"):
        assert said in detail, detail


def test_the_not_executable_hints_show_a_script_name_s_control_characters_escaped(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    """QA s13b D7: the first mention of a script name was escaped, but the `chmod +x` and
    interpreter hints copied its raw ESC and BEL to the terminal (which can set its title)."""
    worktree = Path(__file__).resolve().parents[2]
    # Given a script without the execute bit whose name holds terminal escapes
    name = "esc\x1b]0;T\x07.py"
    (tmp_path / name).write_text("print('hi')\n")
    (tmp_path / name).chmod(0o644)
    env = {**os.environ, **heal_env, "PYTHONPATH": str(worktree)}
    cli = "import sys; from pipeline.cli import main; sys.exit(main())"
    # When heal run is asked to run it
    done = subprocess.run([sys.executable, "-c", cli, "run", "--", f"./{name}"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    # Then no control character reaches the terminal, and each hint is a command that
    # names the real file (bash's $'...' quoting), not its visible form
    assert done.returncode == 2, done.stderr
    assert "\x1b" not in done.stderr and "\x07" not in done.stderr, repr(done.stderr)
    word = "$'./esc\\x1b]0;T\\x07.py'"
    assert f"(chmod +x {word})" in done.stderr, done.stderr
    assert f"(e.g. heal run -- python3 {word})" in done.stderr, done.stderr
    # and the chmod hint, pasted into bash, makes that very file executable
    subprocess.run(["bash", "-c", f"chmod +x {word}"], cwd=tmp_path, check=True)
    assert os.access(tmp_path / name, os.X_OK)
