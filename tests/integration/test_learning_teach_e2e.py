"""Teaching heal end to end on the real embedded engines: an unknown error, `heal learn --last
--command ...`, then the same broken repository in a fresh copy gets the taught fix offered,
verified, under --mode suggest; a reworded variant (other path, other numbers, another frame)
matches the taught pattern's rule in `heal diagnose`; bad input exits 2."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.config import Settings
from storage.engines import open_database
from tests.integration._repos import git

APP = """import os


class StaleWorkspaceError(Exception):
    pass


if not os.path.exists("workspace.ready"):
    raise StaleWorkspaceError(
        f"workspace {{os.getcwd()}}/build/cache-{token} not initialised after 3 attempts")
"""

VARIANT = """Traceback (most recent call last):
  File "/home/ci/other/tools/bootstrap.py", line 88, in prepare
    check()
app.StaleWorkspaceError: workspace /var/lib/runner/w2/build/cache-{token} not initialised \
after 17 attempts
"""


def letters() -> str:
    """A token of letters only: never masked, so each test has a fingerprint of its own."""
    return "".join(chr(97 + int(c, 16)) for c in uuid.uuid4().hex[:10])



def make_repo(tmp_path: Path, token: str) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "app.py").write_text(APP.format(token=token))
    git(repo, "add", "app.py")
    git(repo, "commit", "-q", "-m", "app")
    return repo


def wait_for_occurrence(pattern_id: str) -> None:
    db = open_database(Settings.from_env())
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if db.fetchval("SELECT count(*) FROM occurrences WHERE pattern_id = $1", pattern_id):
                return
            time.sleep(0.2)
    finally:
        db.close()
    raise AssertionError(f"no occurrence of {pattern_id} reached PostgreSQL")


def heal_run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    status = main(["run", "--timeout", "120", "--step", "import-app", *args, "--",
                   sys.executable, "-c", "import app"])
    return status, capsys.readouterr().err


def test_a_taught_command_is_offered_verified_in_a_fresh_copy_and_matches_a_variant(
    tmp_path: Path, heal_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = letters()
    repo = make_repo(tmp_path, token)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("HEAL_WORKFLOW", f"wf-{token}")
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")

    # 1. an error nothing knows
    status, err = heal_run(capsys, "--mode", "suggest")
    assert status == 1 and "StaleWorkspaceError" in err, err
    assert "suggested fix" not in err, err

    # 2. a person teaches the command that fixed it
    assert main(["learn", "--last", "--command", "touch workspace.ready"]) == 0
    out = capsys.readouterr().out
    assert "learned DRAFT pattern learned.h" in out, out
    assert "(command, MODERATE, DRAFT)" in out and "rule app\\.StaleWorkspaceError:" in out, out
    pattern_id = out.split("learned DRAFT pattern ", 1)[1].split()[0]
    fix_id = out.split("fix        ", 1)[1].split()[0]

    db = open_database(Settings.from_env())
    try:
        row = db.fetchrow("SELECT p.source, p.state, p.provenance, f.state AS fix_state,"
                          " f.category FROM patterns p JOIN fixes f ON f.pattern_id = p.id"
                          " WHERE f.id = $1", fix_id)
    finally:
        db.close()
    assert row is not None
    assert (row["source"], row["state"], row["fix_state"], row["category"]) == (
        "learned", "DRAFT", "DRAFT", "MODERATE")
    provenance = json.loads(row["provenance"])
    assert provenance["how"] == "command" and provenance["error_was"] == "unmatched"
    assert provenance["error_id"].startswith("run-") and provenance["who"]

    # 3. the same broken repository in a fresh copy: the taught fix is offered, verified,
    #    and only suggested (it is DRAFT), never applied
    copy = tmp_path / "copy"
    subprocess.run(["git", "clone", "-q", str(repo), str(copy)], check=True)
    monkeypatch.chdir(copy)
    status, err = heal_run(capsys, "--mode", "suggest")
    assert status == 1, err
    assert f"suggested fix {fix_id}" in err and "verified on branch heal/" in err, err
    assert not (copy / "workspace.ready").exists()

    # 4. a reworded variant (another path, other numbers, another frame) matches the rule
    variant = tmp_path / "variant.txt"
    variant.write_text(VARIANT.format(token=token))
    assert main(["diagnose", "--json", "--no-semantic", str(variant)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["match"]["pattern_id"] == pattern_id, report
    assert "detection rule" in report["reason"], report
    assert report["fix"]["id"] == fix_id and report["fix"]["state"] == "DRAFT"
    assert report["would_apply"] is False

    # 5. a person applies the verified suggestion; `heal report` (and /report) tell the story
    assert main(["apply", fix_id]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert (copy / "workspace.ready").exists()
    import redis

    from pipeline.runtime.drain import drain_inline

    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    drain_inline(Settings.from_env(), client, stages=["lifecycle"])
    wait_for_occurrence(fix_id.rsplit(".", 1)[0])  # the lookup's writes sync in the background
    assert main(["report", "--since", "1h", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (healing,) = [h for h in data["healings"] if h["fix_id"] == fix_id]
    assert healing["tier"] == 1 and healing["auto"] is False
    assert healing["time_to_fix_s"] > 0 and "StaleWorkspaceError" in healing["error"]
    assert "original failure gone" in healing["verification"]
    assert any(e["reason"].startswith("no known fix") and "StaleWorkspaceError" in e["error"]
               for e in data["escalations"]), data["escalations"]
    assert any(p["id"] == pattern_id and p["provenance"]["how"] == "command"
               for p in data["learning"]["new_patterns"])
    assert {"fix_id": fix_id, "src": "DRAFT", "dst": "ACTIVE"}.items() <= next(
        m for m in data["learning"]["graduations"] if m["fix_id"] == fix_id).items()
    page = tmp_path / "report.html"
    assert main(["report", "--since", "1h", "--format", "html", "--output", str(page)]) == 0
    body = page.read_text()
    assert body.startswith("<!doctype html>") and "<style>" in body and fix_id in body
    assert "<script" not in body and "src=" not in body and "href=" not in body
    from pipeline.serve.api import Api

    served = Api(Settings.from_env()).handle("GET", "/report", {"since": ["1h"]})
    assert served.status == 200 and served.content_type.startswith("text/html")
    assert fix_id.encode() in served.body


def test_bad_lessons_exit_2_with_what_to_change(
    tmp_path: Path, heal_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = letters()
    repo = make_repo(tmp_path, token)
    monkeypatch.chdir(repo)
    git(repo, "commit", "-q", "--allow-empty", "-m", "nothing")

    assert main(["learn", "--last", "--command", "make clean; rm -rf /"]) == 2
    assert "shell syntax" in capsys.readouterr().err
    assert main(["learn", "--last", "--command", "sh -c 'make'"]) == 2
    assert "runs a shell string" in capsys.readouterr().err
    assert main(["learn", "--last", "--commit", "HEAD"]) == 2
    assert "touches nothing" in capsys.readouterr().err
    assert main(["learn", "--last", "--commit=--output=/tmp/x"]) == 2
    assert "commit id or a ref" in capsys.readouterr().err
    assert main(["learn", f"run-nope-{token}", "--command", "true"]) == 2
    assert "no error" in capsys.readouterr().err
    assert main(["learn", "--last", "--command", "true"]) == 2
    assert "no unmatched or escalated error" in capsys.readouterr().err
    assert main(["learn", "--last"]) == 2
    assert "say how it was fixed" in capsys.readouterr().err
    # an option that takes one value, given twice: refused, never silently the last one
    with pytest.raises(SystemExit) as exited:
        main(["learn", "--last", "--command", "touch a", "--command", "touch b"])
    assert exited.value.code == 2
    assert "--command given twice" in capsys.readouterr().err
    # a command whose arguments leave the repository, refused before anything is looked up
    assert main(["learn", "--last", "--command", "rm -rf /"]) == 2
    assert "path '/' is outside the repository" in capsys.readouterr().err


def test_a_command_leaving_the_repository_is_refused_taught_and_stored(
    tmp_path: Path, heal_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`heal learn` refuses a command whose argument leaves the repository, and a fix like
    that already stored (taught by an older heal, imported) is refused by the validate
    pre-flight: never run, not even in a verification worktree. The command is harmless on
    purpose (`touch` of a file outside the repository): the test never runs anything
    destructive, and the file not being there proves nothing ran."""
    from dataclasses import replace

    import redis

    from pipeline.learn.fixes import command_fix
    from pipeline.learn.source import find_last
    from pipeline.learn.teach import Lesson, draft_pattern
    from storage.cache import LocalCache
    from storage.learned import LearnedRepository

    token = letters()
    repo = make_repo(tmp_path, token)
    # an error of its own: the test above taught a fix for StaleWorkspaceError (rule and
    # tier 2 references) in the same database
    name = f"Frob{token.capitalize()}Error"
    (repo / "app.py").write_text(
        f"class {name}(Exception):\n    pass\n\n\n"
        f"raise {name}('the widget cache at /tmp/widget-4411 is stale (code 77)')\n")
    git(repo, "commit", "-q", "-am", "own error")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("HEAL_WORKFLOW", f"wf-{token}")
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    probe = Path("/tmp") / f"heal-escape-{uuid.uuid4().hex}"
    assert not probe.exists()

    status, err = heal_run(capsys, "--mode", "auto")
    assert status == 1 and name in err and "no known fix" in err, err

    # 1. taught: refused with what to do, nothing stored
    assert main(["learn", "--last", "--command", f"touch {probe}"]) == 2
    err = capsys.readouterr().err
    assert f"path '{probe}' is outside the repository" in err, err
    assert "give paths relative to the repository root" in err, err
    settings = Settings.from_env()
    error = find_last(redis.Redis.from_url(heal_env["HEAL_REDIS_URL"]), settings, repo)
    db = open_database(settings)
    try:
        assert not db.fetchval("SELECT count(*) FROM pattern_fingerprints WHERE fingerprint = $1",
                               error.fine)

        # 2. such a fix already stored (written past the teaching check): the pre-flight
        #    refuses it and nothing runs
        raw, taught = draft_pattern(Lesson(replace(error, repo=""),
                                           command_fix("touch workspace.placeholder")))
        raw["fix"]["argv"] = ["touch", str(probe)]
        raw["fix"]["id"] = f"{taught.pattern_id}.command_escape"
        LearnedRepository(db).save(raw, source="learned", provenance=taught.provenance,
                                   fingerprints=[(error.fine, "fine")])
    finally:
        db.close()
    LocalCache.at_home(settings.home).replace_fingerprints(
        [(error.fine, "fine", taught.pattern_id)])
    status, err = heal_run(capsys, "--mode", "auto")
    assert status == 1, err
    assert "pre-flight refused" in err and f"path '{probe}' is outside the repository" in err, err
    assert not probe.exists(), "the stored fix ran"
    assert not (repo / "workspace.ready").exists()


