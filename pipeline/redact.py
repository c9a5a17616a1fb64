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

A value found by its key or its place (``password=``, ``Authorization: Bearer``,
``user:PASSWORD@``) is replaced whole, however long, up to the character that ends it (a
bound there published the rest of a longer secret). Its run is possessive (``++``: it never
gives back a character) and only a literal key or ``://`` before it starts one, so each
character is read a bounded number of times. A secret of a fixed shape (``ghp_``, ``AKIA``,
a JWT) keeps its shape's bound.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.literals import literal_alternation

#: the end of a key whose value is a secret, wherever the key starts (``PGPASSWORD``,
#: ``DB_PASSWORD``, ``MYSQL_PWD``, ``STRIPE_API_KEY``, ``client_secret``, ``SECRET_KEY``):
#: matched from the word itself, so the key's own start costs no backtracking. Two words
#: are common in prose and count only as the end of a longer key: ``pass`` after ``_``,
#: ``.`` or ``-`` (``DB_PASS``; never ``passed``, ``bypass``, ``compass``), ``token`` after
#: ``_``, ``.``, ``-`` or a word naming a credential (``NPM_TOKEN``, ``x-auth-token``,
#: ``_authToken``, ``accessToken``; never ``tokens``, nor .NET's public ``PublicKeyToken``),
#: a bare ``token`` only directly before ``=`` or a closing quote (``?token=``,
#: ``"token": ...``; never ``Unexpected token: punc``). ``/etc/passwd:`` is a path, not a
#: key, and a value of one or two digits a count, not a secret (``Number of tries to enter
#: a password: 3``, ``rabbit_password: 2 unresolved calls``), nor is ``YES``/``NO``, whether
#: one was sent (MySQL's ``Access denied for user 'app'@'host' (using password: YES)``).
_SECRET_KEY = (
    r"(?:password|passwd|passphrase|pwd|secret(?:[_-]?key)?|api[_-]?key|private[_-]?key"
    r"|(?<=[_.-])token|(?:auth|access|refresh|api|bearer|session|oauth|csrf|xsrf|private"
    r"|secret|personal|registry|npm)token|(?<![a-z0-9_.-])token(?=[=\"'])|(?<=[_.-])pass)"
)
#: the same words as a command-line option taking the next word (``--password VALUE``,
#: ``--db-password VALUE``, ``--auth-token VALUE``); ``-pVALUE`` is not one (``-p8080``)
_SECRET_FLAG = (
    r"(?:password|passwd|passphrase|pass|secret|token|api-?key|private-key)"
)

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
        r"(?i)\baws_secret_access_key[\"']?\s{0,8}[=:]\s{0,8}[\"']?(?P<s>[A-Za-z0-9/+=]{20,}+)"),
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
        r"(?P<s>[A-Za-z0-9._~+/=-]{8,}+)"),
    # URLs with credentials: scheme://user:password@host (the user is kept)
    "url_credentials": re.compile(
        r"\b[a-zA-Z][a-zA-Z0-9+.-]{0,20}://[^\s/@:<>]*+:(?P<s>[^\s/@<>]++)@"),
    # password=..., DB_PASSWORD=..., secret_key: '...', "api_key": "...", NPM_TOKEN=...,
    # //registry/:_authToken=..., --password VALUE (a value that is not already a placeholder)
    "password": re.compile(
        r"(?i)(?:(?<!/)" + _SECRET_KEY + r"[\"']?[ \t]{0,8}(?:=>?|:)[ \t]{0,8}[\"']?"
        r"|(?<![\w-])--(?:[a-z0-9]{1,20}-){0,2}" + _SECRET_FLAG + r"[ \t]{1,8}[\"']?(?!-))"
        r"(?!\d{1,2}(?:[\s\"',;&<>]|$))(?!(?:yes|no)(?:[\s\"',;&<>)]|$))"
        r"(?P<s>[^\s\"',;&<>]++)"),
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
    "password": (("password", "passwd", "passphrase", "pwd", "secret", "api_key", "api-key",
                  "apikey", "private_key", "private-key", "privatekey", "token", "_pass",
                  ".pass", "-pass"), ()),
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


#: an argument that is an option taking a secret as the next argument (``--password``,
#: ``-password``, ``--db-password``, ``--auth-token``): in an argv the value is its own
#: word, which no rule over one argument sees
_SECRET_OPTION = re.compile(r"(?i)--?(?:[a-z0-9]{1,20}[-_]){0,2}" + _SECRET_FLAG)


