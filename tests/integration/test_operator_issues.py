"""`heal issues list` / `heal issues review` on unmatched errors that went through the real
fingerprint and lookup stages (real embedded engines); review driven through a pty."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.events import ErrorEvent
from pipeline.runtime.drain import drain_inline
from producers.publisher import Publisher
from storage.engines import open_database

HEAL = str(Path(sys.executable).parent / "heal")


def _word() -> str:
    return "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:10])


def _unmatched(heal_env: dict[str, str], run: str, count: int) -> list[str]:
    """Publish ``count`` distinct never-seen errors tagged run=RUN, run fingerprint + lookup
    inline, and wait until the lookup's buffered writes reached the issue queue."""
    settings = Settings.from_env()
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    words = [_word() for _ in range(count)]
    Publisher(client, settings).publish_many(
        ErrorEvent(id=f"op-{w}", text=f"reticulation of {w} splines did not converge",
                   tags={"run": run}) for w in words)
    drain_inline(settings, client, stages=["fingerprint", "lookup"])
    db = open_database(settings)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rows = db.fetch("SELECT fine, sample FROM issue_queue")
            fines = [r["fine"] for r in rows if any(w in r["sample"] for w in words)]
            if len(fines) == count:
                return fines
            time.sleep(0.2)
    finally:
        db.close()
    raise AssertionError("unmatched errors never reached the issue queue")


