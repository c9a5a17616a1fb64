"""``heal report``, GET /report and ``heal explain`` with an ``attempts.verdict`` changed by hand:
text that is no JSON (it once failed the report's whole query, for every healing of the
window), and JSON whose ``error`` is no object (it once crashed explain with a traceback).
Real embedded PostgreSQL, a database of each test's own (the rows are broken on purpose); the
CLI runs this checkout's code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.serve.server import make_server
from storage.engines import open_database

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]


def _heal(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HEAL, *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)


def _healed(db: Any, error_id: str, fp: str, verdict: str) -> None:
    """An applied outcome of ``error_id`` with its attempt, whose verdict text is ``verdict``."""
    db.execute("INSERT INTO lifecycle_outcomes (event_id, error_id, fingerprint, fix_id, status,"
               " workflow, step) VALUES ($1, $2, $3, 'fix-a', 'applied', 'nightly', 'lint')",
               f"{error_id}:apply", error_id, fp)
    db.execute("INSERT INTO attempts (id, error_id, fingerprint, fix_id, decision, reason,"
               " verdict) VALUES ($1, $1, $2, 'fix-a', 'apply', 'verified', $3)",
               error_id, fp, verdict)


def test_a_verdict_that_is_no_json_is_named_and_the_report_still_answers(
        heal_env: dict[str, str], own_database: str) -> None:
    # Given two healings of the window: one whose attempt's verdict is good JSON, one whose
    # verdict was changed by hand into text that starts like JSON but is none
    tag = uuid.uuid4().hex[:12]
    good, bad = f"e-good-{tag}", f"e-bad-{tag}"
    db = open_database(Settings.from_env())
    try:
        _healed(db, good, f"fp-v4:good{tag}",
                json.dumps({"error": {"text": f"GoodError: widget {tag}"}}))
        _healed(db, bad, f"fp-v4:bad{tag}", '{"error": {"text": "cut sho')
    finally:
        db.close()

    # When the operator asks for the report
    done = _heal(["report", "--format", "json"])
    # Then it answers with both healings (the bad one without the verdict's text) and names
    # the row it could not read
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    healed = {h["error_id"]: h for h in data["healings"]}
    assert set(healed) == {good, bad}, data["healings"]
    assert f"GoodError: widget {tag}" in healed[good]["error"]
    assert [p.split(":", 1)[0] for p in data["problems"]] == [f"attempts row {bad!r}"], data
    assert "not JSON" in data["problems"][0]
    text = _heal(["report"])
    assert text.returncode == 0, text.stderr
    assert f"heal: warning: attempts row {bad!r}" in text.stderr
    assert "Traceback" not in text.stderr and f"GoodError: widget {tag}" in text.stdout

    # and GET /report shows the same report, the problem named on the page
    server = make_server(Settings.from_env(), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                     daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/report"
        with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 (local)
            status, page = resp.status, resp.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert status == 200
    assert f"GoodError: widget {tag}" in page and bad in page and "not JSON" in page


def test_explain_shows_attempts_whose_verdict_error_is_no_object(
        heal_env: dict[str, str], own_database: str) -> None:
    # Given attempts of one fingerprint whose verdicts are JSON with an ``error`` of every
    # shape but an object (changed by hand), and one good attempt (five: explain shows five)
    tag = uuid.uuid4().hex[:12]
    fp = f"fp-v4:0dd{tag}"
    shapes = {"list": ["x"], "text": "boom", "null": None,
              "text-list": {"text": ["not", "text"]}}
    db = open_database(Settings.from_env())
    try:
        db.execute("INSERT INTO issue_queue (fine, count, sample) VALUES ($1, 1, $2)",
                   fp, f"OddError {tag}")
        for name, error in shapes.items():
            _healed(db, f"e-{name}-{tag}", fp, json.dumps({"error": error}))
        _healed(db, f"e-ok-{tag}", fp, json.dumps({"error": {"text": f"OkError {tag}"}}))
    finally:
        db.close()

    # When the operator explains the fingerprint
    done = _heal(["explain", fp, "--json"])
    # Then every attempt is shown; those without a usable error text have none
    assert done.returncode == 0, done.stderr
    story = json.loads(done.stdout)
    texts = {a["error_id"]: a["error_text"] for a in story["attempts"]}
    assert texts == {**{f"e-{n}-{tag}": "" for n in shapes}, f"e-ok-{tag}": f"OkError {tag}"}
    text = _heal(["explain", fp])
    assert text.returncode == 0, text.stderr
    assert "Traceback" not in text.stderr and f"e-list-{tag}" in text.stdout