LEASE_APP = """import os


class LeaseError(Exception):
    pass


if not os.path.exists("lease.granted"):
    raise LeaseError(
        f"the lease broker at {{os.getcwd()}}/leases/{token} refused the lease after 3 attempts")
"""


def _repo_with_marker(root: Path, token: str, marker: Path, app: str = APP) -> Path:
    """A repository whose app fails with ``token`` and whose ``scripts/mark.sh`` changes no
    file in it: it only appends to ``marker``, outside every repository."""
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "app.py").write_text(app.format(token=token))
    script = root / "scripts" / "mark.sh"
    script.parent.mkdir()
    script.write_text(f"#!/bin/sh\necho ran >> '{marker}'\n")
    script.chmod(0o755)
    git(root, "add", "app.py", "scripts/mark.sh")
    git(root, "commit", "-q", "-m", "app")
    return root


def test_a_taught_command_runs_to_be_verified_only_where_taught_or_on_an_exact_match(
    tmp_path: Path, heal_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = letters()
    ran_a, ran_b = tmp_path / "ran-in-a", tmp_path / "ran-in-b"
    # an error of its own: no other test's lesson resembles it
    app = LEASE_APP.replace("LeaseError", f"Lease{token.capitalize()}Error")
    repo_a = _repo_with_marker(tmp_path / "a", token, ran_a, app)
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.chdir(repo_a)
    monkeypatch.setenv("HEAL_WORKFLOW", f"wf-a-{token}")
    status, err = heal_run(capsys, "--mode", "suggest")
    assert status == 1 and "suggested fix" not in err, err
    # Given a command taught in repository A that changes no file (it acts outside)
    assert main(["learn", "--last", "--command", "./scripts/mark.sh"]) == 0
    out = capsys.readouterr().out
    fix_id = out.split("fix        ", 1)[1].split()[0]

    # When A fails the same way again (an exact match, where it was taught)
    status, err = heal_run(capsys, "--mode", "suggest")
    # Then the command ran in a worktree to be verified, and heal says so truthfully
    assert status == 1 and f"suggested fix {fix_id}" in err, err
    assert ran_a.exists()
    assert "ran in a worktree to verify it and changed no file there" in err, err
    assert "not verified yet" not in err, err

    # When another repository B fails with an error that only resembles it (reworded: no
    # rule or fingerprint of the lesson matches, tier 2 does)
    other = letters()
    repo_b = _repo_with_marker(tmp_path / "b", other, ran_b,
                               app.replace("after 3 attempts", "after 3 retries"))
    monkeypatch.chdir(repo_b)
    monkeypatch.setenv("HEAL_WORKFLOW", f"wf-b-{other}")
    status, err = heal_run(capsys, "--mode", "suggest")
    # Then the taught command is suggested, not run (not even to verify it), saying why
    assert status == 1 and f"suggested fix {fix_id}" in err, err
    assert not ran_b.exists(), err
    assert "not verified, not run: a taught command matched outside the repository" in err, err
