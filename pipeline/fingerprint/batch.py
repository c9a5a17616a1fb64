"""Batch fingerprinting: templates mined over a whole batch at once (order-free).

Used by ``heal fingerprint`` (every input message is seen before templates are printed, so
the output does not depend on line order) and by ``bench/loghub.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import lru_cache

from pipeline.fingerprint.cluster import DEFAULT_CONFIG, MinerConfig, Tokens, mine, render, tokenize
from pipeline.fingerprint.fingerprinter import Fingerprinter
from pipeline.fingerprint.model import Fingerprint
from pipeline.fingerprint.rules import DEFAULT_NORMALIZER


@lru_cache(maxsize=1 << 16)
def message_tokens(message: str) -> Tokens:
    """Normalized tokens of one log message (cached: logs repeat themselves a lot)."""
    return tokenize(DEFAULT_NORMALIZER.normalize(message))


def template_messages(
    messages: Sequence[str], config: MinerConfig = DEFAULT_CONFIG
) -> list[Tokens]:
    """The mined template of each message (the fast path for plain log lines)."""
    tokens = [message_tokens(m) for m in messages]
    templates = mine(tokens, config)
    return [templates[t] for t in tokens]


def fingerprint_batch(texts: Sequence[str], repo: str = "") -> list[Fingerprint]:
    """Full fingerprints; the templates are mined over the batch of extracted headlines."""
    stateless = Fingerprinter()
    fingerprints = [stateless.fingerprint(text, repo) for text in texts]
    heads = [tokenize(fp.normalized) for fp in fingerprints]
    templates = mine(heads)
    return [
        dataclasses.replace(fp, template=render(templates[head]))
        for fp, head in zip(fingerprints, heads, strict=True)
    ]
