"""Assemble a ready :class:`Lookup`: seeds loaded (idempotently) into PostgreSQL, the taught
patterns added to the catalog, reference embeddings stored (seed and taught examples, and the
error texts of verified resolutions), the local cache warmed; degrades to the local cache when
PostgreSQL is unreachable."""

from __future__ import annotations

import contextlib

from pipeline.config import Settings
from pipeline.errors import DatabaseUnavailable, EngineError
from pipeline.lookup.catalog import Catalog, load_catalog
from pipeline.lookup.causal import load_seed_edges
from pipeline.lookup.semantic import Embedder, evidence, query_text, vector_id
from pipeline.lookup.service import Lookup
from pipeline.lookup.shipped import vectors_for
from pipeline.lookup.taught import load_taught, with_taught
from storage.cache import RULE, LocalCache
from storage.causal import CausalGraph
from storage.db import Database
from storage.embeddings import EmbeddingRepository
from storage.patterns import PatternRepository


def reference_texts(catalog: Catalog) -> list[tuple[str, str, str]]:
    """(id, pattern_id, text) of every reference text: each seed example's fingerprint
    normalized headline (the same masked form a query is embedded from), when it carries
    evidence (:func:`evidence`): a headline masked down to ``ERROR: <idtoken>`` says nothing
    of its cause, is near every other such text, and would name its pattern for them all
    (``KeyError: 'key12'`` matched npm's E404 at 0.82). Tier 2 abstains on such a query; it
    does not index such a reference either."""
    from pipeline.fingerprint import fingerprint_text

    rows = []
    for pattern in catalog.patterns.values():
        texts = {query_text(e, fingerprint_text(e).normalized) for e in pattern.examples}
        for text in sorted(texts):
            if evidence(text):
                rows.append((vector_id(pattern.id, text), pattern.id, text))
    return rows


def seed_database(db: Database, catalog: Catalog, embedder: Embedder | None,
                  taught: Catalog | None = None) -> dict[str, int]:
    """Load the catalog and its reference embeddings into PostgreSQL (idempotent); with
    ``taught`` (the catalog with the taught patterns), their examples and the stored
    resolution references are embedded too.

    Raises:
        DatabaseUnavailable: PostgreSQL is unreachable.
        EngineError: the embedding model cannot be loaded.
    """
    counts = PatternRepository(db).seed(catalog.patterns.values())
    counts["causal_edges"] = CausalGraph(db).seed(load_seed_edges(catalog))
    if embedder is not None:
        refs = reference_texts(taught or catalog)
        if taught is not None:
            from storage.learned import LearnedRepository

            known = set(taught.patterns)
            refs += [r for r in LearnedRepository(db).references()
                     if r[1] in known and evidence(r[2])]
        repo = EmbeddingRepository(db)
        repo.prune({r[0] for r in refs})
        stored = {r[0] for r in repo.all()}
        missing = [r for r in refs if r[0] not in stored]
        if missing:
            counts["embeddings"] = repo.upsert(vectors_for(missing, embedder))
    return counts


def seed_cache_vectors(cache: LocalCache, catalog: Catalog, embedder: Embedder) -> None:
    """Offline start without PostgreSQL: compute the reference vectors locally once."""
    refs = reference_texts(catalog)
    if {r[0] for r in refs} == {r[0] for r in cache.pattern_vectors()}:
        return
    cache.put_pattern_vectors(vectors_for(refs, embedder))


def model_while_waiting(settings: Settings, text: str, fine: str, coarse: str,
                        headline: str) -> Embedder | None:
    """For a one-shot lookup: an Embedder with the model already loaded when the lookup of
    this text will most likely embed it (no seed rule detects it, the local cache knows
    neither its fingerprints nor its query vector, and it carries evidence for tier 2), else
    None. Called while PostgreSQL starts on another thread, so the model load overlaps it.

    A guess from local state only: a fingerprint learned in PostgreSQL and not yet in the
    local cache answers at tier 1 after the model was loaded for nothing (the answer is the
    same). Raises nothing: a model that cannot load is reported by tier 2 itself."""
    query = query_text(text, headline)
    if not evidence(query) or load_catalog().detect(text) is not None:
        return None
    cache = LocalCache.at_home(settings.home)
    try:
        # a mapping learned from a rule answers only where that rule matches: not here
        mappings = [cache.pattern_for(fp, level)
                    for fp, level in ((fine, "fine"), (coarse, "coarse")) if fp]
        if any(m is not None and m[1] != RULE for m in mappings) or (
                cache.query_vector(fine or query) is not None):
            return None
    finally:
        cache.close()
    embedder = Embedder()
    with contextlib.suppress(EngineError):
        embedder.load()
    return embedder


def build_lookup(settings: Settings, db: Database | None, *, semantic: bool = True,
                 warm: int = 100, embedder: Embedder | None = None) -> Lookup:
    """A Lookup over the seeds. With ``db`` None (or unreachable) it answers from the cache.

    The reference vectors are prepared on the first tier-2 question, not here: a known error
    (tier 1) never loads the embedding model, even on a fresh ``HEAL_HOME``.

    ``embedder``: the one to use for tier 2 (e.g. from :func:`model_while_waiting`).

    Raises:
        ConfigError: invalid seeds.
    """
    seeds = load_catalog()
    cache = LocalCache.at_home(settings.home)
    embedder = (embedder or Embedder()) if semantic else None
    catalog = with_taught(seeds, load_taught(db, cache, seeds))
    if db is not None:
        try:
            seed_database(db, seeds, None)
        except DatabaseUnavailable:
            db = None
    lookup = Lookup(catalog, cache, db, embedder, seeds=seeds)
    if embedder is not None:
        lookup.prepare_vectors = lambda: _prepare_vectors(lookup, seeds, embedder)
    lookup.warm(warm)
    return lookup


def _prepare_vectors(lookup: Lookup, seeds: Catalog, embedder: Embedder) -> None:
    """Store the reference vectors that are missing (in PostgreSQL when online, else in the
    local cache), the taught patterns' and resolutions' included; once per Lookup, before its
    first tier-2 search.

    Raises:
        EngineError: the embedding model cannot be loaded (tier 2 then says it is
            unavailable; tiers 1 and 3 still answer).
    """
    if lookup.db is not None and lookup.online:
        try:
            seed_database(lookup.db, seeds, embedder, taught=lookup.catalog)
            lookup.warm(0)
            return
        except DatabaseUnavailable:
            lookup.went_offline()
    seed_cache_vectors(lookup.cache, lookup.catalog, embedder)
