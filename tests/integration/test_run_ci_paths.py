"""``heal run`` on the paths that reach no decision (QA s14a #4, #5, #6, #12): an engine that
cannot be reached, Ctrl-C, a refusal, a command passing, a command or checkout path that is
not UTF-8. Each runs this checkout's ``heal`` in a subprocess (PYTHONPATH first) with the CI
providers' documented variables, as test_ci_providers.py does.

The contract: heal run exits with the command's status whatever happened; the CI gets its
outputs, summary, annotation, artifacts, Code Quality report and dotenv on every failure; every
decision JSON has the same keys, its command redacted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import orjson
import redis

from pipeline.ci.report import RunReport
from pipeline.events import ErrorEvent
from tests._interrupt import sigint_default

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]
UNREACHABLE = "redis://127.0.0.1:1/0"
SECRET = "ghp_abcdefghijklmnopqrstuvwxyz0123456789"
#: the keys README "Output" promises on every path (a decided run's, RunReport.to_json)
KEYS = set(RunReport(ErrorEvent(id="x", text="t"), 1).to_json())


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HEAL_", "GITHUB_", "GITLAB_", "CI_", "RUNNER_"))
           and k not in {"CI", "HEAL_PROGRESS"}}
    env.update({"HEAL_HOME": str(home), "PYTHONPATH": str(ROOT), **extra})
    return env


def _decision_line(stderr: str) -> dict[str, Any]:
    """The decision JSON among heal's stderr lines (the engines heal starts in the background
    while the command runs may add a line of their own after it)."""
    line = [ln for ln in stderr.splitlines() if ln.startswith("{")][-1]
    return cast(dict[str, Any], json.loads(line))


def _ci(tmp: Path) -> dict[str, str]:
    """GitHub Actions and GitLab CI at once (as the QA report ran them)."""
    (tmp / "runner").mkdir()
    (tmp / "project").mkdir()
    return {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(tmp / "summary.md"),
            "GITHUB_OUTPUT": str(tmp / "output"), "RUNNER_TEMP": str(tmp / "runner"),
            "GITLAB_CI": "true", "CI_PROJECT_DIR": str(tmp / "project")}


def _outputs(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line)


def _heal(args: list[str | bytes], env: dict[str, str], cwd: Path | bytes,
          timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HEAL, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          errors="replace", timeout=timeout, check=False)


def test_an_unreachable_engine_still_gives_the_ci_its_outputs_summary_and_reports(
        tmp_path: Path) -> None:
    """Redis unreachable: the step outputs say `not reported`, resolved=false (before: no
    output at all, so `steps.heal.outputs.resolved == 'false'` misfired), with the summary,
    the annotation, the artifacts, the Code Quality report and heal.env; the status kept."""
    env = _env(tmp_path / "home", HEAL_REDIS_URL=UNREACHABLE, **_ci(tmp_path))
    done = _heal(["run", "--timeout", "30", "--", "sh", "-c",
                  "echo 'ValueError: bad input' >&2; exit 3"], env, tmp_path)
    assert done.returncode == 3, done.stderr
    assert "could not report the failure" in done.stderr
    outputs = _outputs(tmp_path / "output")
    assert outputs["decision"] == "not reported" and outputs["resolved"] == "false"
    assert outputs["error-id"] == ""  # nothing was published: no id to look up
    summary = (tmp_path / "summary.md").read_text()
    assert "not reported" in summary
    # nothing was published, so nothing was queued for review either
    assert "not looked up: nothing was published" in summary and "queued" not in summary
    assert "::error title=heal::" in done.stderr  # annotations on stderr, stdout the command's
    decision = json.loads((tmp_path / "runner" / "heal" / "decision.json").read_text())
    assert decision["decision"] == "not reported" and decision["error_id"] is None
    assert set(decision) == KEYS
    project = tmp_path / "project"
    (issue,) = json.loads((project / "gl-code-quality-report.json").read_text())
    assert "not reported" in issue["description"]
    dotenv = (project / "heal-artifacts" / "heal.env").read_text()
    assert "HEAL_DECISION=not reported\n" in dotenv and "HEAL_ERROR_ID=\n" in dotenv


def test_ctrl_c_still_gives_the_ci_its_outputs(tmp_path: Path, redis_url: str,
                                               prefix: str) -> None:
    """Ctrl-C stops the command: nothing is published, and the CI gets decision=interrupted,
    resolved=false (before: no output); the JSON has every key; the status is kept."""
    env = _env(tmp_path / "home", HEAL_REDIS_URL=redis_url, HEAL_STREAM_PREFIX=prefix,
               **_ci(tmp_path))
    out = tmp_path / "decision.json"
    proc = subprocess.Popen(
        [*HEAL, "run", "--json-file", str(out), "--", sys.executable, "-c",
         "import time; print('started', flush=True); time.sleep(30)"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, preexec_fn=sigint_default)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert redis.Redis.from_url(redis_url).xlen(f"{prefix}:errors") == 0
    outputs = _outputs(tmp_path / "output")
    assert outputs["decision"] == "interrupted" and outputs["resolved"] == "false"
    decision = json.loads(out.read_text())
    assert decision["decision"] == "interrupted" and decision["error_id"] is None
    assert set(decision) == KEYS


def test_a_refusal_s_decision_json_redacts_the_command(tmp_path: Path) -> None:
    """A command not found is refused (exit 2) and written as the decision: its secrets
    redacted as on every other path (before: the raw argv, uploaded as a CI artifact)."""
    out = tmp_path / "d.json"
    done = _heal(["run", "--json-file", str(out), "--", "./nonexist", f"--token={SECRET}",
                  "--password", "hunter2"], _env(tmp_path / "home"), tmp_path)
    assert done.returncode == 2, done.stderr
    text = out.read_text()
    assert SECRET not in text and "hunter2" not in text
    decision = json.loads(text)
    assert decision["decision"] == "refused" and decision["command"][0] == "./nonexist"
    assert set(decision) == KEYS


def test_every_decision_json_has_the_same_keys(tmp_path: Path, redis_url: str,
                                               prefix: str) -> None:
    """README "Output": the decision object's keys on every path, null where unknown (before:
    a passing command printed five keys, so `d["match"]["pattern_id"]` raised KeyError)."""
    env = _env(tmp_path / "home", HEAL_REDIS_URL=redis_url, HEAL_STREAM_PREFIX=prefix)
    done = _heal(["run", "--json", "--", "true"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    passed = _decision_line(done.stderr)
    assert set(passed) == KEYS
    assert passed["decision"] == "none" and passed["resolved"] is True
    assert passed["match"]["pattern_id"] is None and passed["fix"] is None
    env = _env(tmp_path / "home", HEAL_REDIS_URL=UNREACHABLE)
    done = _heal(["run", "--json", "--", "sh", "-c", "exit 5"], env, tmp_path)
    assert done.returncode == 5, done.stderr
    unreported = _decision_line(done.stderr)
    assert set(unreported) == KEYS and unreported["decision"] == "not reported"
    readme = (ROOT / "README.md").read_text()
    start = readme.index("`heal run --json` writes the\n  decision object")
    listed = readme[start:readme.index("`decision.json`", start)]
    for key in sorted(KEYS):
        assert f"`{key}`" in listed, key


def _repo(path: bytes) -> None:
    os.mkdir(path)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True)


def test_an_argument_and_a_checkout_path_that_are_not_utf8_keep_the_status(
        tmp_path: Path, heal_env: dict[str, str], client: redis.Redis) -> None:
    """A file name and a checkout path with a Latin-1 byte (0xff): the command runs, its
    failure is published with the bytes shown as \\xff and is decided by the real stages,
    the command's status is kept (before: "internal error", exit 1, nothing published); a
    passing one exits 0. The event is not signed (it cannot carry the command exactly, and
    a stand-in must not be re-run): the stages only diagnose it."""
    checkout = os.fsencode(tmp_path) + b"/dir\xff"
    _repo(checkout)
    with open(checkout + b"/b\xffad.py", "w") as fh:
        fh.write("raise ValueError('bad input')\n")
    with open(checkout + b"/ok.py", "w") as fh:
        fh.write("pass\n")
    env = _env(Path(heal_env["HEAL_HOME"]), **{k: v for k, v in heal_env.items()
                                               if k != "HEAL_HOME"})
    out = tmp_path / "decision.json"
    done = _heal(["run", "--timeout", "90", "--json-file", str(out), "--", sys.executable,
                  b"b\xffad.py"], env, checkout, timeout=240)
    assert done.returncode == 1, done.stderr  # python's own status for the ValueError
    assert "internal error" not in done.stderr and "not signing the event" in done.stderr
    decision = json.loads(out.read_text())
    assert decision["error_id"] and decision["decision"] not in ("not reported", "none")
    assert decision["command"] == [sys.executable, "b\\xffad.py"]
    (raw,) = [f[b"event"] for _, f in client.xrange(f"{heal_env['HEAL_STREAM_PREFIX']}:errors")]
    event = orjson.loads(raw)
    assert event["id"] == decision["error_id"]
    assert event["repo"]["path"].endswith("/dir\\xff")
    assert event["tags"]["not_utf8"] == ["command", "repo.path"]
    assert "heal_attest" not in event["tags"]
    # a command that passes there exits 0, as it would without heal
    done = _heal(["run", "--", sys.executable, b"ok.py"], env, checkout)
    assert done.returncode == 0, done.stderr
    done = _heal(["run", "--", sys.executable, b"b\xffad.py"],
                 {**env, "HEAL_REDIS_URL": UNREACHABLE}, checkout)
    assert done.returncode == 1 and "internal error" not in done.stderr, done.stderr


def test_a_workflow_step_and_env_that_are_not_utf8_keep_the_status_and_the_report(
        tmp_path: Path, heal_env: dict[str, str], client: redis.Redis) -> None:
    """`--workflow`, `--step`, `HEAL_RUN_ID`/`HEAL_PHASE` and a `--json-file` path holding a
    Latin-1 byte (QA s14d #1): the failure is published with each byte shown as \\xff and the
    fields named in tags.not_utf8; the status is kept and the CI gets its report (before: the
    event could not be encoded, "internal error", exit 1, no outputs, no JSON). The command
    and checkout are exact, so the event is still signed. A passing command under the same
    workflow exits 0 and learns without a warning (before: UnicodeEncodeError)."""
    env = {**_env(Path(heal_env["HEAL_HOME"]), **{k: v for k, v in heal_env.items()
                                                   if k != "HEAL_HOME"}), **_ci(tmp_path)}
    envb = {os.fsencode(k): os.fsencode(v) for k, v in env.items()}
    envb[b"HEAL_RUN_ID"] = b"r\xff1"
    envb[b"HEAL_PHASE"] = b"p\xff"
    folder = os.fsencode(tmp_path) + b"/j\xff"
    os.mkdir(folder)
    out = folder + b"/d.json"
    done = subprocess.run(
        [*HEAL, "run", "--timeout", "90", "--workflow", b"w\xff", "--step", b"s\xff",
         "--json-file", out, "--", "sh", "-c", "exit 3"],
        env=envb, cwd=tmp_path, capture_output=True, text=True, errors="replace",
        timeout=240, check=False)
    assert done.returncode == 3, done.stderr
    assert "internal error" not in done.stderr and "could not" not in done.stderr, done.stderr
    with open(out, "rb") as fh:
        decision = json.loads(fh.read())
    assert decision["error_id"] and decision["decision"] != "not reported"
    outputs = _outputs(tmp_path / "output")
    assert outputs["error-id"] == decision["error_id"] and outputs["resolved"] == "false"
    (raw,) = [f[b"event"] for _, f in client.xrange(f"{heal_env['HEAL_STREAM_PREFIX']}:errors")]
    event = orjson.loads(raw)
    assert event["workflow"] == {"id": "w\\xff", "run_id": "r\\xff1", "phase": "p\\xff",
                                 "step": "s\\xff"}
    assert event["tags"]["not_utf8"] == ["workflow.id", "workflow.run_id",
                                         "workflow.phase", "workflow.step"]
    assert "heal_attest" in event["tags"]  # the command and the checkout are exact
    # (the heading escapes the backslash for Markdown: it reads s\xff)
    assert "heal: s\\\\xff\n" in (tmp_path / "summary.md").read_text()
    passed = subprocess.run(
        [*HEAL, "run", "--workflow", b"w\xff", "--step", b"s\xff", "--", "true"],
        env=envb, cwd=tmp_path, capture_output=True, text=True, errors="replace",
        timeout=120, check=False)
    assert passed.returncode == 0, passed.stderr
    assert "failed" not in passed.stderr and "internal error" not in passed.stderr, passed.stderr


def test_postgresql_unreachable_is_a_published_failure_without_a_decision(
        tmp_path: Path, redis_url: str, prefix: str) -> None:
    """PostgreSQL unreachable, Redis up (QA s14d #4): the error is published (error-id set),
    the decision is `none` with the reason in `detail`, as README and action.yml say of it
    (before: they called this `not reported`); the summary neither claims it was queued for
    review (no lookup ran, and `heal issues list` reads the database that is down) nor says
    "no decision" twice; the annotation says why."""
    env = _env(tmp_path / "home", HEAL_REDIS_URL=redis_url, HEAL_STREAM_PREFIX=prefix,
               HEAL_DATABASE_URL="postgresql://u:pw@127.0.0.1:1/db", **_ci(tmp_path))
    (tmp_path / "boom.py").write_text("import nosuchmod_abc\n")
    done = _heal(["run", "--timeout", "60", "--json", "--", sys.executable, "boom.py"], env,
                 tmp_path)
    assert done.returncode == 1, done.stderr
    decision = _decision_line(done.stderr)
    outputs = _outputs(tmp_path / "output")
    assert decision["decision"] == outputs["decision"] == "none" and decision["error_id"]
    assert outputs["error-id"] == decision["error_id"] and outputs["resolved"] == "false"
    assert decision["detail"].startswith("the pipeline failed while deciding ("), decision
    summary = (tmp_path / "summary.md").read_text()
    assert "queued" not in summary and "heal issues list" not in summary, summary
    assert "no decision: no decision" not in summary
    assert "| decision | **no decision**: the pipeline failed while deciding " in summary, summary
    assert "| match | not known: the pipeline reached no decision |" in summary, summary
    (annotation,) = [ln for ln in done.stderr.splitlines() if ln.startswith("::error ")]
    assert "heal reached no decision: the pipeline failed while deciding" in annotation
    # README and action.yml say what this case is
    readme = " ".join((ROOT / "README.md").read_text().split())
    action = " ".join((ROOT / "action.yml").read_text().split())
    for text in (readme, action):
        assert "PostgreSQL unreachable" in text
        assert "Redis or PostgreSQL unreachable" not in text
    assert ("`none` with `error-id` set: the error was published and no decision came "
            "(PostgreSQL unreachable") in readme


def test_the_not_reported_and_interrupted_reports_name_the_errors_file_and_line(
        tmp_path: Path) -> None:
    """Redis unreachable, and Ctrl-C (QA s14d #5): the file and line of the error are found
    without the engines, as for a decided error: in decision.json, the annotation's `file=`
    and the Code Quality entry (before: null, no `file=`, `.gitlab-ci.yml:1`)."""
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=tmp_path, check=True)
    (tmp_path / "calc").mkdir()
    (tmp_path / "calc" / "boom.py").write_text("import os\nimport nosuchmod_abc\n")
    (tmp_path / "calc" / "slow.py").write_text(
        "import time\nprint('started', flush=True)\ntime.sleep(30)\n")
    env = _env(tmp_path / "home", HEAL_REDIS_URL=UNREACHABLE, **_ci(tmp_path))
    done = _heal(["run", "--timeout", "30", "--", sys.executable, "boom.py"], env,
                 tmp_path / "calc")
    assert done.returncode == 1, done.stderr
    decision = json.loads((tmp_path / "runner" / "heal" / "decision.json").read_text())
    assert decision["decision"] == "not reported"
    assert decision["error"]["file"] == "calc/boom.py" and decision["error"]["line"] == 2
    assert decision["error"]["headline"].startswith("ModuleNotFoundError: ")
    assert "::error file=calc/boom.py,line=2,title=heal::" in done.stderr, done.stderr
    (issue,) = json.loads((tmp_path / "project" / "gl-code-quality-report.json").read_text())
    assert issue["location"]["path"] == "calc/boom.py", issue
    assert issue["location"]["lines"]["begin"] == 2
    proc = subprocess.Popen([*HEAL, "run", "--", sys.executable, "slow.py"], env=env,
                            cwd=tmp_path / "calc", stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=sigint_default)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    decision = json.loads((tmp_path / "runner" / "heal" / "decision.json").read_text())
    assert decision["decision"] == "interrupted"
    assert decision["error"]["file"] == "calc/slow.py" and decision["error"]["line"] == 3
    assert "::error file=calc/slow.py,line=3,title=heal::" in err, err


def test_an_artifacts_dir_that_is_not_utf8_leaves_every_output_and_the_gitlab_report(
        tmp_path: Path) -> None:
    """`HEAL_ARTIFACTS_DIR`, then `RUNNER_TEMP`, holding a Latin-1 byte (QA s14d #6): every
    step output is written (the path shown \\xff, with a warning saying what to change), and
    the GitLab report too (before: the outputs stopped before artifacts-dir and resolved, the
    Code Quality report and heal.env were skipped, "could not write the decision report")."""
    env = _env(tmp_path / "home", HEAL_REDIS_URL=UNREACHABLE,
               HEAL_DATABASE_URL="postgresql://u@127.0.0.1:1/db", **_ci(tmp_path))
    envb = {os.fsencode(k): os.fsencode(v) for k, v in env.items()}
    artifacts = os.fsencode(tmp_path) + b"/rt\xff/a"
    envb[b"HEAL_ARTIFACTS_DIR"] = artifacts
    project = tmp_path / "project"

    def run(environ: dict[bytes, bytes]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*HEAL, "run", "--", "sh", "-c", "exit 4"], env=environ,
                              cwd=tmp_path, capture_output=True, text=True, errors="replace",
                              timeout=120, check=False)

    done = run(envb)
    assert done.returncode == 4, done.stderr
    assert "could not write the decision report" not in done.stderr, done.stderr
    assert "not UTF-8" in done.stderr and "HEAL_ARTIFACTS_DIR" in done.stderr, done.stderr
    outputs = _outputs(tmp_path / "output")
    assert outputs == {"decision": "not reported", "fix-id": "", "patch-path": "",
                       "error-id": "", "artifacts-dir": f"{tmp_path}/rt\\xff/a",
                       "resolved": "false"}
    with open(artifacts + b"/decision.json", "rb") as fh:
        assert json.loads(fh.read())["decision"] == "not reported"
    with open(artifacts + b"/heal.env", "rb") as fh:
        assert b"HEAL_DECISION=not reported\n" in fh.read()
    (issue,) = json.loads((project / "gl-code-quality-report.json").read_text())
    assert "not reported" in issue["description"]
    # RUNNER_TEMP instead: GitHub's default folder under it
    (tmp_path / "output").unlink()
    (project / "gl-code-quality-report.json").unlink()
    del envb[b"HEAL_ARTIFACTS_DIR"]
    envb[b"RUNNER_TEMP"] = os.fsencode(tmp_path) + b"/rt\xff"
    done = run(envb)
    assert done.returncode == 4, done.stderr
    assert "could not write the decision report" not in done.stderr, done.stderr
    outputs = _outputs(tmp_path / "output")
    assert outputs["artifacts-dir"] == f"{tmp_path}/rt\\xff/heal"
    assert outputs["resolved"] == "false" and outputs["decision"] == "not reported"
    assert (project / "heal-artifacts" / "heal.env").is_file()
    assert (project / "gl-code-quality-report.json").is_file()


def test_an_unreachable_redis_url_starts_no_embedded_postgresql(tmp_path: Path) -> None:
    """HEAL_REDIS_URL unreachable: nothing can be published, so heal run starts no embedded
    PostgreSQL in the background (before: it initialised and started one for nothing, whose
    lines could follow the decision JSON on stderr)."""
    home = tmp_path / "home"
    done = _heal(["run", "--json", "--", "sh", "-c", "echo 'ValueError: x' >&2; exit 3"],
                 _env(home, HEAL_REDIS_URL=UNREACHABLE), tmp_path)
    assert done.returncode == 3, done.stderr
    assert _decision_line(done.stderr)["decision"] == "not reported"
    assert not (home / "pg").exists(), sorted(p.name for p in home.iterdir())
