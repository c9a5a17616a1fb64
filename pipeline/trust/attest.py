"""Attestation: an ErrorEvent that heal itself produced on the operator's side.

``heal run`` ran the command itself, in a repository the operator chose, so it signs what it
saw: the event id, the command, the repository path, the working directory and the mode it
was given (``tags.heal_attest``, HMAC with the operator's key, :mod:`pipeline.trust.keys`).
An event with a valid attestation may have its command re-run and its repository acted on;
anything else on ``heal:errors`` is data (see :mod:`pipeline.trust.boundary`). The text is
not covered (it is data either way, and may be redacted or truncated on the way); replaying
an attested event under its own id changes nothing twice (dedupe and the apply marker).
"""

from __future__ import annotations

import dataclasses

import orjson

from pipeline.config import Settings
from pipeline.errors import ConfigError, StateHomeFull
from pipeline.events import ErrorEvent
from pipeline.trust.keys import keys_for

ATTEST_TAG = "heal_attest"
DOMAIN = "attest"


def _payload(event: ErrorEvent) -> bytes | None:
    """The signed bytes; None when the event holds text that is not Unicode (a surrogate
    escape of a byte that is not UTF-8, PEP 383): no JSON carries it, so no stage could
    compute the same bytes, and a stand-in (``\\xff`` for the byte) would sign a command
    or path that is not the one run."""
    tags = event.tags if isinstance(event.tags, dict) else {}
    try:
        return orjson.dumps({
            "id": event.id,
            "command": list(event.command),
            "repo": event.repo.path,
            "cwd": str(tags.get("cwd") or ""),
            "mode": str(tags.get("mode") or ""),
        }, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return None


def attest(event: ErrorEvent, settings: Settings) -> ErrorEvent:
    """The event with its attestation (for producers that ran the command themselves).

    Raises:
        ConfigError: the signing key cannot be read or created, or the command or repository
            path is not UTF-8 (see :func:`_payload`).
        StateHomeFull: no space left to create it.
    """
    payload = _payload(event)
    if payload is None:
        raise ConfigError("the command line or the repository path holds a byte that is not "
                          "UTF-8, which an event cannot carry exactly, so it is not signed")
    signature = keys_for(settings).sign(DOMAIN, payload)
    return dataclasses.replace(event, tags={**event.tags, ATTEST_TAG: signature})


def is_attested(event: ErrorEvent, settings: Settings) -> bool:
    tags = event.tags if isinstance(event.tags, dict) else {}
    signature = tags.get(ATTEST_TAG)
    if not isinstance(signature, str) or len(signature) > 200:
        return False
    payload = _payload(event)
    if payload is None:
        return False
    try:
        return keys_for(settings).verify(DOMAIN, payload, signature)
    except (ConfigError, StateHomeFull):  # no usable key: nothing is attested
        return False
