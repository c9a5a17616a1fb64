"""Batch fingerprinting: templates mined over a whole batch at once (order-free).

Used by ``heal fingerprint`` (every input message is seen before templates are printed, so
the output does not depend on line order) and the issue queue's groups by template
(``pipeline/operator/groups.py``); ``bench/loghub.py`` measures it as ``heal-cli``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from pipeline.fingerprint.cluster import mine, render, tokenize
from pipeline.fingerprint.fingerprinter import Fingerprinter
from pipeline.fingerprint.model import Fingerprint


def fingerprint_batch(texts: Sequence[str], repo: str = "",
                      statuses: Sequence[str] | None = None) -> list[Fingerprint]:
    """Full fingerprints; the templates are mined over the batch of extracted headlines.
    ``statuses``: how each text's command ended (``exit_status``), when known."""
    stateless = Fingerprinter()
    ended = statuses if statuses is not None else [""] * len(texts)
    fingerprints = [stateless.fingerprint(text, repo, status)
                    for text, status in zip(texts, ended, strict=True)]
    heads = [tokenize(fp.normalized) for fp in fingerprints]
    templates = mine(heads)
    return [
        dataclasses.replace(fp, template=render(templates[head]))
        for fp, head in zip(fingerprints, heads, strict=True)
    ]
