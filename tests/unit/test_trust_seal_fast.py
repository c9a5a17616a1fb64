"""The signers' precomputed HMAC states give byte-identical signatures to ``hmac.digest``,
for every key length (shorter than, equal to and longer than SHA-256's block), and a stage's
sealing wrapper seals exactly as ``seal`` does."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.trust.keys import KeySet, key_id, keys_for
from pipeline.trust.seal import SealedHandler, seal, unseal

KEYS = [b"k" * 32, b"0123456789abcdef" * 4, b"x" * 65, "ключ-".encode() * 40,
        bytes(range(256))]
DATA = [b"", b"{}", b'{"kind":"fingerprint","id":"e:fingerprint"}', b"\x00\xff" * 3000]


@pytest.mark.parametrize("key", KEYS)
def test_signatures_equal_the_standard_hmac(key: bytes) -> None:
    keys = KeySet(key, previous=b"p" * 40)
    for domain in ("stage:fingerprints", "stage:verdicts", "attest", "ü"):
        for data in DATA:
            expected = hmac.digest(key, domain.encode() + b"\0" + data, "sha256").hex()
            assert keys.sign(domain, data) == f"{key_id(key)}.{expected}"
            assert keys.sign(domain, data) == f"{key_id(key)}.{expected}"  # (states reused)
            assert keys.verify(domain, data, f"{key_id(key)}.{expected}")
            assert not keys.verify(domain, data + b" ", f"{key_id(key)}.{expected}")
    old = hmac.new(b"p" * 40, b"attest\0x", hashlib.sha256).hexdigest()
    assert keys.verify("attest", b"x", f"{key_id(b'p' * 40)}.{old}")


class _Inner:
    def encode_output(self, event: bytes) -> bytes:
        return event


def test_the_sealing_wrapper_seals_as_seal_does(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEAL_SIGNING_KEY", raising=False)
    settings = Settings(redis_url=None, database_url=None, home=tmp_path, prefix="t")
    handler = SealedHandler(_Inner(), settings, "errors", "fingerprints")
    raw = b'{"kind":"fingerprint","id":"e:fingerprint","n":1}'
    sealed = handler.encode_output(raw)
    assert sealed == seal(settings, "fingerprints", raw)
    assert unseal(settings, "fingerprints", sealed) == raw
    expected = hmac.digest(keys_for(settings).current, b"stage:fingerprints\0" + raw,
                           "sha256").hex()
    assert sealed.endswith(f'"seal":"{key_id(keys_for(settings).current)}.{expected}"}}'
                           .encode())
