"""One decision per suggestion at a time, through the real paths: a ``heal serve`` subprocess
answering over HTTP on the session's real engines, and ``heal apply`` as a subprocess.

The race is made deterministic with a failing step (``sh check.sh``) that, once the test arms
it, announces that it runs and then waits for a file the test creates: while it waits, the
approve (or ``heal apply``) that runs it holds the suggestion's decision lock.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from pipeline.config import Settings
from pipeline.demo.sample import break_formatting, git
from pipeline.serve.auth import load_tokens
from tests.integration._heal_validate_support import FORMAT_FIX, candidate, sample_repo

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c",
        "import sys; from pipeline.cli import main; sys.exit(main(sys.argv[1:]))"]
WAIT_S = 120  # generous on a loaded machine; the gate itself waits for the test only


@dataclass
class Gated:
    """A verified ``ruff format`` suggestion whose failing step blocks once armed."""

    error_id: str
    root: Path
    armed: Path
    started: Path
    release: Path
    store: Any

    def arm(self) -> None:
        self.armed.touch()

    def wait_started(self) -> None:
        deadline = time.monotonic() + WAIT_S
        while not self.started.exists():
            assert time.monotonic() < deadline, "the failing step never started"
            time.sleep(0.02)

    def status(self) -> str:
        return str(self.store.apply_result(self.error_id)["status"])


def gated_suggestion(tmp_path: Path, redis_url: str, db: Any) -> Gated:
    from pipeline.apply.applier import Applier
    from pipeline.validate.validator import Validator
    from storage.attempts import AttemptStore

    settings = Settings.from_env()
    client = redis.Redis.from_url(redis_url)
    store = AttemptStore(db)
    gate = tmp_path / "gate"
    gate.mkdir()
    armed, started, release = gate / "armed", gate / "started", gate / "release"
    root = sample_repo(tmp_path)
    (root / "check.sh").write_text(
        f"if [ -e {shlex.quote(str(armed))} ]; then\n"
        f"  : > {shlex.quote(str(started))}\n"
        f"  while [ ! -e {shlex.quote(str(release))} ]; do sleep 0.05; done\n"
        "fi\nexec ruff format --check .\n")
    git(root, "add", "check.sh")
    git(root, "commit", "-q", "-m", "check script")
    break_formatting(root)
    fix_id = f"format.ruff_format.gate{uuid.uuid4().hex[:6]}"
    cand = candidate(root, ("sh", "check.sh"), {**FORMAT_FIX, "id": fix_id}, mode="suggest")
    verdict = Validator(settings, client, store).validate(cand)
    assert Applier(settings, client, store).handle(verdict).status == "suggested"
    client.close()
    return Gated(verdict.error_id, root, armed, started, release, store)


@pytest.fixture
def db(heal_env: dict[str, str]) -> Iterator[Any]:
    from storage.engines import open_database

    handle = open_database(Settings.from_env())
    yield handle
    handle.close()


@pytest.fixture
def serve(heal_env: dict[str, str]) -> Iterator[str]:
    """A ``heal serve`` subprocess on a free port: its base URL."""
    proc = subprocess.Popen([*HEAL, "serve", "--port", "0"], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, line
        # drain its log so a full pipe never stalls it
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        yield f"http://127.0.0.1:{match[1]}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def post(url: str) -> tuple[int, dict[str, Any]]:
    token = load_tokens(Settings.from_env()).approver
    request = urllib.request.Request(url, method="POST", data=b"",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=WAIT_S * 2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def in_background(url: str) -> tuple[threading.Thread, list[tuple[int, dict[str, Any]]]]:
    answers: list[tuple[int, dict[str, Any]]] = []
    thread = threading.Thread(target=lambda: answers.append(post(url)), daemon=True)
    thread.start()
    return thread, answers


def heal_apply(error_id: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HEAL, "apply", error_id], cwd=ROOT, capture_output=True,
                          text=True, timeout=WAIT_S)


def test_a_reject_while_an_approve_applies_is_refused_and_the_record_says_applied(
        serve: str, tmp_path: Path, heal_env: dict[str, str], db: Any) -> None:
    s = gated_suggestion(tmp_path, heal_env["HEAL_REDIS_URL"], db)
    head = git(s.root, "rev-parse", "HEAD")
    s.arm()
    thread, answers = in_background(f"{serve}/api/approvals/{s.error_id}/approve")
    try:
        s.wait_started()  # the approve runs the failing step: it holds the lock
        status, body = post(f"{serve}/api/approvals/{s.error_id}/reject")
        assert status == 409, body
        assert "being applied by another request" in body["error"]
        assert s.status() == "suggested"
    finally:
        s.release.touch()
        thread.join(WAIT_S * 2)
    [(status, body)] = answers
    assert status == 200 and body["status"] == "applied", body
    assert git(s.root, "rev-parse", "HEAD") != head
    assert s.status() == "applied"  # the record says what happened to the repository
    status, body = post(f"{serve}/api/approvals/{s.error_id}/reject")
    assert status == 409 and "already decided: applied" in body["error"]


def test_heal_apply_while_an_api_approve_applies_is_refused_and_the_record_says_applied(
        serve: str, tmp_path: Path, heal_env: dict[str, str], db: Any) -> None:
    s = gated_suggestion(tmp_path, heal_env["HEAL_REDIS_URL"], db)
    s.arm()
    thread, answers = in_background(f"{serve}/api/approvals/{s.error_id}/approve")
    try:
        s.wait_started()
        done = heal_apply(s.error_id)
        assert done.returncode == 1, done.stderr
        assert "being applied by another request" in done.stderr
        assert "Traceback" not in done.stderr
        assert s.status() == "suggested"
    finally:
        s.release.touch()
        thread.join(WAIT_S * 2)
    [(status, body)] = answers
    assert status == 200 and body["status"] == "applied", body
    assert s.status() == "applied"
    done = heal_apply(s.error_id)
    assert done.returncode == 1 and "already decided: applied" in done.stderr


def test_an_approve_or_reject_while_heal_apply_applies_is_refused(
        serve: str, tmp_path: Path, heal_env: dict[str, str], db: Any) -> None:
    s = gated_suggestion(tmp_path, heal_env["HEAL_REDIS_URL"], db)
    head = git(s.root, "rev-parse", "HEAD")
    s.arm()
    proc = subprocess.Popen([*HEAL, "apply", s.error_id], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        s.wait_started()  # heal apply runs the failing step: it holds the lock
        for decision in ("approve", "reject"):
            status, body = post(f"{serve}/api/approvals/{s.error_id}/{decision}")
            assert status == 409, (decision, body)
            assert "being applied by another request" in body["error"]
        assert s.status() == "suggested"
    finally:
        s.release.touch()
        out, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 0, err
    assert "applied:" in out
    assert git(s.root, "rev-parse", "HEAD") != head
    assert s.status() == "applied"


def _refused_set_url(redis_url: str, user: str, password: str) -> str:
    """``redis_url`` as ``user``, whom the ACL refuses SET (every other command allowed)."""
    from urllib.parse import urlsplit, urlunsplit

    admin = redis.Redis.from_url(redis_url)
    admin.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"],
                      channels=["*"], commands=["+@all", "-set"], reset=True)
    admin.close()
    parts = urlsplit(redis_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


def test_a_decision_lock_refused_by_the_redis_acl_says_what_to_grant_not_unreachable(
        tmp_path: Path, heal_env: dict[str, str], db: Any) -> None:
    """QA s13c D3: the decision lock worded an ACL refusal of SET "Redis unreachable": heal
    apply exited 1 (an outage) and an approve or reject through heal serve answered 503."""
    # Given a waiting suggestion, and a Redis user refused SET (which the lock needs)
    s = gated_suggestion(tmp_path, heal_env["HEAL_REDIS_URL"], db)
    head = git(s.root, "rev-parse", "HEAD")
    user = f"noset{uuid.uuid4().hex[:6]}"
    url = _refused_set_url(heal_env["HEAL_REDIS_URL"], user, "pw-noset-1")
    env = {**heal_env, "HEAL_REDIS_URL": url}
    admin = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    try:
        # When heal apply decides it with that user
        done = subprocess.run([*HEAL, "apply", "--force", s.error_id], cwd=ROOT,
                              capture_output=True, text=True, timeout=WAIT_S,
                              env={**os.environ, **env})
        # Then it is a refusal saying what to grant (exit 2), never an outage
        assert done.returncode == 2, done.stderr
        assert "+set" in done.stderr and "unreachable" not in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        # And an approve or reject through heal serve with that user is a 400 saying the same
        proc = subprocess.Popen([*HEAL, "serve", "--port", "0"], cwd=ROOT,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
        try:
            assert proc.stderr is not None
            match = re.search(r"http://127\.0\.0\.1:(\d+)/", proc.stderr.readline())
            assert match
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            for decision in ("approve", "reject"):
                status, body = post(
                    f"http://127.0.0.1:{match[1]}/api/approvals/{s.error_id}/{decision}")
                assert status == 400, (decision, body)
                assert "+set" in body["error"] and "unreachable" not in body["error"], body
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        # and nothing was decided
        assert s.status() == "suggested"
        assert git(s.root, "rev-parse", "HEAD") == head
    finally:
        admin.acl_deluser(user)
        admin.close()
