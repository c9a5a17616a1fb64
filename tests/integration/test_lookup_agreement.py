"""Tier 2 answers only with a reference that shares a word of evidence with the error
(real PostgreSQL, the real embedding model, `heal diagnose --json` in a subprocess): a text
near a taught pattern's example in meaning alone (0.74, above the 0.70 threshold, no word in
common) is not answered with it, and says why; a text of the same tool that shares the
example's words still is."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

from pipeline.config import Settings
from pipeline.learn.fixes import command_fix
from pipeline.learn.source import TaughtError
from pipeline.learn.teach import Lesson, Teacher
from storage.engines import open_database

HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]
TAUGHT = "ERROR: frobnicator quota exhausted\n"
#: 0.739 to the taught example's headline, and no word in common with it
PARAPHRASE = "ERROR: frobnication allowance depleted\n"
#: the same tool's words, in another order and with more of them: no tier 1 rule matches it
SAME_WORDS = "ERROR: exhausted quota reached by the frobnicator of region {token}\n"


def diagnose(tmp_path: Path, env: dict[str, str], text: str) -> dict[str, object]:
    path = tmp_path / f"{uuid.uuid4().hex[:8]}.txt"
    path.write_text(text)
    proc = subprocess.run([*HEAL, "diagnose", "--json", str(path)], capture_output=True,
                          text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert isinstance(data, dict)
    return data


def test_tier_2_needs_a_shared_word_of_evidence(
        tmp_path: Path, heal_env: dict[str, str], own_database: str) -> None:
    import os

    db = open_database(Settings.from_env())
    try:
        taught = Teacher(db).teach(Lesson(TaughtError("e-frob", TAUGHT, ""),
                                          command_fix("make frob-quota"), name="frob-quota"))
    finally:
        db.close()
    env = {**os.environ, **heal_env}

    near = diagnose(tmp_path, env, PARAPHRASE)
    match = near["match"]
    assert isinstance(match, dict)
    assert match["pattern_id"] is None, match
    assert f"nearest pattern {taught.pattern_id}" in str(match["reason"])
    assert "shares a word of evidence with the error" in str(match["reason"])
    assert "near in meaning only, so not answered" in str(match["reason"])

    same = diagnose(tmp_path, env, SAME_WORDS.format(token="abcdef"))
    match = same["match"]
    assert isinstance(match, dict)
    assert match["pattern_id"] == taught.pattern_id, match