def _pty_review(args: list[str], answers: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run ``heal issues review`` with a pseudo-terminal on stdin, answering each prompt."""
    master, slave = os.openpty()
    proc = subprocess.Popen([HEAL, "issues", "review", *args], stdin=slave,
                            stdout=slave, stderr=slave, env={**os.environ, **env})
    os.close(slave)
    out, pending = b"", list(answers)
    deadline = time.monotonic() + 120
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
            if out.rstrip().endswith(b"quit [q]?") and pending:
                os.write(master, (pending.pop(0) + "\n").encode())
                out += b"\n"
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=120), out.decode(errors="replace")


def test_list_and_interactive_review(heal_env: dict[str, str],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    run = _word()
    fines = _unmatched(heal_env, run, 3)

    assert main(["issues", "list", "--json", "--limit", "500"]) == 0
    listed = {i["fine"]: i for i in json.loads(capsys.readouterr().out)["issues"]}
    assert set(fines) <= set(listed) and all(listed[f]["count"] == 1 for f in fines)
    assert main(["issues", "list"]) == 0
    assert "reticulation of <*> splines did not converge" in capsys.readouterr().out

    # an invalid answer is asked again; y creates a pattern, n ignores, q stops
    code, out = _pty_review(["--tag", f"run={run}"], ["maybe", "y", "n", "q"], heal_env)
    assert code == 0, out
    assert "[1/3]" in out and "[3/3]" in out and "created DRAFT pattern review." in out
    assert "created 1 pattern(s), ignored 1, skipped 0 (quit)" in out

    db = open_database(Settings.from_env())
    try:
        status = {r["fine"]: r["status"] for r in db.fetch(
            "SELECT fine, status FROM issue_queue WHERE fine = ANY($1::text[])", fines)}
        assert sorted(status.values()) == ["ignored", "open", "pattern"]
        made = next(f for f, s in status.items() if s == "pattern")
        pid = "review." + made.split(":", 1)[1]
        assert db.fetchval("SELECT state FROM patterns WHERE id = $1", pid) == "DRAFT"
        fix = db.fetchrow("SELECT kind, state FROM fixes WHERE pattern_id = $1", pid)
        assert (fix["kind"], fix["state"]) == ("escalate", "DRAFT")
        assert db.fetchval("SELECT pattern_id FROM pattern_fingerprints WHERE fingerprint = $1",
                           made) == pid
        ignored = next(f for f, s in status.items() if s == "ignored")
        assert db.fetchval("SELECT ignored FROM fingerprint_controls WHERE fingerprint = $1",
                           ignored) is True
    finally:
        db.close()

    # explain shows the queue entry and the decision for what was ignored
    assert main(["explain", ignored, "--json"]) == 0
    story = json.loads(capsys.readouterr().out)
    assert story["issues"][0]["status"] == "ignored" and "ignored" in story["why"]


def test_issues_are_grouped_by_mined_template_and_keep_their_fingerprints(
        heal_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    fines = _unmatched(heal_env, _word(), 3)
    assert main(["issues", "list", "--json", "--limit", "500"]) == 0
    groups = json.loads(capsys.readouterr().out)["groups"]
    mine = [g for g in groups if set(g["fines"]) & set(fines)]
    assert len(mine) == 1  # three distinct fingerprints, one mined template
    assert set(fines) <= set(mine[0]["fines"]) and mine[0]["count"] >= 3
    assert mine[0]["template"] == "reticulation of <*> splines did not converge"


def test_review_without_a_terminal_needs_a_batch_option(
        heal_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    done = subprocess.run([HEAL, "issues", "review"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **heal_env})
    assert done.returncode == 2 and "not a terminal" in done.stderr
    assert "Traceback" not in done.stderr

    run = _word()
    fines = _unmatched(heal_env, run, 2)
    assert main(["issues", "review", "--tag", f"run={run}", "--ignore", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert sorted(result["ignored"]) == sorted(fines) and result["created"] == []
    # nothing is older than a week: the age filter selects none of the new groups
    assert main(["issues", "review", "--all-older-than", "7d", "--yes"]) == 0
    assert "no unmatched errors to review" in capsys.readouterr().out
    assert main(["issues", "review", "--all-older-than", "soon", "--yes"]) == 2
    assert "e.g. 7d or 24h" in capsys.readouterr().err


def test_an_age_over_the_maximum_is_refused_by_the_cli_and_the_api(
        heal_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """``99999999999d`` once overflowed the date arithmetic: ``heal: internal error:
    OverflowError`` (exit 1) and a 500 from /report. Now every way in names the range."""
    import urllib.error
    import urllib.request

    from tests.integration.test_serve_api import _start

    huge = "99999999999d"
    assert main(["report", "--since", huge]) == 2
    assert "over the maximum of 100 years" in capsys.readouterr().err
    assert main(["issues", "review", "--all-older-than", huge, "--ignore"]) == 2
    err = capsys.readouterr().err
    assert "over the maximum of 100 years" in err and "internal error" not in err
    assert main(["report", "--since", "36500d", "--format", "json"]) == 0  # the maximum works
    capsys.readouterr()
    server, base = _start(Settings.from_env())
    try:
        for since in (huge, "9" * 5000 + "d"):
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(f"{base}/report?since={since}", timeout=60)
            body = json.loads(caught.value.read())
            assert caught.value.code == 400 and body["status"] == 400
            assert "over the maximum of 100 years" in body["error"], body
    finally:
        server.shutdown()
        server.server_close()


def test_report_output_to_a_folder_says_to_give_a_file(
        heal_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--format", "md", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"--output {tmp_path} is a folder" in err
    assert str(tmp_path / "heal-report.md") in err
    assert main(["report", "--format", "md", "--output", str(tmp_path / "heal-report.md")]) == 0
    assert (tmp_path / "heal-report.md").read_text().startswith("#")


def test_heal_ignore_closes_the_group_in_the_issue_queue_as_review_does(
        heal_env: dict[str, str], own_database: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``heal ignore FP`` once left the fingerprint ``open`` in ``heal issues list`` and
    counted as unmatched in ``heal metrics``, where ``issues review``'s ``n`` marks it
    ``ignored``; both now have the same effect, and ``--undo`` reopens it."""
    # Given two unmatched errors in the issue queue
    fine, other = _unmatched(heal_env, f"ign-{_word()}", 2)

    def open_fines() -> set[str]:
        assert main(["issues", "list", "--json"]) == 0
        return {i["fine"] for i in json.loads(capsys.readouterr().out)["issues"]}

    def unmatched() -> int:
        assert main(["metrics", "--window", "24h", "--json"]) == 0
        window = json.loads(capsys.readouterr().out)["windows"]["24h"]
        return int(window["unmatched_fingerprints"])

    assert {fine, other} <= open_fines()
    before = unmatched()
    # When a person ignores one with heal ignore
    assert main(["ignore", fine, "--reason", "noise"]) == 0
    capsys.readouterr()
    # Then it leaves the open queue and the unmatched count, like review's n
    assert fine not in open_fines() and other in open_fines()
    assert unmatched() == before - 1
    db = open_database(Settings.from_env())
    try:
        assert db.fetchval("SELECT status FROM issue_queue WHERE fine = $1", fine) == "ignored"
    finally:
        db.close()
    # And --undo reopens it
    assert main(["ignore", fine, "--undo"]) == 0
    capsys.readouterr()
    assert fine in open_fines() and unmatched() == before
