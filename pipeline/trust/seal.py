"""Integrity between stages: every event a stage hands off is sealed with the operator's key.

A sealed entry is the event's own JSON with one more key at the end, ``"seal":
"<kid>.<hmac>"``, the HMAC (see :mod:`pipeline.trust.keys`) of the JSON without it, bound to
the stream it was written for (so a fingerprint event cannot be replayed as a verdict).
Readers that only look (``heal run``, explain, the demo) decode it as before: unknown keys
are ignored. A stage refuses an input that is not sealed by a holder of the key, so an
entry XADDed by hand to ``heal:verdicts`` is dead-lettered with that reason and never acted
on. The input stream ``heal:errors`` is the public contract and is never sealed: its events
are untrusted data (see :mod:`pipeline.trust.boundary`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from pipeline.config import STREAM_ERRORS, Settings
from pipeline.errors import EventValidationError
from pipeline.stage import output_encoder
from pipeline.trust.keys import KeySet, keys_for

log = logging.getLogger("heal.trust")

_MARK = b',"seal":"'


def seal(settings: Settings, role: str, raw: bytes) -> bytes:
    """``raw`` (a JSON object) with its seal for stream ``role`` (e.g. ``verdicts``).

    Raises:
        ConfigError: the signing key cannot be read or created.
    """
    return _sealed(keys_for(settings), f"stage:{role}", raw)


def _sealed(keys: KeySet, domain: str, raw: bytes) -> bytes:
    if not raw.endswith(b"}") or raw == b"{}":
        raise ValueError("only a non-empty JSON object can be sealed")
    return b"".join((raw[:-1], _MARK, keys.sign(domain, raw).encode(), b'"}'))


def unseal(settings: Settings, role: str, raw: bytes) -> bytes | None:
    """The JSON without its seal when the seal is valid for ``role``; None otherwise."""
    at = raw.rfind(_MARK)
    if at < 0 or not raw.endswith(b'"}'):
        return None
    body = raw[:at] + b"}"
    signature = raw[at + len(_MARK):-2].decode("ascii", "replace")
    if keys_for(settings).verify(f"stage:{role}", body, signature):
        return body
    return None


def refusal(role: str, raw: bytes) -> EventValidationError:
    reason = (f"refused: this {role} entry carries no valid seal (it was not written by a "
              "heal stage holding the signing key; a forged or edited stage event is never "
              "acted on)")
    return EventValidationError(reason, raw)


class SealedHandler:
    """Wraps a stage handler: checks the seal of every input (except ``errors``) before
    decoding it, and seals every output for the stage's output stream."""

    handle: Callable[[Any], Sequence[Any]]

    def __init__(self, inner: Any, settings: Settings, input_role: str,
                 output_role: str | None) -> None:
        self.inner = inner
        self.settings = settings
        self.input_role = input_role
        self.output_role = output_role
        #: the HMAC domain of the outputs (formatted once, not per event)
        self._output_domain = f"stage:{output_role}"
        #: the inner handler's own encoder, else each event's ``encode`` (looked up once)
        self._encode = output_encoder(inner)
        # the public input stream is never sealed: its events go straight to the decoder
        direct = getattr(inner, "decode", None) if input_role == STREAM_ERRORS else None
        self.decode: Callable[[bytes], Any] = direct or self._decode
        handle = getattr(inner, "handle", None)
        if handle is not None:  # the inner handler's own: no forwarding frame per event
            self.handle = handle

    def _decode(self, raw: bytes) -> Any:
        """Raises EventValidationError (dead-lettered by the runtime) for a bad seal."""
        if self.input_role != STREAM_ERRORS:
            body = unseal(self.settings, self.input_role, raw)
            if body is None:
                error = refusal(self.input_role, raw)
                log.warning("trust: %s (%d bytes)", error.reason, len(raw))
                raise error
            raw = body
        return self.inner.decode(raw)

    def encode_output(self, event: Any) -> bytes:
        raw = self._encode(event)
        if self.output_role is None:
            return raw
        return _sealed(keys_for(self.settings), self._output_domain, raw)

    def encode_outputs(self, outputs: Sequence[Sequence[Any]]) -> list[list[bytes]]:
        """:meth:`encode_output` of every output of a batch (``outputs[i]``: one event's),
        the signing key looked up once for them all.

        Raises:
            ConfigError: the signing key cannot be read or created.
        """
        encode = self._encode
        if self.output_role is None:
            return [[encode(o) for o in produced] for produced in outputs]
        keys, domain = keys_for(self.settings), self._output_domain
        return [[_sealed(keys, domain, encode(o)) for o in produced] for produced in outputs]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
