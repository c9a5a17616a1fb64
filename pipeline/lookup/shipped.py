"""The seeds' reference vectors, shipped with them (``seeds/reference-vectors.npz``): a fresh
``HEAL_HOME`` stores them instead of embedding every seed example on its first tier-2
question (102 texts: 1.7 s of a fresh ``heal run`` on the shared 2-core box, 5 s under load).

Keyed by :func:`~pipeline.lookup.semantic.vector_id` (a digest of pattern id and text), so a
vector is used only for exactly the text it was computed from: an example added or changed
since the file was written is embedded as before. ``tests/unit/test_lookup_shipped.py``
checks that the file covers every seed reference and that each vector equals what the lean
runtime computes now. After changing seed examples, rewrite it::

    python -m pipeline.lookup.shipped
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.lookup.catalog import SEEDS_DIR
from pipeline.lookup.semantic import Embedder

SHIPPED = SEEDS_DIR / "reference-vectors.npz"


def shipped_vectors(path: Path = SHIPPED) -> dict[str, tuple[str, np.ndarray]]:
    """vector id -> (text, vector); empty when the file is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            ids, texts, vectors = data["ids"], data["texts"], data["vectors"]
    except (OSError, KeyError, ValueError):
        return {}
    if vectors.ndim != 2 or vectors.shape[1] != Embedder.dimensions:
        return {}
    return {str(i): (str(t), np.asarray(v, np.float32))
            for i, t, v in zip(ids, texts, vectors, strict=True)}


def vectors_for(rows: Sequence[tuple[str, str, str]], embedder: Embedder
                ) -> list[tuple[str, str, str, np.ndarray]]:
    """(id, pattern id, text, vector) for each (id, pattern id, text): the shipped vector when
    there is one for that id and text, else embedded now (in one batch).

    Raises:
        EngineError: a text has to be embedded and the model cannot be loaded.
    """
    shipped = shipped_vectors() if rows else {}
    todo = [r for r in rows if shipped.get(r[0], ("",))[0] != r[2]]
    computed = dict(zip((r[0] for r in todo),
                        embedder.embed([r[2] for r in todo]) if todo else [], strict=True))
    return [(i, p, t, computed[i] if i in computed else shipped[i][1]) for i, p, t in rows]


def write(path: Path = SHIPPED) -> int:
    """Embed every seed reference text with the lean runtime and write the file; returns the
    number of vectors."""
    from pipeline.lookup.catalog import load_catalog
    from pipeline.lookup.setup import reference_texts

    refs = reference_texts(load_catalog())
    vectors = Embedder("lean").embed([t for _, _, t in refs])
    with path.open("wb") as handle:
        np.savez_compressed(handle, ids=np.array([r[0] for r in refs]),
                 texts=np.array([r[2] for r in refs]), vectors=vectors.astype(np.float32))
    return len(refs)


if __name__ == "__main__":  # pragma: no cover
    print(f"{write()} reference vectors written to {SHIPPED}")
