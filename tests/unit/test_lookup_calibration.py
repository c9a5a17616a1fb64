"""Tier 2 threshold, measured on the real fixtures with the real (offline) model."""

from __future__ import annotations

from pipeline.lookup.calibrate import measure, table
from pipeline.lookup.catalog import load_catalog
from pipeline.lookup.semantic import DEFAULT_THRESHOLD, Embedder


def test_threshold_keeps_logic_bugs_out_and_is_precise() -> None:
    samples = measure(load_catalog(), Embedder())
    (row,) = table(samples, [DEFAULT_THRESHOLD])
    assert row["logic_bugs_matched"] == 0
    assert row["precision"] >= 0.85
    assert row["recall"] >= 0.5


def test_embeddings_are_normalized_384_vectors() -> None:
    vectors = Embedder().embed(["ModuleNotFoundError: No module named <*>", "x"])
    assert vectors.shape == (2, 384)
    assert abs(float((vectors[0] ** 2).sum()) - 1.0) < 1e-4
