"""`heal ignore FP` silences a fingerprint: lookup offers no fix, the issue queue stays empty,
and the validate stage only observes it."""

from __future__ import annotations

import uuid
from pathlib import Path

from pipeline.config import Settings
from pipeline.lookup.setup import build_lookup
from storage.db import Database
from storage.lifecycle import LifecycleStore

TEXT = "fatal: Unable to create '/srv/repo/.git/index.lock': File exists.\n"


def test_an_ignored_fingerprint_gets_no_fix_and_is_not_queued(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    fine, coarse = f"fp-test:{uuid.uuid4().hex[:16]}", f"fp-test:{uuid.uuid4().hex[:16]}"
    settings = Settings.from_env({"HEAL_DATABASE_URL": database_url,
                                  "HEAL_HOME": str(tmp_path / "home")})
    lookup = build_lookup(settings, db)
    try:
        # Given a fingerprint that matches a seeded pattern
        before = lookup.lookup(error_id=f"e-{uuid.uuid4()}", text=TEXT, fine=fine, coarse=coarse)
        assert before.pattern_id == "git.index_lock"
        # When it is ignored (what `heal ignore` stores) and the lookup re-reads its controls
        LifecycleStore(db).set_ignored(coarse, True, "noise on this fleet")
        lookup.refresh_states()
        after = lookup.lookup(error_id=f"e-{uuid.uuid4()}", text=TEXT, fine=fine, coarse=coarse)
        # Then no fix is offered, the match says why, and nothing reaches the issue queue
        assert after.fix is None and after.pattern_id is None
        assert after.match_dict()["ignored"] is True
        assert "heal ignore" in after.reason
        # (an unmatched error would be queued; ignored, it is not)
        odd_fine = f"fp-test:{uuid.uuid4().hex[:16]}"
        odd = "deploy step exploded with status 7 in a way nobody has seen"
        LifecycleStore(db).set_ignored(odd_fine, True)
        lookup.refresh_states()
        lookup.lookup(error_id=f"e-{uuid.uuid4()}", text=odd, fine=odd_fine, coarse="c")
        other_fine = f"fp-test:{uuid.uuid4().hex[:16]}"
        lookup.lookup(error_id=f"e-{uuid.uuid4()}", text=odd, fine=other_fine, coarse="c")
        lookup.sync()
        queued = "SELECT count(*) FROM issue_queue WHERE fine = $1"
        assert db.fetchval(queued, odd_fine) == 0
        assert db.fetchval(queued, other_fine) == 1
        # And `heal ignore --undo` brings the fix back
        LifecycleStore(db).set_ignored(coarse, False)
        lookup.refresh_states()
        again = lookup.lookup(error_id=f"e-{uuid.uuid4()}", text=TEXT, fine=fine, coarse=coarse)
        assert again.pattern_id == "git.index_lock"
    finally:
        lookup.close()
