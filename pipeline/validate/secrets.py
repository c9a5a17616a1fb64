"""Secrets that must never be added by a fix: a data table of named patterns."""

from __future__ import annotations

import re

#: name -> pattern matched against each added line of a diff
SECRET_PATTERNS: dict[str, re.Pattern[str]] = {
    # PEM private keys of any algorithm
    "private_key": re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),
    # AWS access key ids have a fixed prefix and length
    "aws_access_key": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    # GitHub tokens (classic and fine-grained)
    "github_token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})\b"),
    # OpenAI-style and Slack tokens
    "api_token": re.compile(r"\b(?:sk-[A-Za-z0-9_-]{20,}|xox[baprs]-[A-Za-z0-9-]{10,})\b"),
    # password = "literal" assignments (a variable or env lookup is fine)
    "password_literal": re.compile(
        r"(?i)\b(?:password|passwd|secret|api_key|token)\b\s*[:=]\s*['\"][^'\"\s]{6,}['\"]"),
}


def added_lines(diff: str) -> list[str]:
    return [line[1:] for line in diff.splitlines()
            if line.startswith("+") and not line.startswith("+++")]


def find_secrets(diff: str) -> list[str]:
    """Names of the secret patterns found in lines the diff adds."""
    hits: list[str] = []
    for line in added_lines(diff):
        for name, pattern in SECRET_PATTERNS.items():
            if pattern.search(line) and name not in hits:
                hits.append(name)
    return hits


def diff_size(diff: str) -> tuple[int, int]:
    """(changed lines, files) of a unified diff."""
    lines = sum(1 for line in diff.splitlines()
                if line[:1] in "+-" and not line.startswith(("+++", "---")))
    files = sum(1 for line in diff.splitlines() if line.startswith("diff --git "))
    return lines, files or (1 if lines else 0)
