"""The redaction pre-filters skip work, never a secret.

``pipeline.redact`` runs a rule only when the text holds one of the rule's literals
(``RULE_TRIGGERS``) and keeps the texts it found clean; both are shortcuts, so the result
must equal running every rule on every text, whatever the text.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import redact as redaction
from pipeline.redact import REDACTION_RULES, RULE_TRIGGERS, redact, redact_counted


def _every_rule(text: str) -> tuple[str, int]:
    """The reference: every rule, in order, on every text, no pre-filter."""
    total = 0
    for name, pattern in REDACTION_RULES.items():
        placeholder = f"<redacted:{name}>"

        def replace(match: re.Match[str], placeholder: str = placeholder) -> str:
            nonlocal total
            total += 1
            whole, base = match.group(0), match.start(0)
            start, end = match.span("s")
            return whole[: start - base] + placeholder + whole[end - base:]

        text = pattern.sub(replace, text)
    return text, total


#: pieces of secrets, their keys in several cases, the letters a case-insensitive pattern
#: matches with an ASCII letter (``ſ`` is ``s``, ``K`` is ``k``, ``ı``/``İ`` are ``i``), and the
#: separators and URL parts around them
_PIECES = [
    "ghp_", "github_pat_", "glpat-", "AKIA", "ASIA", "aws_secret_access_key",
    "AWS_SECRET_ACCESS_KEY",
    "AIza", "xoxb-", "sk-", "sk_live_", "rk_live_", "eyJ", ".eyJ", "Authorization", "AUTHORIZATION",
    "Bearer ", "basic ", "token ", "://", "https://", "@", "password", "PassWord", "passwd",
    "pwd", "secret", "client_secret", "api_key", "API-KEY", "apikey", "access_token",
    "auth-token", "PrivateToken", "-----BEGIN RSA PRIVATE KEY-----",
    "-----END RSA PRIVATE KEY-----", "\u017f", "\u212a", "\u0131", "\u0130", "pa\u017f\u017fword",
    "api_\u212aey", "AP\u0130_KEY", "=", ": ", ":", "\"", "'", " ", "\n", "/", "bob",
    "A1b2C3d4E5", "ABCDEFGHIJKLMNOP", "x7Y8z9W0v1", "hunter2", "0123456789", "_", "-",
    "SyD-abcdefghijklmnopqrstuvwxyz12345",
    # whole secrets and their parts, so that every rule fires in some examples
    "eyJhbGciOiJIUzI1NiJ9", ".eyJzdWIiOiIxMjM0NTY3ODkwIn0", ".dozjgNryP4J3jVmNHl0w5N_XgL0n3",
    "https://bob:s3cr3t-pass-word@git.example.com/r.git", "ftp://u:p@h", "bob:", "s3cr3t@",
    "Authorization: Bearer abcdefgh12345678", "xoxb-123456789012-abcdefghij",
    "ghp_A1b2C3d4E5A1b2C3d4E5A1b2", "AKIAABCDEFGHIJKLMNOP ",
    # the assignments and options of the generalized password rule, and their near misses
    "DB_PASSWORD", "PGPASSWORD", "MYSQL_PWD", "_PASS", ".pass", "-pass", "pass", "bypass",
    "NPM_TOKEN", "_authToken", "authToken", "PublicKeyToken", "token", "Token", "tokens",
    "SECRET_KEY", "secret_key", "passphrase", "private_key", "--", "--password ", "--db-",
    "--token ", "=>", "3", "12", "/etc/passwd", "\t",
]


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=24))
def test_the_pre_filters_redact_exactly_what_every_rule_would(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert redact_counted(text) == _every_rule(text)
    # a second time (a clean text is then answered from the cache) gives the same
    assert redact_counted(text) == _every_rule(text)


def test_every_rule_has_triggers_and_a_secret_spelled_with_unicode_case_is_redacted() -> None:
    assert set(RULE_TRIGGERS) == set(REDACTION_RULES)
    # a case-insensitive rule matches these spellings; the pre-filter once lowered the text
    # with str.lower alone (which keeps ``ſ`` and ``ı``, and turns ``İ`` into two characters),
    # so it skipped them and the secret went through in clear
    for text in ("pa\u017f\u017fword=hunter2-Xyz12345", "AP\u0130_KEY=hunter2-Xyz12345",
                 "pa\u017fswd=hunter2-Xyz12345", "api_\u212aey: hunter2-Xyz12345"):
        assert "hunter2" not in redact(text), text


def test_only_clean_texts_are_remembered_and_the_memory_stays_bounded() -> None:
    secret = "psql: password=hunter2-Very-Secret-" + "q" * 8
    assert "hunter2" not in redact(secret)
    assert secret not in redaction._CLEAN
    for i in range(redaction._CLEAN_MAX + 10):
        redact(f"plain text {i}")
    assert len(redaction._CLEAN) <= redaction._CLEAN_MAX
    assert redaction._clean_chars[0] <= redaction._CLEAN_CHARS
    big = "x" * (redaction._CLEAN_TEXT_CHARS + 1)
    assert redact(big) == big and big not in redaction._CLEAN
