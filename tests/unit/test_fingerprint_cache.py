"""The fingerprint stage's caches of repeated texts: bounded, and never a different answer."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from consumers.fingerprint import FingerprintHandler
from pipeline.events import ErrorEvent
from pipeline.fingerprint import Fingerprinter, fingerprint_text
from pipeline.fingerprint import fingerprinter as module
from pipeline.fingerprint.store import MemoryTemplateStore


def test_a_repeated_text_gets_the_same_fingerprint_as_a_fresh_one() -> None:
    cached = Fingerprinter(MemoryTemplateStore())
    text = "ERROR job 42 failed: disk quota exceeded on /srv/data"
    first = cached.fingerprint(text)
    again = cached.fingerprint(text)
    assert again is first  # reused, not recomputed
    assert again == Fingerprinter(MemoryTemplateStore()).fingerprint(text)
    assert again.fine == fingerprint_text(text).fine


def test_the_analysis_cache_is_bounded_by_entries_and_by_text_size(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module, "ANALYSIS_CACHE", 50)
    monkeypatch.setattr(module, "ANALYSIS_CACHE_CHARS", 20_000)
    fingerprinter = Fingerprinter()
    short = [f"ERROR worker {i} lost its lease" for i in range(200)]
    for text in short:
        fingerprinter.fingerprint(text)
    assert len(fingerprinter._analyses) == 50  # least recently used out
    # a storm of long texts: the character budget, not the entry count, bounds the cache
    for i in range(40):
        fingerprinter.fingerprint(f"Traceback {i}\n" + "x = compute(value)\n" * 100)
    assert fingerprinter._cached_chars <= 20_000
    assert len(fingerprinter._analyses) < 20
    # what was dropped is simply computed again, with the same answer
    assert fingerprinter.fingerprint(short[0]) == Fingerprinter().fingerprint(short[0])


def test_the_stage_publishes_the_same_extraction_for_a_repeated_text() -> None:
    handler = FingerprintHandler(Fingerprinter(MemoryTemplateStore()), 65536)
    events = [ErrorEvent(id=f"e{i}", text="npm ERR! code ENOENT npm ERR! path /w/package.json")
              for i in range(3)]
    handler.prepare(events)
    outputs = [handler.handle(e)[0] for e in events]
    assert {o.id for o in outputs} == {"e0:fingerprint", "e1:fingerprint", "e2:fingerprint"}
    assert outputs[1].extraction is outputs[0].extraction  # built once
    fresh = FingerprintHandler(Fingerprinter(MemoryTemplateStore()), 65536).handle(events[2])[0]
    assert outputs[2].extraction == fresh.extraction and outputs[2].fine == fresh.fine


def _batch_texts() -> list[str]:
    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "errors"
    texts = [p.read_text(encoding="utf-8", errors="replace")
             for p in sorted(fixtures.rglob("*.txt"))]
    lines = [f"ERROR worker {i % 7} lost its lease after {i} s" for i in range(40)]
    return texts + lines + texts[:5]  # (repeats inside the batch too)


def test_a_prepared_batch_answers_what_the_general_path_answers() -> None:
    # Given a batch prepared against the store (its templates fixed for the batch)
    fingerprinter = Fingerprinter(MemoryTemplateStore())
    items = [(text, "/srv/r" if i % 3 else "") for i, text in enumerate(_batch_texts())]
    fingerprinter.prepare(items)
    # Then each event's one-lookup answer is the general path's answer, and equals what a
    # fresh fingerprinter given the same batch computes
    fresh = Fingerprinter(MemoryTemplateStore())
    fresh.prepare(items)
    for text, repo in items:
        fast = fingerprinter.fingerprint(text, repo)
        assert fast is fingerprinter._fingerprint(text, repo)
        assert fast == fresh._fingerprint(text, repo)


def test_outputs_of_one_batch_share_its_time_stamp_and_others_get_their_own() -> None:
    handler = FingerprintHandler(Fingerprinter(MemoryTemplateStore()), 65536)
    events = [ErrorEvent(id=f"e{i}", text=f"ERROR job {i} failed") for i in range(5)]
    handler.prepare(events)
    stamps = {handler.handle(e)[0].ts for e in events}
    assert len(stamps) == 1
    time.sleep(0.002)
    outsider = ErrorEvent(id="late", text="ERROR job 9 failed")
    late = handler.handle(outsider)[0].ts
    assert late > stamps.pop()  # handled outside the prepared batch: stamped when made
