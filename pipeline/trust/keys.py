"""The operator's signing keys: HMAC-SHA256 over stage events and ``heal run`` attestations.

Where the keys come from (first found wins):

- ``HEAL_SIGNING_KEY`` (hex or any string of >= 32 characters) and, during a rotation,
  ``HEAL_SIGNING_KEY_PREVIOUS``: for workers on several machines, from a secret store;
- ``$HEAL_HOME/keys/signing.key`` (created at first use, 0600, in a 0700 folder) and
  ``$HEAL_HOME/keys/signing.key.previous`` (left by :func:`rotate`).

Rotation without downtime: :func:`rotate` moves the current key to ``.previous`` and writes
a new one; every process re-reads the files at most once a second, signs with the current
key and accepts both, so events signed just before the rotation are still accepted while
they are in flight. Remove the previous key (``heal keys retire``) once the streams have
drained. A signature is ``<kid>.<hex mac>``; ``kid`` (8 hex) names the key that made it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from pipeline.config import Settings, check_not_placeholder, check_text
from pipeline.errors import ConfigError, StateHomeFull
from pipeline.homedir import create_private_file, home_write_error
from pipeline.trust.private import check_private

ENV_KEY = "HEAL_SIGNING_KEY"
ENV_PREVIOUS = "HEAL_SIGNING_KEY_PREVIOUS"
KEY_FILE = "signing.key"
PREVIOUS_SUFFIX = ".previous"
MIN_KEY_CHARS = 32
RELOAD_EVERY_S = 1.0


def key_id(key: bytes) -> str:
    """The 8 hex digits that name ``key`` in its signatures (``heal keys show`` prints them)."""
    return hashlib.sha256(b"heal-kid\0" + key).hexdigest()[:8]


def _parse(value: str, where: str) -> bytes:
    """The key ``value`` (from the variable or file ``where``) as bytes.

    Raises:
        ConfigError: it holds the examples' placeholder, is too short, or holds bytes that are
            not UTF-8 (:func:`pipeline.config.check_text`: from ``os.environ``, which would
            fail at the first signature instead of at start-up).
    """
    value = value.strip()
    make = "python -c 'import secrets; print(secrets.token_hex(32))'"
    check_text(value, where, f"set it to the key every host uses, as text (make one with: "
               f"{make})")
    check_not_placeholder(value, where, f"replace it with the output of {make}")
    if len(value) < MIN_KEY_CHARS:
        raise ConfigError(f"{where}: a signing key needs at least {MIN_KEY_CHARS} characters "
                          "(generate one with: python -c 'import secrets; "
                          "print(secrets.token_hex(32))')")
    return value.encode()


@dataclass(frozen=True)
class KeySet:
    """The current key (signs) and the previous one (still verifies during a rotation)."""

    current: bytes
    previous: bytes | None = None
    source: str = ""

    @cached_property
    def _signers(self) -> dict[str, tuple[_Signer, ...]]:
        """Per domain: the signers of the current and previous key, made once, not per
        signature (every stage event is signed)."""
        return {}

    def _for(self, domain: str) -> tuple[_Signer, ...]:
        found = self._signers.get(domain)
        if found is None:
            found = self._signers[domain] = tuple(
                _Signer(key, domain) for key in (self.current, self.previous)
                if key is not None)
        return found

    def sign(self, domain: str, data: bytes) -> str:
        signer = self._for(domain)[0]
        return f"{signer.kid}.{signer.mac(data)}"

    def verify(self, domain: str, data: bytes, signature: str) -> bool:
        kid, _, mac = signature.partition(".")
        for signer in self._for(domain):
            if signer.kid != kid:
                continue
            return hmac.compare_digest(signer.mac(data), mac)
        return False


def key_dir(settings: Settings) -> Path:
    return settings.home / "keys"


#: HMAC's inner and outer pads as ``bytes.translate`` tables (RFC 2104)
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


class _Signer:
    """HMAC-SHA256 of ``domain NUL data`` under one key, in hex: the same value as
    ``hmac.digest(key, domain.encode() + b"\\0" + data, "sha256")`` (RFC 2104 spelled out),
    from SHA-256 states made once per key and domain (the padded keys hashed, the domain
    fed in): a signature is then two state copies, the data, and one short hash, about half
    of a keyed ``hmac`` copy fed the domain each time."""

    __slots__ = ("kid", "_inner", "_outer")

    def __init__(self, key: bytes, domain: str) -> None:
        self.kid = key_id(key)
        block = hashlib.sha256().block_size
        if len(key) > block:
            key = hashlib.sha256(key).digest()
        key = key.ljust(block, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._inner.update(domain.encode() + b"\0")
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def mac(self, data: bytes) -> str:
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


def _write_new(path: Path) -> None:
    """Create ``path`` with a fresh key unless it exists (atomic; 0600 from the start)."""
    create_private_file(path, secrets.token_hex(32).encode() + b"\n")


def _raise_if_full(exc: OSError, settings: Settings, what: str, path: Path) -> None:
    """StateHomeFull (exit 1) when ``exc`` is a full file system under HEAL_HOME: the remedy
    is to free space, not to make HEAL_HOME writable; anything else is left to the caller.

    Raises:
        StateHomeFull: no space left (the message says where and what to do).
    """
    translated = home_write_error(exc, settings.home, what, path)
    if isinstance(translated, StateHomeFull):
        raise translated from exc


def _check_private(path: Path) -> None:
    check_private(path, "signing key", if_tracked=(
        "a repository must not choose the operator's key (whoever knows it forges "
        "attestations and seals); remove it from git (git rm --cached), delete the file so "
        f"heal makes a new one, and set HEAL_HOME to a folder outside the repository or "
        f"{ENV_KEY}"))


def _read(path: Path) -> bytes:
    """The key in ``path``, when it is the operator's own (:func:`check_private`).

    Raises:
        ConfigError: the file is tracked by git, another user's or writable by others, the key
            is too short or not UTF-8 text, or the file cannot be read.
    """
    try:
        st = path.stat()
        _check_private(path)
        if st.st_mode & 0o077:
            os.chmod(path, 0o600)  # a key readable by others is tightened, not trusted less
        return _parse(path.read_text(encoding="utf-8"), str(path))
    except UnicodeDecodeError as exc:
        # heal writes 64 hex digits: other bytes are damage (or another program's file),
        # never a key to guess at; it was an internal error (heal run lost CMD's status)
        raise ConfigError(
            f"the signing key {path} is not text (byte {exc.start} is not UTF-8): heal "
            "writes it as 64 hex digits; restore it from a backup, or delete it so heal "
            "makes a new one (events and stage work signed with the old key and still in "
            "flight are then refused), or set HEAL_SIGNING_KEY") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read the signing key {path}: {exc}; check the "
                          "permissions of HEAL_HOME or set HEAL_SIGNING_KEY") from exc


def load_keys(settings: Settings) -> KeySet:
    """The key set of this installation (creating the key file at first use).

    Raises:
        ConfigError: a key is too short or cannot be read/created, a key file is not the
            operator's own (tracked by git, another user's, writable by others), or
            ``HEAL_SIGNING_KEY_PREVIOUS`` is set without ``HEAL_SIGNING_KEY``.
        StateHomeFull: the key file cannot be created for want of space.
    """
    env_key = os.environ.get(ENV_KEY)
    prev = os.environ.get(ENV_PREVIOUS)
    env_previous = _parse(prev, ENV_PREVIOUS) if prev else None
    if env_key:
        return KeySet(_parse(env_key, ENV_KEY), env_previous, source=ENV_KEY)
    if env_previous is not None:
        # the keys come from the files then, which never read the variable: it would be
        # silently ignored (and a key being rotated out silently refused)
        raise ConfigError(f"{ENV_PREVIOUS} is set but {ENV_KEY} is not: the previous key of "
                          f"an environment rotation needs the current one; set {ENV_KEY} to "
                          f"the current key too, or unset {ENV_PREVIOUS} to use the key files "
                          f"in {key_dir(settings)}")
    folder = key_dir(settings)
    path = folder / KEY_FILE
    if not path.exists():
        try:
            _private_dir(folder)
            _write_new(path)
        except OSError as exc:
            _raise_if_full(exc, settings, "creating the signing key", path)
            raise ConfigError(f"cannot create the signing key {path}: {exc}; make HEAL_HOME "
                              "writable or set HEAL_SIGNING_KEY") from exc
    previous = path.with_name(KEY_FILE + PREVIOUS_SUFFIX)
    return KeySet(_read(path), _read(previous) if previous.exists() else None,
                  source=str(path))


def rotate(settings: Settings) -> KeySet:
    """Make a new current key; the old one stays accepted as the previous key, and the key
    that was previous until now is no longer accepted (``heal keys rotate`` names it).

    Raises:
        ConfigError: keys come from the environment (rotate them there) or cannot be written.
        StateHomeFull: no space left for the new key (both keys are left as they were).
    """
    if os.environ.get(ENV_KEY):
        raise ConfigError(f"the keys come from {ENV_KEY}: rotate by setting "
                          f"{ENV_PREVIOUS} to the old value and {ENV_KEY} to a new one")
    folder = key_dir(settings)
    path = folder / KEY_FILE
    load_keys(settings)  # make sure a current key exists
    # the new key is written whole first: a full disk then leaves both keys as they were (it
    # left no current key, the old one moved to .previous)
    fresh = path.with_name(f".{KEY_FILE}.new")
    try:
        fresh.unlink(missing_ok=True)
        _write_new(fresh)
        os.replace(path, path.with_name(KEY_FILE + PREVIOUS_SUFFIX))
        os.replace(fresh, path)
    except OSError as exc:
        fresh.unlink(missing_ok=True)
        _raise_if_full(exc, settings, "rotating the signing key", folder)
        raise ConfigError(f"cannot rotate the signing key in {folder}: {exc}") from exc
    _CACHE.clear()
    return load_keys(settings)


def retire_previous(settings: Settings) -> bool:
    """Forget the previous key (after a rotation, once the streams drained)."""
    previous = key_dir(settings) / (KEY_FILE + PREVIOUS_SUFFIX)
    _CACHE.clear()
    try:
        previous.unlink()
    except FileNotFoundError:
        return False
    return True


_CACHE: dict[Path, tuple[float, tuple[int, int, bool], KeySet]] = {}
_LOCK = threading.Lock()


def _stamp(settings: Settings) -> tuple[int, int, bool]:
    folder = key_dir(settings)
    try:
        st = (folder / KEY_FILE).stat()
    except FileNotFoundError:
        return (0, 0, False)
    return (st.st_mtime_ns, st.st_ino, (folder / (KEY_FILE + PREVIOUS_SUFFIX)).exists())


_ENV_DATA = getattr(os.environ, "_data", None) if os.name == "posix" else None
_ENV_NAMES = {name: os.fsencode(name) for name in (ENV_KEY, ENV_PREVIOUS)}


def _env(name: str) -> str | None:
    """``os.environ.get(name)`` for the key variables, without the KeyError it raises and
    catches on a miss (2 us; paid for every event a stage seals)."""
    if _ENV_DATA is None:
        return os.environ.get(name)
    value = _ENV_DATA.get(_ENV_NAMES[name])
    return None if value is None else os.fsdecode(value)


def keys_for(settings: Settings) -> KeySet:
    """:func:`load_keys`, cached per HEAL_HOME and re-checked at most once a second, so a
    rotation reaches long-running workers without a restart.

    Raises:
        ConfigError, StateHomeFull: see :func:`load_keys`.
    """
    env_key = _env(ENV_KEY)
    if env_key:
        env = (env_key, _env(ENV_PREVIOUS) or "")
        cached = _ENV_CACHE.get(env)
        if cached is None:
            cached = _ENV_CACHE[env] = load_keys(settings)
        return cached
    now = time.monotonic()
    entry = _CACHE.get(settings.home)  # (one dict read needs no lock: the common case)
    if entry is not None and now - entry[0] < RELOAD_EVERY_S:
        return entry[2]
    with _LOCK:
        entry = _CACHE.get(settings.home)
        if entry is not None and now - entry[0] < RELOAD_EVERY_S:
            return entry[2]
        stamp = _stamp(settings)
        if entry is not None and entry[1] == stamp and stamp[0]:
            _CACHE[settings.home] = (now, stamp, entry[2])
            return entry[2]
        keys = load_keys(settings)
        _CACHE[settings.home] = (now, _stamp(settings), keys)
        return keys


_ENV_CACHE: dict[tuple[str, str], KeySet] = {}
