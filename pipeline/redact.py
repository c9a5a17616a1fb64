"""Secrets redacted from event text before anything is written (issue 11, item 9).

Error texts carry whatever the failing program printed: tokens in URLs, keys in
environment dumps, passwords in connection strings. Every :class:`~pipeline.events.ErrorEvent`
is redacted when it is built or decoded, so no stream, table, audit line, notification or
API answer downstream ever holds the clear value.

A data table of named rules (the style of the masking rules): each is linear (bounded
repeats, literal prefixes; ``tests/security/test_regex_bounds.py`` fuzzes them) and replaces
the secret with ``<redacted:NAME>``; a key or scheme in front of it is kept so the error
still reads (``password=<redacted:password>``). The placeholder never matches a rule again,
so redaction is idempotent.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.literals import literal_alternation

#: name -> pattern; the group ``s`` (when present) is what is replaced, else the whole match
REDACTION_RULES: dict[str, re.Pattern[str]] = {
    # PEM private keys (GCP service-account JSON carries one), up to the END line if present
    "private_key": re.compile(
        r"(?P<s>-----BEGIN [A-Z ]{0,24}PRIVATE KEY-----[^-]{0,16384}"
        r"(?:-----END [A-Z ]{0,24}PRIVATE KEY-----)?)"),
    # GitHub: classic (ghp_, gho_, ghu_, ghs_, ghr_) and fine-grained (github_pat_) tokens
    "github_token": re.compile(
        r"\b(?P<s>gh[pousr]_[A-Za-z0-9]{20,255}|github_pat_[A-Za-z0-9_]{20,255})"),
    # GitLab personal/project/group access tokens
    "gitlab_token": re.compile(r"\b(?P<s>glpat-[A-Za-z0-9_-]{20,255})"),
    # AWS access key ids (long-lived AKIA, temporary ASIA) and secret keys by name
    "aws_access_key": re.compile(r"\b(?P<s>(?:AKIA|ASIA)[0-9A-Z]{16})\b"),
    "aws_secret_key": re.compile(
        r"(?i)\baws_secret_access_key[\"']?\s{0,8}[=:]\s{0,8}[\"']?(?P<s>[A-Za-z0-9/+=]{20,80})"),
    # Google Cloud API keys
    "gcp_api_key": re.compile(r"\b(?P<s>AIza[0-9A-Za-z_-]{35})"),
    # Slack bot, user, app and refresh tokens
    "slack_token": re.compile(r"\b(?P<s>xox[abposr]-[A-Za-z0-9-]{10,255})"),
    # OpenAI (sk-..., sk-proj-...) and similar sk- secret keys; Stripe sk_live_/rk_live_
    "openai_key": re.compile(r"\b(?P<s>sk-[A-Za-z0-9_-]{20,255}|[sr]k_live_[A-Za-z0-9]{16,255})"),
    # JSON Web Tokens: three base64url parts, the first two JSON objects ("eyJ")
    "jwt": re.compile(
        r"\b(?P<s>eyJ[A-Za-z0-9_-]{8,4096}\.eyJ[A-Za-z0-9_-]{8,4096}\.[A-Za-z0-9_-]{0,4096})"),
    # Authorization headers: Bearer/Basic/token credentials
    "authorization": re.compile(
        r"(?i)\bauthorization[\"']?\s{0,8}[=:]\s{0,8}[\"']?(?:bearer|basic|token)\s{1,8}"
        r"(?P<s>[A-Za-z0-9._~+/=-]{8,4096})"),
    # URLs with credentials: scheme://user:password@host (the user is kept)
    "url_credentials": re.compile(
        r"\b[a-zA-Z][a-zA-Z0-9+.-]{0,20}://[^\s/@:<>]{0,256}:(?P<s>[^\s/@<>]{1,256})@"),
    # password=..., secret: ..., api_key="..." (a value that is not already a placeholder)
    "password": re.compile(
        r"(?i)\b(?:password|passwd|pwd|secret|client_secret|api[_-]?key|access[_-]?token"
        r"|auth[_-]?token|private[_-]?token)[\"']?\s{0,8}[=:]\s{0,8}[\"']?"
        r"(?P<s>[^\s\"',;&<>]{1,256})"),
}

#: per rule, literals (lower case) one of which every match of the rule contains, and
#: literals every match contains as well (``url_credentials`` needs an ``@``): a rule runs
#: only on a text holding them. Checked against the text case-folded by :func:`_folded`,
#: so a case-insensitive rule's match always shows its literal there. A new rule needs its
#: triggers (``tests/security/test_redact_triggers.py`` checks both agree on fuzzed texts).
RULE_TRIGGERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "private_key": (("private key-----",), ()),
    "github_token": (("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"), ()),
    "gitlab_token": (("glpat-",), ()),
    "aws_access_key": (("akia", "asia"), ()),
    "aws_secret_key": (("aws_secret_access_key",), ()),
    "gcp_api_key": (("aiza",), ()),
    "slack_token": (("xox",), ()),
    "openai_key": (("sk-", "k_live_"), ()),
    "jwt": ((".eyj",), ()),
    "authorization": (("authorization",), ()),
    "url_credentials": (("://",), ("@",)),
    "password": (("password", "passwd", "pwd", "secret", "api_key", "api-key", "apikey",
                  "token"), ()),
}


#: cheap pre-filter: one scan of the folded text for any rule's literal (literals only:
#: linear); a text without one holds no secret and costs no rule
_ANY_TRIGGER = re.compile(literal_alternation(t for anyof, _ in RULE_TRIGGERS.values()
                                               for t in anyof))
#: the characters a case-insensitive ``re`` pattern matches with an ASCII letter that
#: ``str.lower`` does not turn into it (``paſsword`` matches ``(?i)password``)
_FOLD = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})
#: texts seen without anything to redact (a stage decodes the same texts again and again;
#: only clean texts are kept, so no secret lingers here); cleared when full: at most
#: _CLEAN_MAX texts of at most _CLEAN_TEXT_CHARS characters, _CLEAN_CHARS in all. As many
#: texts as the fingerprint stage's analysis cache holds: a working set of distinct texts
#: larger than this cache empties it again and again (8,192 did, on the 9,368 distinct
#: texts of ``bench/stage_throughput.py``, and the stage paid the trigger scan per event)
_CLEAN: dict[str, None] = {}
_CLEAN_MAX = 32768
_CLEAN_TEXT_CHARS = 16 * 1024
_CLEAN_CHARS = 4 * 1024 * 1024
_clean_chars = [0]


def _folded(text: str) -> str:
    """``text`` lowered so that every case-insensitive match of a rule shows its literal."""
    return text.lower() if text.isascii() else text.translate(_FOLD).lower()


def redact(text: str) -> str:
    """``text`` with every secret replaced by ``<redacted:NAME>``."""
    return redact_counted(text)[0]


def redact_counted(text: str) -> tuple[str, int]:
    """``(redacted text, how many secrets were replaced)``."""
    if text in _CLEAN:
        return text, 0
    folded = _folded(text)
    if _ANY_TRIGGER.search(folded) is None:
        _remember_clean(text)
        return text, 0
    total = 0
    for name, pattern in REDACTION_RULES.items():
        anyof, allof = RULE_TRIGGERS[name]
        if not any(t in folded for t in anyof) or not all(t in folded for t in allof):
            continue
        placeholder = f"<redacted:{name}>"

        def replace(match: re.Match[str], placeholder: str = placeholder) -> str:
            nonlocal total
            total += 1
            whole = match.group(0)
            start, end = match.span("s")
            base = match.start(0)
            return whole[: start - base] + placeholder + whole[end - base:]

        redacted = pattern.sub(replace, text)
        if redacted != text:  # the next rules look at what is left
            text, folded = redacted, _folded(redacted)
    if not total:
        _remember_clean(text)
    return text, total


def _remember_clean(text: str) -> None:
    if len(text) > _CLEAN_TEXT_CHARS:
        return
    if len(_CLEAN) >= _CLEAN_MAX or _clean_chars[0] + len(text) > _CLEAN_CHARS:
        _CLEAN.clear()
        _clean_chars[0] = 0
    _CLEAN[text] = None
    _clean_chars[0] += len(text)


def redact_value(value: Any) -> Any:
    """Strings redacted inside nested lists and dicts (tags, command arguments)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    return value
