"""Fingerprinter: extraction + normalization + versioned hashes + template clustering."""

from __future__ import annotations

import re

from pipeline.fingerprint.cluster import (
    DEFAULT_CONFIG,
    WILDCARD,
    MinerConfig,
    TemplateMiner,
    TemplateStoreLike,
    render,
    tokenize,
)
from pipeline.fingerprint.extract import extract
from pipeline.fingerprint.hashing import ALGORITHM_VERSION, stable_hash
from pipeline.fingerprint.model import Extraction, Fingerprint
from pipeline.fingerprint.params import extract_params
from pipeline.fingerprint.rules import DEFAULT_NORMALIZER, Normalizer

#: innermost project frames that enter the fine fingerprint (deeper ones are call paths
#: that vary with the caller, not with the problem)
MAX_FRAMES = 5
_SPACE = re.compile(r"\s+")
_UNSTRUCTURED = ("log", "text")


class Fingerprinter:
    """Fingerprints raw error texts; with a ``store``, templates are mined across events.

    Raises (from ``fingerprint``):
        StreamUnavailable: a Redis-backed template store cannot be reached.
    """

    def __init__(
        self,
        store: TemplateStoreLike | None = None,
        normalizer: Normalizer = DEFAULT_NORMALIZER,
        config: MinerConfig = DEFAULT_CONFIG,
    ) -> None:
        self.normalizer = normalizer
        self.miner = TemplateMiner(store, config) if store is not None else None

    def fingerprint(self, text: str, repo: str = "") -> Fingerprint:
        extraction = extract(text, repo)
        params = extract_params(text, extraction)
        message = _mask_params(_SPACE.sub(" ", extraction.message).strip(), params)
        masked = self.normalizer.mask(message)
        # the error class is structure, not data: it is never masked
        prefix = f"{extraction.error_type}: " if extraction.error_type else ""
        tokens = tokenize(prefix + masked.text)
        mined = self.miner.template(tokens) if self.miner is not None else tokens
        template = render(mined)
        frames = extraction.project_frames()[-MAX_FRAMES:]
        frame_key = "|".join(f"{f.file}:{f.function}" for f in frames)
        top = frames[-1].function if frames else ""
        head = extraction.error_type
        if extraction.kind in _UNSTRUCTURED:
            # a log level or nothing is no error class: the message's first two constant
            # words stand in (else every ERROR line of every program would share one)
            words = [t for t in tokenize(masked.text) if t != WILDCARD][:2]
            head = " ".join([head, *words]).strip()
        coarse = stable_hash("coarse", extraction.kind, head, top)
        fine = stable_hash("fine", extraction.kind, extraction.error_type, masked.text, frame_key)
        params["cluster"] = stable_hash("cluster", extraction.kind, template, frame_key)
        hints = tuple(self.normalizer.describe(masked)) if masked.counts else ()
        return Fingerprint(
            fine=fine,
            coarse=coarse,
            version=ALGORITHM_VERSION,
            template=template,
            normalized=prefix + masked.text,
            params=params,
            extraction=extraction,
            hints=hints,
        )


#: extracted values that are masked in the message by name (they live on in ``params``)
MASKED_PARAMS = ("module", "package", "command", "host", "permission_path", "import_name")


def _mask_params(message: str, params: dict[str, object]) -> str:
    for name in MASKED_PARAMS:
        value = params.get(name)
        if isinstance(value, str) and len(value) > 1 and value in message:
            message = message.replace(value, f"<{name}>")
    return message


_STATELESS = Fingerprinter()


def fingerprint_text(
    text: str, repo: str = "", fingerprinter: Fingerprinter | None = None
) -> Fingerprint:
    """Fingerprint one raw error text (stateless unless a ``fingerprinter`` with a store
    is given; the template is then mined across every event that store has seen)."""
    return (fingerprinter or _STATELESS).fingerprint(text, repo)


def describe(extraction: Extraction) -> str:
    """One line for humans: ``python ValueError: bad value (app/models.py:save)``."""
    frames = extraction.project_frames()
    where = f" ({frames[-1].file}:{frames[-1].function})" if frames else ""
    return f"{extraction.kind} {extraction.error_type}: {extraction.message}{where}".strip()
