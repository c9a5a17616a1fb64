"""What the operator commands print, through the real CLI on the real embedded engines:
event-derived text (error text, mined templates, taught names, workflow ids) is shown
visible everywhere (``\\x1b``, ``\\u202e``), never as raw escape sequences or bidirectional
controls, and Markdown never renders it as HTML; ``heal status`` on a colour terminal says
what its plain form says; ``heal issues list --limit`` cuts groups and says what it left out;
``--json`` keeps one convention; bad arguments are usage errors (exit 2)."""

from __future__ import annotations

import json
import os
import select
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest
import redis

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.console import visible
from pipeline.events import ErrorEvent
from pipeline.guardrails.execution import ExecutionGuard, WorkflowState
from pipeline.runtime.drain import drain_inline
from producers.publisher import Publisher
from storage.engines import open_database
from tests.integration._repos import committed_repo

#: the heal of this checkout (the installed ``heal`` script may import another one)
ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]
#: what hostile event text carries: a terminal title sequence, colour, a bidi override
HOSTILE = "\x1b]0;PWNED\x07 \x1b[31mRED\x1b[0m \u202etxt.exe <b>bold</b> [x](javascript:1)"
RAW = ("\x1b]0;", "\x1b[31m", "\u202e")


def _word() -> str:
    return "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:10])


def _queue(heal_env: dict[str, str], texts: Sequence[str]) -> list[str]:
    """Publish never-seen errors, run fingerprint + lookup inline, and wait until each is in
    the issue queue; their fine fingerprints, in order."""
    settings = Settings.from_env()
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    ids = [f"out-{_word()}" for _ in texts]
    Publisher(client, settings).publish_many(
        ErrorEvent(id=i, text=t) for i, t in zip(ids, texts, strict=True))
    drain_inline(settings, client, stages=["fingerprint", "lookup"])
    db = open_database(settings)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rows = db.fetch("SELECT fine, sample FROM issue_queue")
            found = [next((r["fine"] for r in rows if r["sample"].rstrip("\n") == t.rstrip("\n")),
                          None) for t in texts]
            if all(found):
                return [str(f) for f in found]
            time.sleep(0.2)
    finally:
        db.close()
    raise AssertionError("the errors never reached the issue queue")


def _heal(args: list[str], env: dict[str, str], **extra: str) -> subprocess.CompletedProcess[str]:
    """``heal ARGS`` with stdout a pipe (not a terminal)."""
    return subprocess.run([*HEAL, *args], capture_output=True, text=True, timeout=180,
                          env={**os.environ, **env, **extra, "PYTHONPATH": str(ROOT)})


def _pty(args: list[str], env: dict[str, str], answers: Sequence[tuple[str, str]] = (),
         cwd: Path | None = None) -> tuple[int, str]:
    """``heal ARGS`` on a pseudo-terminal (stdin and stdout), a colour one (TERM=xterm, no
    NO_COLOR); each answer is written once the output ends with its prompt."""
    master, slave = os.openpty()
    full = {k: v for k, v in {**os.environ, **env}.items() if k != "NO_COLOR"}
    proc = subprocess.Popen([*HEAL, *args], stdin=slave, stdout=slave, stderr=slave,
                            env={**full, "TERM": "xterm-256color", "COLUMNS": "200",
                                 "PYTHONPATH": str(ROOT)}, cwd=cwd)
    os.close(slave)
    out, pending = b"", list(answers)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
            if pending and out.rstrip().endswith(pending[0][0].encode()):
                os.write(master, (pending.pop(0)[1] + "\n").encode())
                out += b"\n"
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=60), out.decode(errors="replace")


def _no_raw(text: str) -> None:
    for raw in RAW:
        assert raw not in text, (raw, text)


