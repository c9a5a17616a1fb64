"""What a running lookup keeps in memory per text and per fingerprint (detection rules'
verdicts, rendered fixes, learned mappings) follows what changes meanwhile, on the real
PostgreSQL: a fix quarantined or deprecated stops being offered for a fingerprint the stage
already answered, and a pattern taught meanwhile matches a text the stage already saw."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from pipeline.config import Settings
from pipeline.learn.fixes import command_fix
from pipeline.learn.source import TaughtError
from pipeline.learn.teach import Lesson, Teacher
from pipeline.lookup.service import Lookup
from pipeline.lookup.setup import build_lookup
from storage.db import Database

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "errors"


@pytest.fixture
def lookup(heal_env: dict[str, str], db: Database) -> Iterator[Lookup]:
    found = build_lookup(Settings.from_env(), db, semantic=False, warm=0)
    yield found
    found.close()


@pytest.mark.parametrize("state", ["QUARANTINED", "DEPRECATED"])
def test_a_fix_withdrawn_meanwhile_is_no_longer_offered_for_a_known_fingerprint(
        lookup: Lookup, db: Database, state: str) -> None:
    text = (FIXTURES / "format.black" / "check.txt").read_text()
    fine = f"fp-memo:{uuid.uuid4().hex[:16]}"
    # Given the stage answered this fingerprint with the fix (and learned the mapping)
    lookup.prepare([(text, fine, "")])
    before = lookup.lookup(error_id=f"m-{fine}-1", text=text, fine=fine, coarse="")
    assert before.fix is not None and before.fix["id"] == "format.black/fix"
    db.execute("UPDATE fixes SET state = $1 WHERE id = 'format.black/fix'", state)
    try:
        # When the states are re-read (every 30 s in a running stage)
        lookup.refresh_states()
        lookup.prepare([(text, fine, "")])
        after = lookup.lookup(error_id=f"m-{fine}-2", text=text, fine=fine, coarse="")
        # Then the same fingerprint and text get the pattern without the fix
        assert after.pattern_id == "format.black" and after.fix is None
        assert state in after.reason
    finally:
        db.execute("UPDATE fixes SET state = 'ACTIVE' WHERE id = 'format.black/fix'")
        lookup.refresh_states()
    again = lookup.lookup(error_id=f"m-{fine}-3", text=text, fine=fine, coarse="",
                          record=False)
    assert again.fix is not None and again.fix["state"] == "ACTIVE"


def test_a_pattern_taught_meanwhile_matches_a_text_already_seen(
        lookup: Lookup, db: Database) -> None:
    token = "".join(chr(97 + int(c, 16)) for c in uuid.uuid4().hex[:10])
    text = (f"Traceback (most recent call last):\n  File \"app.py\", line 4, in <module>\n"
            f"MemoDriftError: ledger {token} drifted by 7 units in /srv/m/ledger.db\n")
    # Given the stage saw the text and no rule matched it
    first = lookup.lookup(error_id=f"t-{token}-1", text=text, fine=f"fp-a-{token}", coarse="",
                          record=False)
    assert first.pattern_id is None
    # When a person teaches it and the stage re-reads the taught patterns
    taught = Teacher(db).teach(Lesson(TaughtError(f"e-{token}", text, ""),
                                      command_fix("touch ledger.reset")))
    lookup.refresh_taught()
    # Then the same text (under a fingerprint no mapping knows) matches the taught rule
    second = lookup.lookup(error_id=f"t-{token}-2", text=text, fine=f"fp-b-{token}", coarse="",
                           record=False)
    assert second.pattern_id == taught.pattern_id and second.tier == 1
    assert second.details.get("rule_matched") is True


def test_a_fix_withheld_because_it_is_quarantined_says_so_in_the_decision(
        lookup: Lookup, db: Database, stage_settings: Settings, client: redis.Redis) -> None:
    from pipeline.events import CandidateEvent, ErrorEvent, Repo
    from pipeline.validate.validator import Validator

    text = (FIXTURES / "format.black" / "check.txt").read_text()
    fine = f"fp-memo:{uuid.uuid4().hex[:16]}"
    # Given the fix of the matched pattern is QUARANTINED (QA report qa_life, item 9)
    db.execute("UPDATE fixes SET state = 'QUARANTINED' WHERE id = 'format.black/fix'")
    try:
        lookup.refresh_states()
        found = lookup.lookup(error_id=f"q-{fine}", text=text, fine=fine, coarse="",
                              record=False)
    finally:
        db.execute("UPDATE fixes SET state = 'ACTIVE' WHERE id = 'format.black/fix'")
        lookup.refresh_states()
    assert found.pattern_id == "format.black" and found.fix is None
    # When the validate stage decides on the candidate the lookup stage hands it
    error = ErrorEvent(id=f"q-{fine}", text=text, repo=Repo(path=str(stage_settings.home)))
    cand = CandidateEvent(id=f"q-{fine}:lookup", error_id=error.id, error=error, fine=fine,
                          match=found.match_dict(), fix=None)
    verdict = Validator(stage_settings, client, None).validate(cand)
    # Then it names the pattern, the withheld fix and how to lift it, not "no known fix"
    assert verdict.decision == "escalate"
    assert verdict.reason == (
        "matched format.black, but its fix format.black/fix is QUARANTINED, so it is not "
        f"offered; `heal unquarantine {fine}` lets it be validated again"), verdict.reason
