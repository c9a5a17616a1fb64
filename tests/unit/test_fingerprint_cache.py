"""The fingerprint stage's caches of repeated texts: bounded, and never a different answer."""

from __future__ import annotations

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