def test_report_shows_event_text_and_taught_names_visible_and_markdown_never_as_html(
        heal_env: dict[str, str], own_database: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``heal report`` once printed error text and a taught pattern's name raw: a terminal
    title sequence and a bidi override reached the operator's terminal and the Markdown of a
    CI summary (where ``<b>`` rendered as HTML)."""
    word = _word()
    fine, _ = _queue(heal_env, [f"WidgetError: frobnicator {word} exploded {HOSTILE}\n",
                                f"GadgetError: sprocket {_word()} misaligned {HOSTILE} see "
                                "https://evil.example/x cc @octocat\n"])
    assert main(["learn", fine, "--escalate", "look at the frobnicator",
                 "--name", f"evil\x1b]0;T\x07name {word}"]) == 0
    capsys.readouterr()

    text = _heal(["report"], heal_env)
    assert text.returncode == 0, text.stderr
    _no_raw(text.stdout)
    assert "\\x1b]0;PWNED\\x07" in text.stdout and "\\u202etxt.exe" in text.stdout
    assert f"evil\\x1b]0;T\\x07name {word}" in text.stdout  # the taught name, visible

    md = _heal(["report", "--format", "md"], heal_env)
    assert md.returncode == 0, md.stderr
    _no_raw(md.stdout)
    assert "\\u202etxt.exe" in md.stdout
    assert "<b>" not in md.stdout and "&lt;b&gt;bold&lt;/b&gt;" in md.stdout
    assert "](javascript" not in md.stdout and "\\[x\\]\\(javascript:1\\)" in md.stdout
    # a bare URL is a code span (GitHub autolinks bare URLs in prose), a mention is broken
    assert "`https://evil.example/x`" in md.stdout and " https://evil" not in md.stdout
    assert "@\u200boctocat" in md.stdout and "@octocat" not in md.stdout

    html = _heal(["report", "--format", "html"], heal_env)
    assert html.returncode == 0 and "\x1b" not in html.stdout and "<b>bold" not in html.stdout


def test_review_shows_the_sample_visible_and_refuses_a_command_leaving_the_repository(
        heal_env: dict[str, str], own_database: str, tmp_path: Path) -> None:
    """A review once printed the sample's escape sequences raw, and its ``c`` answer stored
    ``rm -rf /`` (``heal learn`` refuses it: the same path check now runs for the review)."""
    repo = committed_repo(tmp_path / "repo", {"README": "x\n"})
    word = _word()
    fine = _queue(heal_env, [f"GadgetError: sprocket {word} misaligned \x1b]0;OWN\x07\n"])[0]
    ask = "(an argv, no shell; Enter or s = skip this error, q = quit):"
    code, out = _pty(["issues", "review"], heal_env, cwd=repo, answers=[
        ("quit [q]?", "c"), (ask, "rm -rf /"), (ask, f"touch {tmp_path}/outside"),
        (ask, "touch fixed.txt")])
    assert code == 0, out
    assert "\\x1b]0;OWN\\x07" in out and "\x1b]0;OWN" not in out  # the sample, visible
    assert "path '/' is outside the repository" in out, out
    assert f"{tmp_path}/outside' is outside the repository" in out, out
    assert "taught DRAFT pattern learned.h" in out and "taught 1 fix(es)" in out, out
    db = open_database(Settings.from_env())
    try:
        argvs = [r["template"] for r in db.fetch(
            "SELECT f.template::text AS template FROM fixes f JOIN patterns p "
            "ON p.id = f.pattern_id WHERE p.provenance->>'fine' = $1", fine)]
    finally:
        db.close()
    assert len(argvs) == 1 and "fixed.txt" in argvs[0], argvs  # only the answer inside


def test_review_after_a_refused_answer_skips_or_quits_and_never_teaches_the_control_answer(
        heal_env: dict[str, str], own_database: str, tmp_path: Path) -> None:
    """After a refused answer the review asked again with no way out: an empty answer was
    asked again, and ``s`` or ``q`` was taught as a DRAFT command fix (argv ``['s']``) with a
    verification queued; the playbook question looped the same way. Now the question says
    its way out, and Enter/``s`` skips the group, ``q`` quits, nothing taught."""
    repo = committed_repo(tmp_path / "repo", {"README": "x\n"})
    fines = _queue(heal_env, [f"LeverError: arm {_word()} bent twice\n" for _ in range(3)])
    menu, value = "quit [q]?", "q = quit):"
    code, out = _pty(["issues", "review"], heal_env, cwd=repo, answers=[
        (menu, "c"), (value, "rm -rf /"), (value, ""),
        (menu, "p"), (value, "/etc/passwd"), (value, "s"),
        (menu, "c"), (value, "rm -rf /"), (value, "q")])
    assert code == 0, out
    assert "(an argv, no shell; Enter or s = skip this error, q = quit):" in out, out
    assert "(the seeds' playbook YAML; Enter or s = skip this error, q = quit):" in out, out
    assert out.count("is outside the repository") >= 2, out
    assert "taught DRAFT" not in out and "skipped 2 (quit)" in out, out
    db = open_database(Settings.from_env())
    try:
        taught = db.fetchval("SELECT count(*) FROM patterns WHERE provenance->>'fine' = ANY($1)",
                             fines)
        still = db.fetchval("SELECT count(*) FROM issue_queue WHERE fine = ANY($1) "
                            "AND status = 'open'", fines)
    finally:
        db.close()
    assert taught == 0 and still == 3


def test_metrics_shows_templates_visible_and_never_none_above_its_entries(
        heal_env: dict[str, str], own_database: str) -> None:
    """``heal metrics`` printed a mined template with its raw U+202E, and ``none`` under
    "top errors" right above the unmatched entries it then listed."""
    _queue(heal_env, [f"SpindleError: bobbin {_word()} jammed {HOSTILE}\n"])
    done = _heal(["metrics", "--window", "24h"], heal_env)
    assert done.returncode in (0, 1), done.stderr  # 1: budget spend unreadable, said so
    _no_raw(done.stdout)
    top = done.stdout.split("top errors (24h):\n", 1)[1].split("\n\n", 1)[0]
    assert "unmatched SpindleError" in top and "\\u202e" in top, top
    assert "  none" not in top, top


def test_status_shows_held_workflows_visible_on_a_terminal_and_off_it(
        heal_env: dict[str, str]) -> None:
    """The plain ``heal status`` printed a workflow id raw; on a colour terminal it left out
    DEGRADED/QUARANTINED workflows and how to lift them altogether."""
    settings = Settings.from_env()
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    name = f"wf-{_word()}\x1b]0;PWN\x07\u202e"
    guard = ExecutionGuard(client, settings)
    for _ in range(3):
        guard.on_step_result(name, "s", False, "E1")
    outputs = {"piped": _heal(["status"], heal_env).stdout,
               "NO_COLOR": _heal(["status"], heal_env, NO_COLOR="1").stdout,
               "colour terminal": _pty(["status"], heal_env)[1]}
    for label, out in outputs.items():
        assert "\x1b]0;PWN" not in out and "\u202e" not in out, (label, out)
        assert "workflows: 1 DEGRADED or QUARANTINED" in out, (label, out)
        assert "\\x1b]0;PWN\\x07\\u202e: DEGRADED" in out, (label, out)
        assert "lift with `heal unquarantine --workflow $'wf-" in out, (label, out)


def test_the_lift_command_status_prints_lifts_a_workflow_with_control_characters(
        heal_env: dict[str, str]) -> None:
    """``heal status`` printed the lift command with the visible form of an id in shell
    quotes, another id: running it said "is RUNNING: nothing to lift" and the workflow stayed
    DEGRADED; ``heal unquarantine`` called an unknown workflow RUNNING and printed the real
    id with its raw escape sequence. Now the command is in $'...' quoting and works, the
    visible form is read as the id it shows, an unknown workflow is said to be unknown."""
    settings = Settings.from_env()
    guard = ExecutionGuard(redis.Redis.from_url(heal_env["HEAL_REDIS_URL"]), settings)
    name, other = (f"wf-{_word()}\x1b]0;PWN\x07\u202e" for _ in range(2))
    for wf in (name, other):
        for _ in range(3):
            guard.on_step_result(wf, "s", False, "E1")
    status = _heal(["status"], heal_env).stdout
    line = next(ln for ln in status.splitlines() if ln.startswith(f"  {visible(name)}:"))
    command = line.split("lift with `", 1)[1].rstrip("`")
    assert command.startswith("heal unquarantine --workflow $'wf-"), command
    _no_raw(command)
    lift = subprocess.run(["bash", "-c", shlex.join(HEAL) + command[len("heal"):]],
                          capture_output=True, text=True, timeout=180,
                          env={**os.environ, **heal_env, "PYTHONPATH": str(ROOT),
                               "LC_ALL": "C.UTF-8"})
    assert lift.returncode == 0, (command, lift.stdout, lift.stderr)
    assert lift.stdout.strip() == f"workflow {visible(name)}: DEGRADED -> RUNNING", lift.stdout
    assert guard.state(name)[0] is WorkflowState.RUNNING and not guard.known(name)

    # the id as status shows it (visible) names the workflow too; its confirmation is visible
    shown = _heal(["unquarantine", "--workflow", visible(other)], heal_env)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert shown.stdout.strip() == f"workflow {visible(other)}: DEGRADED -> RUNNING"
    assert not guard.known(other)

    unknown = _heal(["unquarantine", "--workflow", f"nosuchwf-{_word()}\x1b[31m"], heal_env)
    assert unknown.returncode == 1, unknown.stderr
    assert "is unknown here" in unknown.stdout and "RUNNING" not in unknown.stdout
    _no_raw(unknown.stdout)
    assert "\\x1b[31m is unknown" in unknown.stdout, unknown.stdout


def test_issues_list_limit_cuts_groups_and_says_what_it_left_out(
        heal_env: dict[str, str], own_database: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``--limit`` once cut the fingerprints read before grouping: a group of 3 showed as 2,
    with nothing said, although the help speaks of groups."""
    _queue(heal_env, [f"reticulation of {_word()} splines did not converge\n"
                      for _ in range(3)] + [f"gizmo {_word()} overheated while spinning up\n"])
    assert main(["issues", "list", "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "reticulation of <*> splines did not converge" in out and "gizmo" not in out
    row = next(line for line in out.splitlines() if "reticulation" in line)
    assert row.split()[:2] == ["3", "3"], row  # the whole group: count 3, 3 fingerprints
    assert "1 of 2 groups shown (the largest); heal issues list --limit 2 lists them all" in out
    assert main(["issues", "list", "--limit", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [g["count"] for g in data["groups"]] == [3] and len(data["issues"]) == 3
    assert (data["groups_found"], data["fingerprints_open"], data["complete"]) == (2, 4, False)
    assert main(["issues", "list"]) == 0
    out = capsys.readouterr().out
    assert "gizmo" in out and "groups shown" not in out
    assert main(["issues", "list", "--by-fingerprint", "--limit", "2"]) == 0
    assert "2 of 4 open fingerprints shown" in capsys.readouterr().out


def test_learn_history_since_an_impossible_date_is_a_usage_error(
        heal_env: dict[str, str], tmp_path: Path) -> None:
    repo = committed_repo(tmp_path / "repo", {"README": "x\n"})
    for since in ("2026-13-45", "2026-02-30", "2026-11-01T25:00"):
        done = subprocess.run([*HEAL, "learn", "--history", "--since", since, "--dry-run"],
                              capture_output=True, text=True, timeout=120, cwd=repo,
                              env={**os.environ, **heal_env, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 2, (since, done.stderr)
        assert "not a date of the calendar" in done.stderr and "e.g. 2026-11-01" in done.stderr
        assert "internal error" not in done.stderr and "Traceback" not in done.stderr


def _one_sorted_line(text: str) -> dict[str, object]:
    assert text.count("\n") == 1, text  # compact: one line off a terminal
    data = json.loads(text)
    assert isinstance(data, dict), data
    assert text.startswith("{") and list(data) == sorted(data), text
    return data


def test_json_output_is_one_sorted_object_on_one_line_off_a_terminal(
        heal_env: dict[str, str], own_database: str, tmp_path: Path) -> None:
    """``learn --json`` and ``import --json`` were indented with unsorted keys when piped,
    ``learn --history --json`` an array, and ``issues review --json`` plain text when
    nothing was selected."""
    fine = _queue(heal_env, [f"LatchError: latch {_word()} stuck\n"])[0]
    taught = _one_sorted_line(_heal(["learn", fine, "--escalate", "call the locksmith",
                                     "--json"], heal_env).stdout)
    assert str(taught["pattern_id"]).startswith("learned.h")
    pack = tmp_path / "empty.yaml"
    pack.write_text("heal_pack: 1\npatterns: []\n")
    imported = _one_sorted_line(_heal(["import", "--json", str(pack)], heal_env).stdout)
    assert imported["imported"] == [] and imported["conflicts"] == []
    repo = committed_repo(tmp_path / "repo", {"README": "x\n"})
    history = subprocess.run([*HEAL, "learn", "--history", "--dry-run", "--json"], cwd=repo,
                             capture_output=True, text=True, timeout=120,
                             env={**os.environ, **heal_env, "PYTHONPATH": str(ROOT)})
    assert history.returncode == 0, history.stderr
    assert _one_sorted_line(history.stdout) == {"proposals": [], "skipped": [], "taught": []}
    review = _heal(["issues", "review", "--all-older-than", "1d", "--yes", "--json"], heal_env)
    assert review.returncode == 0, review.stderr
    assert _one_sorted_line(review.stdout) == {"created": [], "ignored": [], "skipped": [],
                                               "taught": [], "quit": False}


def test_export_pack_needs_a_file_and_is_always_yaml(
        heal_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--pack ''`` once dumped the whole catalog on stdout (exit 0), and ``--pack F
    --format json`` silently wrote YAML."""
    assert main(["export", "--pack", ""]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "give the file to write the pack to" in captured.err
    target = tmp_path / "a.json"
    for extra in (["--format", "json"], ["--json"], ["--offline"]):
        assert main(["export", "--pack", str(target), *extra]) == 2, extra
        err = capsys.readouterr().err
        assert f"--pack {target}" in err and ("always YAML" in err or "--offline" in err), err
        assert not target.exists()
    assert main(["export", "--pack", str(tmp_path / "a.yaml"), "--format", "yaml"]) == 0
    assert (tmp_path / "a.yaml").read_text().startswith("heal_pack: 1")
