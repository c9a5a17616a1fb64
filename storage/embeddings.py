"""Pattern embeddings (pgvector, HNSW cosine index) for the semantic tier.

Raises DatabaseUnavailable / QueryError like every repository.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from storage.db import Database

DIMENSIONS = 384


class EmbeddingRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def upsert(self, rows: Iterable[tuple[str, str, str, np.ndarray]]) -> int:
        """Insert (id, pattern_id, text, vector) rows not stored yet; returns how many were new."""
        items = [(i, p, t, np.asarray(v, dtype=np.float32)) for i, p, t, v in rows]
        if not items:
            return 0
        existing = {
            r["id"] for r in self.db.fetch(
                "SELECT id FROM pattern_embeddings WHERE id = ANY($1::text[])",
                [i[0] for i in items])
        }
        new = [i for i in items if i[0] not in existing]
        if new:
            self.db.executemany(
                """INSERT INTO pattern_embeddings (id, pattern_id, text, embedding)
                   VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING""",
                new,
            )
        return len(new)

    def prune(self, keep: set[str]) -> int:
        """Delete reference rows not in ``keep`` (examples removed from the seeds)."""
        status = self.db.execute(
            "DELETE FROM pattern_embeddings WHERE NOT (id = ANY($1::text[]))", sorted(keep))
        return int(status.split()[-1])

    def nearest(self, vector: np.ndarray, k: int = 5) -> list[tuple[str, float, str]]:
        """Top ``k`` (pattern_id, cosine similarity, reference text) by the HNSW index."""
        rows = self.db.fetch(
            """SELECT pattern_id, text, 1 - (embedding <=> $1) AS similarity
               FROM pattern_embeddings ORDER BY embedding <=> $1 LIMIT $2""",
            np.asarray(vector, dtype=np.float32), k,
        )
        return [(r["pattern_id"], float(r["similarity"]), r["text"]) for r in rows]

    def all(self) -> list[tuple[str, str, str, np.ndarray]]:
        rows = self.db.fetch("SELECT id, pattern_id, text, embedding FROM pattern_embeddings")
        return [(r["id"], r["pattern_id"], r["text"], _array(r["embedding"])) for r in rows]


def _array(value: object) -> np.ndarray:
    # pgvector's asyncpg codec returns a Vector object (or a numpy array in older versions)
    to_numpy = getattr(value, "to_numpy", None)
    return np.asarray(to_numpy() if to_numpy else value, dtype=np.float32)
