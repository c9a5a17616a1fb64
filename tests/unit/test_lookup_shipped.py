"""The seeds' reference vectors shipped in seeds/reference-vectors.npz: complete, equal to
what the lean runtime computes, and used only for the exact text they were computed from."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.lookup.catalog import load_catalog
from pipeline.lookup.semantic import Embedder
from pipeline.lookup.setup import reference_texts
from pipeline.lookup.shipped import shipped_vectors, vectors_for

REGENERATE = "seed examples changed: run `python -m pipeline.lookup.shipped` and commit the file"


class CountingEmbedder(Embedder):
    """The real lean model, recording which texts it was asked to embed."""

    def __init__(self) -> None:
        super().__init__("lean")
        self.asked: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.asked.extend(texts)
        return super().embed(texts)


def test_shipped_vectors_cover_every_seed_reference_and_equal_the_lean_runtime() -> None:
    # Given every seed reference text and the shipped file
    refs = reference_texts(load_catalog())
    shipped = shipped_vectors()
    # Then each has its vector, computed from that very text
    missing = [t for i, _, t in refs if i not in shipped]
    assert not missing, f"{len(missing)} references have no shipped vector ({REGENERATE})"
    assert all(shipped[i][0] == t for i, _, t in refs)
    # And each vector is what the lean runtime computes now
    now = Embedder("lean").embed([t for _, _, t in refs])
    stored = np.vstack([shipped[i][1] for i, _, _ in refs])
    cosines = np.sum(now * stored, axis=1)
    assert cosines.min() >= 0.9999, f"a shipped vector is stale ({REGENERATE})"


def test_only_texts_without_a_shipped_vector_are_embedded() -> None:
    # Given two seed references, one of them with a changed text, and one new text
    refs = reference_texts(load_catalog())[:2]
    changed = (refs[1][0], refs[1][1], refs[1][2] + " (edited)")
    rows = [refs[0], changed, ("new-id", "test.flaky", "a text no seed has")]
    embedder = CountingEmbedder()
    # When their vectors are prepared
    out = vectors_for(rows, embedder)
    # Then the shipped vector served the unchanged one; the other two were embedded
    assert embedder.asked == [changed[2], "a text no seed has"]
    assert [r[:3] for r in out] == rows
    expected = embedder.embed([r[2] for r in rows])
    assert np.allclose(np.vstack([r[3] for r in out]), expected, atol=1e-5)
