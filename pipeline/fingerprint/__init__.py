"""Fingerprinting: extraction, normalization rules, versioned hashes, template clustering.

Public entry points::

    from pipeline.fingerprint import fingerprint_text, Fingerprinter, Fingerprint
    fp = fingerprint_text(text, repo="/srv/checkout")
    fp = fingerprint_event(event)  # an ErrorEvent: text, repository, exit code, signal
    fp.fine, fp.coarse, fp.version, fp.template, fp.params, fp.extraction, fp.hints

Modules: ``rules`` (masking table), ``extract`` + ``parsers_*`` (error extraction),
``params`` (parameters for fix templates), ``hashing`` (versions), ``cluster`` (template
mining and its determinism argument), ``store`` (in-memory and Redis template stores).
"""

from pipeline.fingerprint.fingerprinter import (
    Fingerprinter,
    describe,
    fingerprint_event,
    fingerprint_text,
)
from pipeline.fingerprint.hashing import ALGORITHM_VERSION, VERSIONS
from pipeline.fingerprint.model import Extraction, Fingerprint, Frame

__all__ = [
    "ALGORITHM_VERSION",
    "VERSIONS",
    "Extraction",
    "Fingerprint",
    "Fingerprinter",
    "Frame",
    "describe",
    "fingerprint_event",
    "fingerprint_text",
]