def redact_argv(argv: list[str] | tuple[str, ...]) -> list[str]:
    """``argv`` with every argument redacted, and the argument after an option that takes a
    secret (``["mysql", "--password", "hunter3"]``) replaced whole."""
    out = [redact(arg) for arg in argv]
    for i in range(len(out) - 1):
        arg = out[i]
        if arg[:1] == "-" and _SECRET_OPTION.fullmatch(arg):
            value = out[i + 1]
            if value and value[:1] != "-" and not value.startswith("<redacted:"):
                out[i + 1] = "<redacted:password>"
    return out


#: how far before a cut a rule may need to look: longer than any rule's match (a PEM key
#: and its 16 K of body) but a value found by its key, which holds no blank and may be
#: longer (the word a cut falls in is dropped with it). A cut text is redacted with this
#: much more of the original, so a secret the cut splits is still whole when the rules run,
#: and only then cut.
CUT_MARGIN = 17 * 1024
_PEM_END = re.compile(r"-----END [A-Z ]{0,24}PRIVATE KEY-----")
#: a run of characters up to a blank: no secret a rule finds by its key holds a blank
_WORD = re.compile(r"\S*+")


def _utf8_tail(text: str, limit: int) -> str:
    data = text.encode("utf-8", "replace")
    return text if len(data) <= limit else data[-limit:].decode("utf-8", "ignore")


def _utf8_head(text: str, limit: int) -> str:
    data = text.encode("utf-8", "replace")
    return text if len(data) <= limit else data[:limit].decode("utf-8", "ignore")


def redacted_tail(text: str, limit: int, started_inside: bool = False) -> str:
    """The end of ``text`` within ``limit`` UTF-8 bytes, secrets redacted BEFORE the cut,
    so a secret the cut splits (``password=CutSecret`` kept as ``ord=CutSecret``) is never
    kept in part.

    ``CUT_MARGIN`` characters more than the limit are redacted, then cut away. When the
    window of text redacted does not start where ``text`` does, or ``started_inside`` says
    ``text`` itself is the end of something longer (a bounded buffer's tail), its start may
    be the rest of a secret whose key was cut away, which no rule recognizes: the first line
    of the redacted window is dropped (with a PEM key's body up to its END line, when its
    BEGIN was cut), or with no line break within ``CUT_MARGIN``, that many characters (more
    than any secret is long). Cutting redacted text splits no secret.
    """
    window = text[-(limit + CUT_MARGIN):]  # (a character is at least a byte)
    clean = redact(window)
    if started_inside or len(window) < len(text):
        clean = _drop_cut_start(clean)
    return _utf8_tail(clean, limit)


def redacted_head(text: str, limit: int) -> str:
    """The start of ``text`` within ``limit`` UTF-8 bytes, secrets redacted before the cut
    (the mirror of :func:`redacted_tail`: the redacted window's partial last line, which
    may hold the start of a secret no rule recognizes without its end, is dropped)."""
    window = text[: limit + CUT_MARGIN]
    clean = redact(window)
    if len(window) < len(text):
        newline = clean.rfind("\n", max(0, len(clean) - CUT_MARGIN))
        if newline >= 0:
            clean = clean[: newline + 1]
        else:
            clean = clean[: max(0, len(clean) - CUT_MARGIN)]
            # and the word there when it is a URL: the one rule that needs a secret's end
            # (`user:PASSWORD@`) missed a password longer than the margin. A value found by
            # its key was redacted up to the window's end; any other long word (an
            # attacker's 20 MB line, one huge argument) keeps its start. (The word is read
            # backwards: a regex search from the end is linear.)
            word = _WORD.match(clean[::-1])
            if word and "://" in clean[len(clean) - word.end():]:
                clean = clean[: len(clean) - word.end()]
    return _utf8_head(clean, limit)


def _drop_cut_start(clean: str) -> str:
    newline = clean.find("\n", 0, CUT_MARGIN)
    if newline >= 0:
        rest = clean[newline + 1:]
    else:  # and the rest of the word there: a value found by its key may be longer
        rest = clean[CUT_MARGIN:]
        word = _WORD.match(rest)
        rest = rest[word.end():] if word else rest
    end = _PEM_END.search(rest, 0, CUT_MARGIN)
    if end is not None and "-----BEGIN " not in rest[: end.start()]:
        rest = rest[end.end():]  # the body of a key whose BEGIN line was cut away
    return rest
