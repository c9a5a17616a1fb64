"""The lookup's one-statement probe of a new fingerprint (real PostgreSQL, real model): it
answers what the separate repository queries answer, a new fingerprint costs one statement
sent before tier 2's embedding and one (the pgvector search) after it, and every answer is
the one the tiers give asking PostgreSQL one statement at a time."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Settings
from pipeline.fingerprint import fingerprint_text
from pipeline.lifecycle.precedent import StepFailure, draft_fix
from pipeline.lookup.result import LookupResult
from pipeline.lookup.service import Lookup
from pipeline.lookup.setup import build_lookup
from storage.causal import CausalGraph
from storage.db import Database, Pending
from storage.lifecycle import PrecedentRepository
from storage.lookup_probe import FingerprintProbe, Probe
from storage.patterns import PatternRepository

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "errors"
NOVEL = "the widget drifted sideways after the {n}th warming cycle of the flux capacitor"
#: near a reference of net.connection_refused, but no detection rule's (fp-v4 masks the
#: references' peer whole, so the former "...refused on port 5432" fell to 0.58; fp-v7 keeps
#: a client's dotted class in its headline, so "ERROR: connecting to db.internal:5432. The
#: connection was refused." fell to 0.65)
TIER2 = "psycopg.OperationalError: could not connect to the server: the connection was refused"
NO_FIX = "Permission was denied when executing ./scripts/build.sh"


def _fp() -> str:
    return f"fp-probe:{uuid.uuid4().hex[:16]}"


def _lookup(db: Database, home: Path, *, semantic: bool = True) -> Lookup:
    return build_lookup(Settings.from_env({"HEAL_HOME": str(home)}), db, semantic=semantic,
                        warm=0)


def _map(db: Database, fingerprint: str, level: str, pattern_id: str) -> None:
    db.execute("INSERT INTO pattern_fingerprints (fingerprint, level, pattern_id)"
               " VALUES ($1, $2, $3)", fingerprint, level, pattern_id)


def _learn(db: Database, fine: str, frm: str, to: str) -> dict[str, Any]:
    draft = draft_fix(StepFailure("wf", "step", fine, "/repo", frm), to, f"diff {frm}..{to}\n")
    assert PrecedentRepository(db).save_draft(draft)
    return draft


@pytest.fixture(scope="module")
def seeded(db: Database, tmp_path_factory: pytest.TempPathFactory) -> Database:
    _lookup(db, tmp_path_factory.mktemp("seed"), semantic=False).close()  # the seeds' rows
    return db


def test_the_probe_answers_what_each_repository_method_answers(seeded: Database) -> None:
    db = seeded
    fine, coarse = _fp(), _fp()
    _map(db, fine, "fine", "git.index_lock")
    _map(db, coarse, "coarse", "format.black")
    _learn(db, fine, "a" * 40, "b" * 40)
    newest = _learn(db, fine, "c" * 40, "d" * 40)
    db.execute("INSERT INTO fix_stats (fingerprint, fix_id, state) VALUES ($1, $2, $3)",
               fine, newest["id"], "QUARANTINED")  # the older draft is the one offered
    # nodes that are fingerprints only: no other test's walk can reach these edges
    CausalGraph(db).seed([(f"{fine}:root", fine, 0.9), (f"{fine}:deeper", f"{fine}:root", 0.8),
                          (f"{fine}:weak", fine, 0.3), (f"{coarse}:root", coarse, 0.6)])

    probe = FingerprintProbe(db).start(fine=fine, coarse=coarse, learned_for=fine,
                                       cause_nodes=[fine, coarse, fine],
                                       min_confidence=0.5).result()

    patterns, precedents, graph = (PatternRepository(db), PrecedentRepository(db),
                                   CausalGraph(db))
    assert probe.fine_pattern == "git.index_lock" == patterns.pattern_for_fingerprint(
        fine, "")[0]  # type: ignore[index]
    assert probe.coarse_pattern == "format.black" == patterns.pattern_for_fingerprint(
        "", coarse)[0]  # type: ignore[index]
    assert probe.learned == precedents.newest_offered(fine)
    assert probe.learned is not None and probe.learned["from_commit"] == "a" * 40
    assert set(probe.causes) == {fine, coarse}
    for node in (fine, coarse):
        assert probe.causes[node] == graph.causes([node], 0.5)
    assert [(c.node, round(c.confidence, 2), c.path) for c in probe.causes[fine]] == [
        (f"{fine}:root", 0.9, (fine, f"{fine}:root")),
        (f"{fine}:deeper", 0.72, (fine, f"{fine}:root", f"{fine}:deeper")),
    ]

    # what is not asked is not read; what is asked and unknown is None / empty
    assert FingerprintProbe(db).start(fine=None, coarse=None, learned_for=None, cause_nodes=[],
                                      min_confidence=0.5).result() == Probe()
    unknown = _fp()
    assert FingerprintProbe(db).start(fine=unknown, coarse=unknown, learned_for=unknown,
                                      cause_nodes=[unknown], min_confidence=0.5
                                      ).result() == Probe(causes={unknown: []})


def test_a_new_fingerprint_costs_one_statement_before_the_embedding_and_one_after(
        seeded: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = seeded
    lookup = _lookup(db, tmp_path)
    assert lookup.embedder is not None
    # the first tier-2 question loads the model and stores the reference vectors
    lookup.lookup(error_id="first", text=NOVEL.format(n=1), fine=_fp(), coarse=_fp(),
                  record=False)

    events: list[str] = []

    def counted(name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(sql: str, *args: Any) -> Any:
            events.append(f"{name}: {sql.split()[0]}")
            return call(sql, *args)
        return wrapper

    for name in ("fetch", "fetchrow", "fetchval", "execute", "executemany"):
        monkeypatch.setattr(db, name, counted(name, getattr(db, name)))
    start = db.start_fetchrow

    def start_fetchrow(sql: str, *args: Any) -> Pending[Any]:
        events.append("probe sent")
        return start(sql, *args).then(lambda row: (events.append("probe read"), row)[1])

    monkeypatch.setattr(db, "start_fetchrow", start_fetchrow)
    embed = lookup.embedder.embed
    monkeypatch.setattr(lookup.embedder, "embed",
                        lambda texts: (events.append("embed"), embed(texts))[1])

    text = NOVEL.format(n=2)
    fp = fingerprint_text(text)
    result = lookup.lookup(error_id="second", text=text, fine=fp.fine, coarse=fp.coarse,
                           headline=fp.normalized, record=False)

    assert result.pattern_id is None and "below the threshold" in result.reason
    # tiers 1 and 3 asked in one statement, in flight while the text was embedded; then the
    # pgvector search: two round trips where there were five (fine, coarse, learned fix,
    # search, causal walk)
    assert events == ["probe sent", "embed", "probe read", "fetch: SELECT"], events
    lookup.close()


def _answer(result: LookupResult) -> tuple[Any, ...]:
    fix = result.fix
    return (result.pattern_id, result.tier, result.score, result.reason, result.path,
            None if fix is None else (fix["id"], fix.get("rendered")), result.params,
            result.details)


def test_the_answers_are_the_ones_asked_one_statement_at_a_time(
        seeded: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = seeded
    with_probe = _lookup(db, tmp_path / "probe")
    one_at_a_time = _lookup(db, tmp_path / "sequential")
    monkeypatch.setattr(one_at_a_time, "_ask_ahead", lambda *args: None)

    cases: list[tuple[str, str, str]] = []
    for text in (NOVEL.format(n=3), TIER2, NO_FIX):  # unmatched, tier 2, tier 2 without a fix
        fp = fingerprint_text(text)
        cases.append((text, _fp() + fp.fine, _fp() + fp.coarse))
    mapped_fine, mapped_coarse, learned, caused = (
        (NOVEL.format(n=n), _fp(), _fp()) for n in (4, 5, 6, 7))
    _map(db, mapped_fine[1], "fine", "git.index_lock")
    _map(db, mapped_coarse[2], "coarse", "format.black")
    _learn(db, learned[1], "e" * 40, "f" * 40)
    CausalGraph(db).seed([("python.stale_bytecode", caused[1], 0.8)])
    caused_too = (NO_FIX, _fp(), _fp())  # tier 2's pattern and the fingerprint both walked
    CausalGraph(db).seed([("python.stale_bytecode", caused_too[1], 0.7)])
    rule = (FIXTURES / "git.index_lock" / "add.txt").read_text()
    cases += [mapped_fine, mapped_coarse, learned, caused, caused_too, (rule, _fp(), _fp())]

    for text, fine, coarse in cases + cases:  # twice: the second time from the memos
        headline = fingerprint_text(text).normalized
        answers = [lk.lookup(error_id="e", text=text, fine=fine, coarse=coarse,
                             headline=headline, record=False)
                   for lk in (with_probe, one_at_a_time)]
        assert _answer(answers[0]) == _answer(answers[1]), text
    found = []
    for text, fine, coarse in cases:
        result = with_probe.lookup(error_id="e", text=text, fine=fine, coarse=coarse,
                                   headline=fingerprint_text(text).normalized, record=False)
        found.append((result.tier, result.pattern_id))
    assert found == [  # every path was taken
        (None, None), (2, "net.connection_refused"), (2, "fs.permission_denied_exec"),
        (1, "git.index_lock"), (1, "format.black"), (1, None), (3, "python.stale_bytecode"),
        (3, "python.stale_bytecode"), (1, "git.index_lock")], found
    with_probe.close()
    one_at_a_time.close()
