"""The lookup: tier 1 exact -> tier 2 semantic -> tier 3 causal, with the logic-bug guard.

Reads are served from memory and the local SQLite cache, falling back to PostgreSQL on a
miss; every write (occurrences, unmatched errors, learned fingerprints) goes to the local
outbox first and reaches PostgreSQL on :meth:`Lookup.sync`, so a PostgreSQL outage never
blocks or loses a lookup.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import orjson

from pipeline.errors import (
    ConfigError,
    DatabaseUnavailable,
    EngineError,
    ParameterError,
    QueryError,
)
from pipeline.fixes.render import FixSpec
from pipeline.lifecycle.ranking import rank_and_record, thompson_rank
from pipeline.lookup.catalog import Catalog, Pattern
from pipeline.lookup.causal import walk_edges
from pipeline.lookup.guard import logic_bug
from pipeline.lookup.learned import CACHE_PREFIX, fix_from_row, learned_result
from pipeline.lookup.rankings import BatchPosteriors, OutboxRankingStore
from pipeline.lookup.result import LookupResult, unmatched
from pipeline.lookup.semantic import (
    DEFAULT_THRESHOLD,
    TOP_K,
    Embedder,
    MemoryIndex,
    agreeing,
    best_per_pattern,
    evidence,
    query_text,
    shared_evidence,
)
from pipeline.model import FLAKY_PATTERN, Category, FixKind, LifecycleState
from pipeline.replayid import replay_of
from storage.cache import RULE, LocalCache
from storage.causal import CausalGraph, Cause
from storage.db import Database
from storage.embeddings import EmbeddingRepository
from storage.lifecycle import LifecycleStore, PrecedentRepository
from storage.lookup_probe import FingerprintProbe, Probe
from storage.outbox import apply_ops
from storage.patterns import PatternRepository

AUTO_CATEGORIES = (Category.SAFE.value, Category.MODERATE.value)
UNUSABLE_STATES = (LifecycleState.QUARANTINED.value, LifecycleState.DEPRECATED.value)
CAUSAL_MIN_CONFIDENCE = 0.5
#: fix kinds that change code: never offered for a flaky fingerprint
CODE_CHANGES = (FixKind.DIFF.value, FixKind.COMMAND.value)
RETRY_DATABASE_S = 5.0
NEGATIVE_TTL_S = 30.0
#: the causal walk from a node is reused this long (edges change rarely, queries cost ~1 ms)
CAUSES_TTL_S = 30.0
MEMO_SIZE = 8192
#: what the reason of an unanswered error says happens to it (``heal run`` queues it; ``heal
#: diagnose``, which records nothing, says what a run would do instead)
QUEUED = "queued for review"
NOT_QUEUED = "heal run would queue it for review (heal diagnose records nothing)"
FLUSH_EVERY = 256
STATES_REFRESH_S = 30.0
#: learned fixes are re-read this long after a read (a new precedent shows up within it)
LEARNED_TTL_S = 30.0
#: PostgreSQL's channel for "a lesson or a state the lookup reads changed" (sent by the
#: triggers of storage/migrations/0640_lookup_notice.sql when the change commits): a worker
#: that hears it drops its caches before its next batch; the TTLs above are the fallback for
#: a worker that cannot listen (PostgreSQL down, the connection lost until the next retry)
CHANGES_CHANNEL = "heal_lookup"

log = logging.getLogger("heal.lookup")


class Lookup:
    """One per process (or per stage worker); not shared between processes."""

    def __init__(
        self,
        catalog: Catalog,
        cache: LocalCache,
        db: Database | None = None,
        embedder: Embedder | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        seeds: Catalog | None = None,
    ) -> None:
        self.catalog = catalog
        #: the seeds alone; ``catalog`` is them plus the taught patterns (re-read on refresh)
        self.seeds = seeds or catalog
        #: resolution references seen at the last refresh (a change re-embeds)
        self._references = -1
        self.cache = cache
        self.db = db
        self.embedder = embedder
        self.threshold = threshold
        #: (fingerprint, level) -> (pattern id, source of the mapping: RULE or TAUGHT)
        self._known: dict[tuple[str, str], tuple[str, str]] = {}
        self._misses: dict[tuple[str, str], float] = {}
        self._vectors: dict[str, np.ndarray] = {}
        self._states: dict[str, str] = cache.fix_states()
        #: fine fingerprint -> (read at, learned fix or None), re-read after LEARNED_TTL_S
        self._learned: dict[str, tuple[float, dict[str, Any] | None]] = {}
        #: digest of an error text -> (pattern id, rule parameters) or None (see _detect)
        self._detected: dict[bytes, tuple[str, dict[str, str]] | None] = {}
        #: digest of an error text -> the logic bug it names, or None (see _guard)
        self._bugs: dict[bytes, str | None] = {}
        #: posteriors of the batch being handled (see prepare)
        self._posteriors = BatchPosteriors()
        #: id of a text of the batch being handled -> (the text, its digest) (see prepare)
        self._digests: dict[int, tuple[str, bytes]] = {}
        #: fingerprints silenced with `heal ignore` (re-read with the fix states)
        self._ignored: frozenset[str] = frozenset()
        #: flaky fingerprints -> determinism score (re-read with the fix states)
        self._flaky: dict[str, float] = {}
        self._edges: list[tuple[str, str, float]] = cache.edges()
        self._memory_index: MemoryIndex | None = None
        self._ops: list[tuple[str, str, dict[str, Any]]] = []
        self._ops_lock = threading.Lock()
        #: held from taking the buffer to its commit in SQLite: a flush returns only once
        #: every write buffered before it is on disk, even one another thread (the
        #: background sync) took out of the buffer first
        self._flush_lock = threading.Lock()
        self._offline_since: float | None = None if db is not None else time.monotonic()
        #: start node -> (walked at, its causes), re-walked after CAUSES_TTL_S
        self._cause_cache: dict[str, tuple[float, list[Cause]]] = {}
        self._rendered: dict[bytes, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None
        #: stores missing reference vectors; called once, before the first tier-2 search
        self.prepare_vectors: Callable[[], None] | None = None
        self._vectors_ready = False
        #: notices of changes heard (see hear_changes), and how many the caches reflect
        self._notices = 0
        self._notices_seen = 0
        self._listening = False
        self._stop_listening: Callable[[], None] | None = None

    # -- engines -----------------------------------------------------------------------------

    @property
    def online(self) -> bool:
        if self.db is None:
            return False
        if self._offline_since is None:
            return True
        return time.monotonic() - self._offline_since >= RETRY_DATABASE_S

    def _went_offline(self) -> None:
        self._offline_since = time.monotonic()

    def went_offline(self) -> None:
        """PostgreSQL failed: answer from the local cache until the retry interval passes."""
        self._went_offline()

    def _ensure_vectors(self) -> None:
        """Raises: EngineError (the model cannot load)."""
        if self._vectors_ready or self.prepare_vectors is None:
            return
        self.prepare_vectors()
        self._vectors_ready = True
        self._memory_index = None

    def warm(self, limit: int = 100) -> int:
        """Fill the local cache from PostgreSQL: fingerprints of the ``limit`` most used
        patterns, fix states, causal edges, reference vectors. Returns the fingerprints cached
        (0 when PostgreSQL is unreachable: the cache then serves what it already holds)."""
        if self.db is None or not self.online:
            return 0
        try:
            rows = PatternRepository(self.db).most_used(limit)
            self._states = PatternRepository(self.db).fix_states()
            self._ignored = PatternRepository(self.db).ignored_fingerprints()
            self._flaky = LifecycleStore(self.db).flaky_fingerprints()
            self._edges = CausalGraph(self.db).edges()
            vectors = EmbeddingRepository(self.db).all()
        except DatabaseUnavailable:
            self._went_offline()
            return 0
        self._offline_since = None
        self.cache.put_fingerprints((r["fingerprint"], r["level"], r["pattern_id"], r["source"])
                                    for r in rows)
        self.cache.put_fix_states(self._states)
        self.cache.put_edges(self._edges)
        if vectors:
            self.cache.put_pattern_vectors(vectors)
            self._memory_index = None
        return len(rows)

    # -- the lookup --------------------------------------------------------------------------

    def lookup(
        self,
        *,
        error_id: str,
        text: str,
        fine: str,
        coarse: str,
        headline: str = "",
        fp_params: Mapping[str, Any] | None = None,
        record: bool = True,
        ended: str = "",
    ) -> LookupResult:
        """Find the best known fix for one fingerprinted error (never raises for engines:
        PostgreSQL or model trouble degrades to the tiers that still work, said in reason).

        ``headline`` is the fingerprint's normalized headline, embedded by tier 2; ``ended``
        how the command ended as its fingerprint keyed it (``exit_status``), kept with a
        queued sample so the queue's groups re-fingerprint it as the stage did."""
        base = dict(fp_params or {})
        if fine in self._ignored or coarse in self._ignored:
            return unmatched("ignored with `heal ignore`: detected, never fixed or queued",
                             ignored=True)
        known = self._digests.get(id(text))
        digest = known[1] if known is not None and known[0] is text else _digest(text)
        rule = self._detect(text, digest)
        if rule is None:
            self._ask_ahead(text, fine, coarse, headline)
        result = self._tier1(text, fine, coarse, base, rule)
        # the pattern a detection rule names, kept even when tier 3 answers with its cause
        detected = (result.pattern_id if result is not None and result.details.get(
            "rule_matched") else None)
        if result is None:
            result = self._tier2(text, fine, headline, base)
        if result is None or not _has_usable_fix(result):
            result = self._tier3(result, fine, coarse, text, base) or result
        result = result or unmatched(f"no known pattern matched; {QUEUED}")
        if result.pattern_id is None and rule is None:
            note = self._unserved_note(fine, coarse)
            if note:
                result = replace(result, reason=result.reason + note)
        result, detected = self._guarded(text, digest, base, detected, result)
        result = self._flaky_retry(fine, text, result)
        result = self._rank(error_id, fine, result, record)
        # diagnose (record=False) writes nothing, not even a learned mapping; learned only
        # after the guard: a refused logic bug never teaches a fingerprint
        if record and detected is not None and "refused" not in result.details:
            self._learn(fine, coarse, detected)
        if not result.params and base:
            result = replace(result, params=base)
        if record:
            self._record(error_id, fine, coarse, text, result, ended)
        elif QUEUED in result.reason:  # heal diagnose: nothing is queued, say so
            result = replace(result, reason=result.reason.replace(QUEUED, NOT_QUEUED))
        return result

    def _guarded(self, text: str, digest: bytes, base: dict[str, Any], detected: str | None,
                 result: LookupResult) -> tuple[LookupResult, str | None]:
        """The guard's verdict on ``result``; when it refuses a taught rule's fix, the seeds'
        own answer for the text if the guard lets that through (then no pattern is returned
        as detected: no mapping is learned from a fallback)."""
        result = self._guard(text, digest, result)
        if "refused" in result.details and detected is not None:
            fallback = self._seed_after_refused(text, digest, base, detected, result)
            if fallback is not None:
                return fallback, None
        return result, detected

    def prepare(self, items: Sequence[tuple[str, str, str]]) -> None:
        """Before a batch of lookups (``(text, fine, coarse)`` each, as the stage's runtime
        hands them over): read, in one query, the posteriors of every fingerprint that tier 1
        will answer with a pattern that has alternatives, so their rankings do not ask
        PostgreSQL one event at a time (see :mod:`pipeline.lookup.rankings`; the query is
        sent, not waited for). Answers are unchanged. PostgreSQL trouble raises nothing here:
        when the read fails, the ranking that meets the failure reports it as before and the
        next events read their own (and whatever else ``prepare`` meets, the runtime logs and
        the events are handled one by one, as without it)."""
        self.reload_if_changed()
        self._posteriors.clear()
        # each text's digest, computed once for the batch (the lookup finds it by identity)
        digests = self._digests = {id(text): (text, _digest(text)) for text, _, _ in items}
        catalog = self.catalog
        ranked = {p.id for p in catalog.patterns.values() if p.alternatives}
        if not ranked or not self.online:
            return
        wanted: dict[str, None] = {}
        for text, fine, coarse in items:
            if fine in self._ignored or coarse in self._ignored:
                continue
            pattern_id = self._tier1_pattern(text, digests[id(text)][1], fine, coarse)
            if pattern_id in ranked:
                wanted[fine or pattern_id] = None
        if not wanted:
            return
        assert self.db is not None
        try:
            self._posteriors.prefetch(LifecycleStore(self.db), list(wanted))
        except DatabaseUnavailable:
            self._went_offline()

    def _tier1_pattern(self, text: str, digest: bytes, fine: str, coarse: str, *,
                       detect: bool = True) -> str | None:
        """The id of the pattern tier 1 answers with from memory and the local cache, if any
        (a rule's verdict for ``text``, else the fine then the coarse mapping that may answer
        for it; ``detect=False``: the mappings only, the rules having said no)."""
        hit = self._detected.get(digest, _NOT_SEEN) if detect else None
        if hit is _NOT_SEEN:
            found = self._detect(text, digest)
            hit = None if found is None else (found[0].id,)
        if hit is not None:
            return str(hit[0])
        for fingerprint, level in ((fine, "fine"), (coarse, "coarse")):
            mapping = self._mapping(fingerprint, level, ask_database=False)
            if mapping is not None and self._evidence_of(mapping, text) is not None:
                return mapping[0]
        return None

    def _tier1(self, text: str, fine: str, coarse: str, base: dict[str, Any],
               detected: tuple[Pattern, dict[str, str]] | None) -> LookupResult | None:
        # a detection rule that matches the text always wins: a learned fingerprint mapping
        # (masked parameters make two different errors share one) never overrides it
        if detected is not None:
            return self._rule_answer(detected[0], detected[1], text, base)
        for fingerprint, level, score in ((fine, "fine", 1.0), (coarse, "coarse", 0.9)):
            mapping = self._mapping(fingerprint, level)
            if mapping is None:
                continue
            params = self._evidence_of(mapping, text)
            if params is None:
                continue  # learned from a rule that does not match this text: no evidence
            reason = f"exact: {level} fingerprint known"
            if mapping[1] == RULE:  # (its rule matched, though the catalog's pass gave up)
                reason += f", and the detection rule of {mapping[0]} it was learned from matches"
            answer = self._answer(mapping[0], 1, score, reason, text, {**base, **params})
            if level == "coarse":
                # a coarse mapping alone is never enough for an automatic fix (validate: "via")
                answer = replace(answer, details={**answer.details, "via": "coarse"})
            return answer
        learned = self._learned_fix(fine)
        return learned_result(learned, base) if learned is not None else None

    def _evidence_of(self, mapping: tuple[str, str], text: str) -> dict[str, str] | None:
        """What lets a fingerprint mapping answer for ``text``: ``{}`` for a taught one (a
        person mapped the fingerprint on purpose), but for a lesson whose rule decides
        (:attr:`Pattern.rule_decides`) that rule's parameters, else None; for one learned
        from a detection rule, the parameters of that pattern's rule matching ``text`` again,
        else None. A masked value (exit code 137 vs 1, HTTP 401 vs 413) makes other errors
        share the fingerprint, and the rule's evidence is what told them apart. The catalog's
        pass already said no rule matches, so this is None but for a text that pass gave up on
        (its time budget)."""
        pattern_id, source = mapping
        pattern = self.catalog.patterns.get(pattern_id)
        if source != RULE:
            # a lesson whose rule decides (it kept the value its fix names, ``npm install
            # left-pad``, or a person gave it with --regex) answers where its rule does: the
            # fingerprint every other module's error masks to must not widen it again. Any
            # other lesson answers by its fingerprint too (the same error respelled: another
            # level's case, JSON, logfmt), and so does a fingerprint mapped onto a seed's
            # pattern, whose rules were not made from it
            if (pattern is None or not pattern.rule_decides
                    or pattern_id in self.seeds.patterns):
                return {}
            return pattern.detect(text)
        return None if pattern is None or not pattern.rules else pattern.detect(text)

    def _unserved_note(self, fine: str, coarse: str) -> str:
        """Why a known fingerprint gave no answer (for the reason of an unmatched text)."""
        for fingerprint, level in ((fine, "fine"), (coarse, "coarse")):
            mapping = self._mapping(fingerprint, level, ask_database=False)
            if mapping is not None and mapping[1] == RULE:
                return (f"; the {level} fingerprint's mapping to {mapping[0]} was learned from "
                        "its detection rule, which does not match this text")
        return ""

    def _detect(self, text: str, key: bytes) -> tuple[Pattern, dict[str, str]] | None:
        """The catalog's rules over ``text`` (``key``: its digest), memoized by the digest (a
        recurring error is matched once, not once per regex per occurrence). The memo is
        emptied when the catalog changes (``refresh_taught``, from the background thread:
        hence one ``get``, and a pattern no longer in the catalog is detected afresh)."""
        catalog = self.catalog
        hit = self._detected.get(key, _NOT_SEEN)
        if hit is None:
            return None
        if hit is not _NOT_SEEN:
            pattern = catalog.patterns.get(hit[0])
            if pattern is not None:
                return pattern, dict(hit[1])
        found = catalog.detect(text)
        if len(self._detected) >= MEMO_SIZE:
            self._detected.clear()
        self._detected[key] = None if found is None else (found[0].id, dict(found[1]))
        return found

    # -- what PostgreSQL is asked about a new fingerprint: at once, while tier 2 embeds ------

    def _ask_ahead(self, text: str, fine: str, coarse: str, headline: str) -> None:
        """A fingerprint no rule detects and nothing in memory or the local cache knows: send
        one statement for everything tiers 1 and 3 would ask PostgreSQL about it (its fine
        and coarse mappings, the newest learned fix, the causal walk from it), embed the text
        for tier 2 while PostgreSQL answers, then file the answer where those tiers look
        first (the memos they fill themselves otherwise, with the same freshness rules).
        The tiers then run as before, answering from memory: the same answers, one round trip
        instead of four, overlapped with the embedding.

        Does nothing when PostgreSQL is offline or has nothing to tell (the tiers then ask,
        or not, as before). Raises nothing from PostgreSQL or the model: a probe that fails
        leaves the tiers to ask on their own, and report."""
        if not self.online or self._known_locally(text, fine, coarse):
            return
        now = time.monotonic()
        want_fine = bool(fine) and not self._recently_missed((fine, "fine"))
        want_coarse = bool(coarse) and not self._recently_missed((coarse, "coarse"))
        learned = self._learned.get(fine) if fine else None
        want_learned = bool(fine) and (learned is None or now - learned[0] >= LEARNED_TTL_S)
        nodes = [n for n in dict.fromkeys((fine, coarse)) if n and not self._walked(n, now)]
        if not (want_fine or want_coarse or want_learned or nodes):
            return
        assert self.db is not None
        try:
            pending = FingerprintProbe(self.db).start(
                fine=fine if want_fine else None, coarse=coarse if want_coarse else None,
                learned_for=fine if want_learned else None, cause_nodes=nodes,
                min_confidence=CAUSAL_MIN_CONFIDENCE)
        except DatabaseUnavailable:
            self._went_offline()
            return
        try:
            self._embed_ahead(text, fine, headline)
        finally:
            try:
                probe = pending.result()
            except DatabaseUnavailable:
                self._went_offline()
            except QueryError as exc:  # the tiers ask one statement at a time, and report
                log.warning("lookup probe of %s failed: %s", fine or coarse, exc)
            else:
                self._file_probe(probe, fine if want_fine else "",
                                 coarse if want_coarse else "", want_learned)

    def _known_locally(self, text: str, fine: str, coarse: str) -> bool:
        """Tier 1 will answer without PostgreSQL: a mapping in memory or the local cache that
        may answer for ``text``, or a learned fix read less than LEARNED_TTL_S ago."""
        if self._tier1_pattern(text, b"", fine, coarse, detect=False) is not None:
            return True
        learned = self._learned.get(fine) if fine else None
        return (learned is not None and learned[1] is not None
                and time.monotonic() - learned[0] < LEARNED_TTL_S)

    def _embed_ahead(self, text: str, fine: str, headline: str) -> None:
        """Embed the query of tier 2 now (kept in ``_vectors``, where tier 2 finds it), when
        tier 2 would: the model is loaded and its reference vectors ready, so a fingerprint
        that tier 1 answers from PostgreSQL after all costs one embedding, never a model load.
        A failure is left for tier 2 to meet again and report."""
        embedder = self.embedder
        if embedder is None or not embedder.loaded or not (
                self._vectors_ready or self.prepare_vectors is None):
            return
        query = query_text(text, headline)
        if evidence(query):
            with contextlib.suppress(EngineError):
                self._vector(fine, query)

    def _file_probe(self, probe: Probe, fine: str, coarse: str, learned: bool) -> None:
        """File what the probe found as the tiers would have (``fine``/``coarse`` empty: that
        part was not asked)."""
        now = time.monotonic()
        for fingerprint, level, found, source in (
                (fine, "fine", probe.fine_pattern, probe.fine_source),
                (coarse, "coarse", probe.coarse_pattern, probe.coarse_source)):
            if not fingerprint:
                continue
            if found is None:
                self._misses[(fingerprint, level)] = now
            else:
                self.cache.put_fingerprints([(fingerprint, level, found, source or RULE)])
        if learned:
            self._file_learned(fine, probe.learned, now)
        for node, causes in probe.causes.items():
            self._file_causes(node, causes, now)

    def _rule_answer(self, pattern: Pattern, params: dict[str, str], text: str,
                     base: dict[str, Any]) -> LookupResult:
        return self._answer(pattern.id, 1, 1.0, f"exact: detection rule of {pattern.id}",
                            text, {**base, **params}, details={"rule_matched": True})

    def _learned_fix(self, fine: str) -> dict[str, Any] | None:
        """The newest fix learned from precedent for ``fine`` (memory, then PostgreSQL, then
        the local cache when PostgreSQL is down: skipped quietly, as for fix states)."""
        if not fine:
            return None
        now = time.monotonic()
        hit = self._learned.get(fine)
        if hit is not None and now - hit[0] < LEARNED_TTL_S:
            return hit[1]
        key = CACHE_PREFIX + fine
        fresh = False
        if self.online:
            assert self.db is not None
            try:
                row = PrecedentRepository(self.db).newest_offered(fine)
                fresh = True
            except DatabaseUnavailable:
                self._went_offline()
        if fresh:
            return self._file_learned(fine, row, now)
        cached = self.cache.get_meta(key)
        fix = (orjson.loads(cached) or None) if cached else None
        self._memo_learned(fine, now, fix)
        return fix

    def _file_learned(self, fine: str, row: dict[str, Any] | None,
                      now: float) -> dict[str, Any] | None:
        """Keep what PostgreSQL said is the newest learned fix for ``fine`` (memory, and the
        local cache for offline answers)."""
        key = CACHE_PREFIX + fine
        fix = fix_from_row(row) if row is not None else None
        if fix is not None or self.cache.get_meta(key):  # keep offline answers current
            self.cache.set_meta(key, orjson.dumps(fix or {}).decode())
        self._memo_learned(fine, now, fix)
        return fix

    def _memo_learned(self, fine: str, now: float, fix: dict[str, Any] | None) -> None:
        if len(self._learned) >= MEMO_SIZE:
            self._learned.clear()
        self._learned[fine] = (now, fix)

    def _known_pattern(self, fingerprint: str, level: str, *,
                       ask_database: bool = True) -> str | None:
        """The pattern ``fingerprint`` is mapped to, whatever the mapping's source (tier 3:
        a root cause's fingerprint names the pattern it was known as)."""
        mapping = self._mapping(fingerprint, level, ask_database=ask_database)
        return None if mapping is None else mapping[0]

    def _mapping(self, fingerprint: str, level: str, *,
                 ask_database: bool = True) -> tuple[str, str] | None:
        """(pattern id, source) of the mapping of ``fingerprint``: memory, the local cache,
        then PostgreSQL (unless ``ask_database`` is False); None for a pattern not in the
        catalog."""
        if not fingerprint:
            return None
        key = (fingerprint, level)
        hit = self._known.get(key)
        if hit is not None:
            return hit
        hit = self.cache.pattern_for(fingerprint, level)
        if hit is None and ask_database and self.online and not self._recently_missed(key):
            hit = self._pattern_from_database(fingerprint, level)
            if hit is None:
                self._misses[key] = time.monotonic()
        if hit is not None and hit[0] in self.catalog.patterns:
            self._known[key] = hit
            return hit
        return None

    def _recently_missed(self, key: tuple[str, str]) -> bool:
        return time.monotonic() - self._misses.get(key, -1e9) < NEGATIVE_TTL_S

    def _pattern_from_database(self, fingerprint: str, level: str) -> tuple[str, str] | None:
        assert self.db is not None
        fine, coarse = (fingerprint, "") if level == "fine" else ("", fingerprint)
        try:
            found = PatternRepository(self.db).pattern_for_fingerprint(fine, coarse)
        except DatabaseUnavailable:
            self._went_offline()
            return None
        if found is None:
            return None
        self.cache.put_fingerprints([(fingerprint, level, found[0], found[2])])
        return found[0], found[2]

    def _learn(self, fine: str, coarse: str, pattern_id: str) -> None:
        """Map ``fine`` and ``coarse`` to the pattern a detection rule just named (source
        RULE: served again only where that rule matches, see :meth:`_evidence_of`)."""
        known = self._known
        if (not fine or (fine, "fine") in known) and (not coarse or (coarse, "coarse") in known):
            return  # the usual case: both already learned (the stage sees them again)
        rows = [(fp, level, pattern_id, RULE)
                for fp, level in ((fine, "fine"), (coarse, "coarse")) if fp]
        fresh = [r for r in rows if (r[0], r[1]) not in self._known]
        if not fresh:
            return
        self.cache.put_fingerprints(fresh)
        for fp, level, pid, source in fresh:
            self._known.setdefault((fp, level), (pid, source))
            with self._ops_lock:
                self._ops.append((f"fp:{level}:{fp}", "fingerprint",
                                  {"fingerprint": fp, "level": level, "pattern_id": pid,
                                   "source": source}))

    def _answer(self, pattern_id: str, tier: int, score: float, reason: str, text: str,
                params: dict[str, Any], path: tuple[str, ...] = (),
                details: dict[str, Any] | None = None) -> LookupResult:
        pattern = self.catalog.patterns[pattern_id]
        # parameters come from the pattern's own rules (skipped when it declares none, and
        # when a rule just matched: ``params`` already holds its groups)
        from_rule = tier == 1 and "detection rule" in reason
        detected = pattern.detect(text) if pattern.params and not from_rule else None
        merged = {**params, **detected} if detected else params
        fix, why = self._render(pattern, merged)
        return LookupResult(pattern_id, tier, score, reason + why if why else reason,
                            path or (pattern_id,), fix, merged, {} if details is None else details)

    def _render(
        self, pattern: Pattern, params: dict[str, Any], spec: FixSpec | None = None
    ) -> tuple[dict[str, Any] | None, str]:
        spec = spec or pattern.fix
        state = self._states.get(spec.id, spec.state.value)
        if state in UNUSABLE_STATES:
            return None, f"; fix {spec.id} is {state}, not offered"
        # the same fix with the same parameters renders the same: memoize (hot path)
        key = orjson.dumps([spec.id, state, params], default=str,
                           option=orjson.OPT_SORT_KEYS)
        fix = self._rendered.get(key)
        if fix is None:
            from pipeline.fixes.render import render_fix

            try:
                fix = render_fix(spec, params)
            except ParameterError as exc:
                return None, f"; fix {spec.id} cannot be rendered: {exc}"
            fix["state"] = state
            if len(self._rendered) >= MEMO_SIZE:
                self._rendered.clear()
            self._rendered[key] = fix
        return fix, ""  # shared and read-only: events are encoded before leaving the stage

    # -- tier 2 ------------------------------------------------------------------------------

    def _tier2(self, text: str, fine: str, headline: str,
               base: dict[str, Any]) -> LookupResult | None:
        if self.embedder is None:
            return None
        query = query_text(text, headline)
        if not evidence(query):
            # a silent failure (exit 1, no output) or a bare "failed": nothing to compare
            return unmatched("semantic tier abstains: the text carries no evidence of a cause "
                             f"({query[:80]!r})", abstained=True)
        try:
            self._ensure_vectors()
            vector = self._vector(fine, query)
        except EngineError as exc:
            return unmatched(f"semantic tier unavailable: {exc}")
        hits = self._neighbours(vector)
        ranked = best_per_pattern(hits)
        known = [n for n in ranked if n.pattern_id in self.catalog.patterns]
        if not known:
            return None
        best = known[0]
        details = {"neighbours": [(n.pattern_id, round(n.similarity, 4)) for n in known[:3]]}
        if best.similarity < self.threshold:
            return replace(unmatched(
                f"nearest pattern {best.pattern_id} at similarity {best.similarity:.3f} is below "
                f"the threshold {self.threshold}"), details=details)
        support = agreeing(query, hits, best.pattern_id)
        if support is None or support.similarity < self.threshold:
            return replace(unmatched(
                f"nearest pattern {best.pattern_id} at similarity {best.similarity:.3f}, but "
                f"none of its references at or above the threshold {self.threshold} shares a "
                f"word of evidence with the error (nearest {best.text[:80]!r}): near in "
                "meaning only, so not answered"), details=details)
        words = ", ".join(shared_evidence(query, support.text)[:4])
        reason = (f"semantic: similarity {support.similarity:.3f} >= {self.threshold} to "
                  f"{best.pattern_id} reference {support.text[:80]!r} (shared: {words})")
        return replace(self._answer(best.pattern_id, 2, support.similarity, reason, text,
                                    base), details=details)

    def _vector(self, fine: str, query: str) -> np.ndarray:
        key = fine or query
        vector = self._vectors.get(key)
        if vector is None:
            vector = self.cache.query_vector(key)
        if vector is None:
            assert self.embedder is not None
            vector = self.embedder.embed([query])[0]
            self.cache.put_query_vector(key, vector)
        if len(self._vectors) >= MEMO_SIZE:
            self._vectors.clear()  # bounded memory: the local cache keeps every vector
        self._vectors[key] = vector
        return vector

    def _neighbours(self, vector: np.ndarray) -> list[tuple[str, float, str]]:
        if self.online:
            assert self.db is not None
            try:
                return EmbeddingRepository(self.db).nearest(vector, TOP_K * 3)
            except DatabaseUnavailable:
                self._went_offline()
        if self._memory_index is None:
            self._memory_index = MemoryIndex(self.cache.pattern_vectors())
        return self._memory_index.search(vector, TOP_K * 3)

    # -- tier 3 ------------------------------------------------------------------------------

    def _tier3(self, previous: LookupResult | None, fine: str, coarse: str, text: str,
               base: dict[str, Any]) -> LookupResult | None:
        nodes = [n for n in ((previous.pattern_id if previous else None), fine, coarse) if n]
        for cause in self._causes(nodes):
            pattern_id = cause.node if cause.node in self.catalog.patterns else (
                self._known_pattern(cause.node, "fine")
                or self._known_pattern(cause.node, "coarse"))
            if pattern_id is None or (previous is not None and pattern_id == previous.pattern_id):
                continue
            chain = " <- ".join(cause.path)
            reason = (f"causal: {chain} (confidence {cause.confidence:.2f}); "
                      f"the root cause's fix applies")
            answer = self._answer(pattern_id, 3, cause.confidence, reason, text, base, cause.path)
            if _has_usable_fix(answer):
                return answer
        return None

    def _causes(self, nodes: list[str]) -> list[Cause]:
        """Every cause of any of ``nodes``, most confident first: the union of the walks from
        each node (a path starts at one node), each walked in PostgreSQL (the nodes not walked
        in the last CAUSES_TTL_S in one query), offline over the cached edges."""
        now = time.monotonic()
        found: dict[str, list[Cause]] = {}
        missing: list[str] = []
        for node in nodes:
            if not node or node in found:
                continue
            cached = self._cause_cache.get(node)
            if cached is not None and now - cached[0] < CAUSES_TTL_S:
                found[node] = cached[1]
            else:
                found[node] = []
                missing.append(node)
        if missing:
            found.update(self._walk(missing))
            for node in missing:
                self._file_causes(node, found[node], now)
        if len(found) == 1:
            return next(iter(found.values()))
        causes = [c for walked in found.values() for c in walked]
        if len(causes) < 2:
            return causes  # the usual case on a hot path: no cause known for any node
        return sorted(causes, key=lambda c: (-c.confidence, -len(c.path), c.node))

    def _walk(self, nodes: list[str]) -> dict[str, list[Cause]]:
        """The causes of each of ``nodes`` (one query), offline over the cached edges."""
        if self.online:
            assert self.db is not None
            walked: dict[str, list[Cause]] = {n: [] for n in nodes}
            try:
                for cause in CausalGraph(self.db).causes(nodes, CAUSAL_MIN_CONFIDENCE):
                    walked[cause.path[0]].append(cause)
                return walked
            except DatabaseUnavailable:
                self._went_offline()
        return {n: walk_edges(self._edges, [n], CAUSAL_MIN_CONFIDENCE) for n in nodes}

    def _walked(self, node: str, now: float) -> bool:
        cached = self._cause_cache.get(node)
        return cached is not None and now - cached[0] < CAUSES_TTL_S

    def _file_causes(self, node: str, causes: list[Cause], now: float) -> None:
        if len(self._cause_cache) >= MEMO_SIZE:
            self._cause_cache.clear()  # bounded memory; a refill costs one query
        self._cause_cache[node] = (now, causes)

    # -- guard, recording, sync --------------------------------------------------------------

    def _guard(self, text: str, key: bytes, result: LookupResult) -> LookupResult:
        """Refuse a SAFE/MODERATE fix for a text that names a logic bug (the verdict is a
        function of the text: memoized by its digest, like the detection rules')."""
        if result.fix is None or result.fix["category"] not in AUTO_CATEGORIES:
            return result
        bug = self._bugs.get(key, _NOT_SEEN)
        if bug is _NOT_SEEN:
            bug = logic_bug(text)
            if len(self._bugs) >= MEMO_SIZE:
                self._bugs.clear()
            self._bugs[key] = bug
        if bug is None:
            return result
        return unmatched(
            f"looks like a logic bug ({bug} in the program's own code): refusing "
            f"{result.pattern_id}'s {result.fix['category']} fix; {QUEUED}",
            refused=result.pattern_id, logic_bug=bug)

    def _seed_after_refused(self, text: str, digest: bytes, base: dict[str, Any],
                            detected: str, refused: LookupResult) -> LookupResult | None:
        """A taught rule's fix the guard refused (a person taught a code change for a logic
        bug): the answer the seeds' rules give for the text, when they give one the guard
        lets through (a compile error's escalation naming file and line), rather than no
        answer at all; None otherwise."""
        if detected in self.seeds.patterns:
            return None
        found = self.seeds.detect(text)
        if found is None:
            return None
        answer = self._guard(text, digest, self._rule_answer(found[0], found[1], text, base))
        if "refused" in answer.details:
            return None
        return replace(answer, reason=f"{answer.reason}; the taught {detected} matched first, "
                                      f"but {refused.reason.removesuffix('; queued for review')}")

    def _flaky_retry(self, fine: str, text: str, result: LookupResult) -> LookupResult:
        """A flaky fingerprint gets the retry playbook (``test.flaky``), never a code change."""
        score = self._flaky.get(fine)
        fix = result.fix
        if score is None or fix is None or fix["kind"] not in CODE_CHANGES:
            return result
        retry = self.catalog.get(FLAKY_PATTERN)
        reason = (f"{result.reason}; fingerprint is flaky (determinism {score:.2f}): "
                  f"{fix['id']} is a code change, never applied to a flaky failure")
        details = {**result.details, "flaky": score, "replaced_fix": fix["id"]}
        if retry is None:
            return replace(result, fix=None, reason=reason, details=details)
        retry_fix, _ = self._render(retry, dict(result.params))
        return replace(result, fix=retry_fix, reason=f"{reason}; retry playbook instead",
                       details=details)

    def _rank(self, error_id: str, fine: str, result: LookupResult,
              record: bool) -> LookupResult:
        """A pattern with alternatives: rank its usable fixes by Thompson sampling on their
        posteriors for this fingerprint (prefetched for the batch by :meth:`prepare`, else
        read now; the ranking recorded in ``fix_rankings`` through the outbox unless
        ``record`` is False); the winner is the fix, the others follow in
        ``fix["alternatives"]``, tried in order by the apply stage when the one before fails.
        Offline: the catalog's order."""
        pattern = self.catalog.get(result.pattern_id or "")
        fix = result.fix
        if pattern is None or not pattern.alternatives or fix is None or (
                fix["id"] != pattern.fix.id):
            return result  # no alternatives, or the fix was replaced (tier 3, flaky)
        options = {fix["id"]: fix}
        for alt in pattern.alternatives:
            rendered, _ = self._render(pattern, dict(result.params), alt)
            if rendered is not None:
                options[alt.id] = rendered
        if len(options) < 2:
            return result
        order, draws = list(options), []
        if self.online:
            assert self.db is not None
            store = OutboxRankingStore(LifecycleStore(self.db), self._posteriors, error_id,
                                       self._queue)
            try:
                ranked = (rank_and_record(store, fine or pattern.id, order) if record
                          else thompson_rank(store.posteriors(fine or pattern.id, order),
                                             random.Random()))
                order = [d.fix_id for d in ranked]
                draws = [{"fix_id": d.fix_id, "draw": round(d.draw, 4), "alpha": d.alpha,
                          "beta": d.beta} for d in ranked]
            except DatabaseUnavailable:
                self._went_offline()
            except QueryError as exc:  # a ranking that cannot be read never blocks the answer
                log.warning("ranking of %s skipped: %s", pattern.id, exc)
        chosen = {**options[order[0]], "alternatives": [options[i] for i in order[1:]],
                  "ranking": draws}
        how = "Thompson-ranked" if draws else "offline, in the catalog's order"
        return replace(result, fix=chosen, reason=(
            f"{result.reason}; {len(order)} fixes {how}: {', '.join(order)}"))

    def _record(self, error_id: str, fine: str, coarse: str, text: str,
                result: LookupResult, ended: str = "") -> None:
        # a replay copy names its original: the counters count an error once
        original = replay_of(error_id)
        if result.pattern_id is not None:
            op = (f"occ:{error_id}", "occurrence", {
                "error_id": error_id, "pattern_id": result.pattern_id, "fine": fine,
                "coarse": coarse, "tier": result.tier, "score": result.score, "ts": time.time(),
                "replay_of": original})
        elif fine:
            op = (f"issue:{error_id}", "issue", {
                "fine": fine, "coarse": coarse, "sample": text[-4000:], "ts": time.time(),
                "replay_of": original, **({"ended": ended} if ended else {})})
        else:
            return
        self._queue(op)

    def _queue(self, op: tuple[str, str, dict[str, Any]]) -> None:
        """Buffer one write for the outbox (moved there every FLUSH_EVERY ops, before the
        hand-off of every batch the lookup stage handled, and by the background sync)."""
        with self._ops_lock:
            self._ops.append(op)
        if len(self._ops) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Move buffered writes to the local outbox (durable on disk: one SQLite
        transaction). When it returns, every write buffered before the call is committed
        there. The lookup stage calls it before each batch's hand-off acknowledges the
        batch (``LookupHandler.before_handoff``), so a killed process loses no write of an
        acknowledged event; the background sync calls it too.

        Raises:
            sqlite3.Error: the outbox could not be written; the writes stay buffered (a
                later flush retries them; their op ids make a second copy harmless).
        """
        with self._flush_lock:
            with self._ops_lock:
                ops, self._ops = self._ops, []
            if not ops:
                return
            try:
                self.cache.enqueue(ops)
            except BaseException:
                with self._ops_lock:
                    self._ops[:0] = ops
                raise

    def refresh_states(self) -> None:
        """Re-read fix states (the lifecycle quarantines and graduates fixes meanwhile) and the
        fingerprints silenced with `heal ignore`."""
        if self.db is None or not self.online:
            return
        try:
            states = PatternRepository(self.db).fix_states()
            ignored = PatternRepository(self.db).ignored_fingerprints()
            flaky = LifecycleStore(self.db).flaky_fingerprints()
        except DatabaseUnavailable:
            self._went_offline()
            return
        self._states = states
        self._ignored = ignored
        self._flaky = flaky
        self.cache.put_fix_states(states)
        self.refresh_taught()

    def refresh_taught(self) -> None:
        """Re-read the taught patterns (``heal learn``, reviews, packs, agents) into the
        catalog, and embed the references of the new ones, so a running stage offers what was
        taught meanwhile."""
        from pipeline.lookup.taught import load_taught, with_taught

        before = set(self.catalog.patterns)
        catalog = with_taught(self.seeds, load_taught(self.db if self.online else None,
                                                      self.cache, self.seeds))
        self.catalog = catalog
        self._known.clear()
        self._rendered.clear()
        # the rules' verdicts per text were the old catalog's: a rule taught meanwhile must
        # match a text already seen (and a pattern removed meanwhile must not be answered)
        self._detected.clear()
        if self.embedder is None or self.db is None or not self.online:
            return
        from pipeline.lookup.setup import seed_database
        from storage.learned import LearnedRepository

        try:
            references = LearnedRepository(self.db).reference_count()
            if set(catalog.patterns) - before or references != self._references:
                seed_database(self.db, self.seeds, self.embedder, taught=catalog)
                self._references = references
        except (DatabaseUnavailable, EngineError):
            return  # the next refresh tries again; tier 1 already serves them

    # -- hearing what changed ---------------------------------------------------------------

    @property
    def listening(self) -> bool:
        """Whether PostgreSQL tells this lookup at once when a lesson or a state changes."""
        return self._listening

    def hear_changes(self) -> bool:
        """Listen for PostgreSQL's notice that a lesson or a state changed (``heal learn``,
        ``heal ignore``, a quarantine...): the next batch then re-reads them (see
        :meth:`reload_if_changed`). Listening again after a lost connection counts as a
        change (notices were missed meanwhile). Returns whether it listens; never raises."""
        if self._listening:
            return True
        if self.db is None or not self.online:
            return False
        try:
            stop = self.db.listen(CHANGES_CHANNEL, self._heard, self._lost)
        except (DatabaseUnavailable, QueryError, ConfigError) as exc:
            if isinstance(exc, DatabaseUnavailable):
                self._went_offline()  # (tried again once the retry interval passed)
            log.info("lookup cannot listen for changes (caches re-read every %.0f s): %s",
                     STATES_REFRESH_S, exc)
            return False
        if self._stop_listening is not None:
            self._notices += 1  # heard nothing while the connection was gone
        self._stop_listening = stop
        self._listening = True
        return True

    def _heard(self) -> None:
        self._notices += 1  # (the database's loop thread; read by the batch's thread)

    def _lost(self) -> None:
        self._listening = False

    def reload_if_changed(self) -> bool:
        """A notice was heard since the last call: forget what was read about lessons and
        states (missed fingerprints, learned fixes, causal walks, taught patterns, fix states,
        ignored and flaky fingerprints) and re-read them now. Called once per batch; costs
        one integer comparison when nothing changed. Returns whether it reloaded."""
        notices = self._notices
        if notices == self._notices_seen:
            return False
        self._notices_seen = notices
        self._misses.clear()
        self._learned.clear()
        self._cause_cache.clear()
        self.refresh_states()  # (re-reads the taught catalog, which drops the mappings)
        return True

    def sync(self, batch: int = 500) -> int:
        """Flush, then apply the outbox to PostgreSQL (idempotent). Returns ops applied;
        stops quietly, keeping the rest queued, when PostgreSQL is unreachable."""
        self.flush()
        return self.sync_outbox(batch)

    def sync_outbox(self, batch: int = 500) -> int:
        """Apply what the local outbox holds (safe from a background thread: it only touches
        the cache and the database, both thread-safe)."""
        if self.db is None:
            return 0
        applied = 0
        while True:
            pending = self.cache.pending(batch)
            if not pending:
                break
            try:
                applied += apply_ops(self.db, [(o, k, p) for _, o, k, p in pending])
            except DatabaseUnavailable:
                self._went_offline()
                break
            except (QueryError, ValueError):
                # one op PostgreSQL rejects (a NUL in an id, a bad kind) must not block the
                # rest for good: apply one by one and park the ones that fail, with why
                try:
                    applied += self._apply_one_by_one(pending)
                except DatabaseUnavailable:
                    self._went_offline()
                    break
                continue
            self._offline_since = None
            self.cache.acknowledge(pending[-1][0])
        return applied

    def _apply_one_by_one(self, pending: list[tuple[int, str, str, dict[str, Any]]]) -> int:
        """Raises: DatabaseUnavailable (the rest stays queued)."""
        assert self.db is not None
        applied = 0
        for seq, op_id, kind, payload in pending:
            try:
                applied += apply_ops(self.db, [(op_id, kind, payload)])
            except (QueryError, ValueError) as exc:
                log.warning("outbox op %r (%s) parked: PostgreSQL rejects it: %s",
                            op_id, kind, exc)
                self.cache.park(seq, op_id, kind, payload, str(exc))
                continue
            self.cache.acknowledge(seq)
        return applied


    def start_background_sync(self, interval_s: float = 2.0) -> None:
        """Sync the outbox every ``interval_s`` seconds in a daemon thread."""
        if self._syncer is not None:
            return

        self.hear_changes()

        def loop() -> None:
            last_refresh = time.monotonic()
            while not self._stop.wait(interval_s):
                try:
                    if not self._listening:
                        self.hear_changes()  # (retried every interval: the TTLs meanwhile)
                    self.flush()
                    self.sync_outbox()
                    if time.monotonic() - last_refresh >= STATES_REFRESH_S:
                        last_refresh = time.monotonic()
                        self.refresh_states()
                except Exception:  # keep syncing: the outbox keeps every write meanwhile
                    self._went_offline()

        self._syncer = threading.Thread(target=loop, name="heal-lookup-sync", daemon=True)
        self._syncer.start()

    def close(self) -> None:
        """Flush, stop the background sync, and try one last sync."""
        self._stop.set()
        if self._syncer is not None:
            self._syncer.join(timeout=10)
        if self._stop_listening is not None:
            self._stop_listening()
            self._listening = False
        self.sync()


#: "not in the memo" (None is a memoized answer)
_NOT_SEEN: Any = object()


def _digest(text: str) -> bytes:
    """The key of a text in the per-text memos (detection rules, logic-bug verdict)."""
    return hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=16).digest()


def _has_usable_fix(result: LookupResult) -> bool:
    return result.fix is not None and result.fix["kind"] != FixKind.ESCALATE.value
