"""Detection rules for taught patterns: derived from an error's normalized headline, or given
by a person with ``--regex``; either way checked to run in bounded time on hostile text.

A derived rule turns ``SettingsDriftError: answer must be <num> in <path>`` into a regex where
each literal stays literal and each ``<name>`` placeholder becomes an *atomic* group: the
masking rule's own pattern when ``<name>`` is one of the normalizer's rules, else a bounded
run of characters that stops at whitespace and at the next literal's first character. Atomic
groups never give back what they matched, and the whitespace between words is possessive, so
at every start position the regex advances without backtracking: matching costs
O(len(text) x len(rule)), whatever the event holds.

A person's ``--regex`` is accepted only in a shape that cannot backtrack super-linearly (see
:func:`check_regex`); the message says how to rewrite it.
"""

from __future__ import annotations

import re
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

from pipeline.errors import UsageError
from pipeline.fingerprint.rules import RULES


def compact(verbose: str) -> str:
    """A masking rule's verbose pattern on one line (comments and layout whitespace dropped;
    the rules hold no literal space or ``#`` outside an escape)."""
    lines = [re.sub(r"(?<!\\)#.*$", "", line) for line in verbose.splitlines()]
    return re.sub(r"(?<!\\)\s+", "", "".join(lines))


#: placeholders whose masking rule is reused (compacted, inside an atomic group)
_RULE_PATTERNS = {r.name: compact(r.pattern) for r in RULES}
_PLACEHOLDER = re.compile(r"<([a-z_][a-z0-9_]*)>")
#: a derived rule covers at most this much of the headline (longer tails are data anyway)
MAX_HEADLINE = 300
#: a placeholder that no masking rule describes matches at most this many characters
MAX_VALUE = 256
#: a person's regex: longest accepted, and the most backtracking repeats it may hold
MAX_REGEX = 2000
MAX_BOUNDED_REPEAT = 64
MAX_BACKTRACKING_REPEATS = 3


def _literal(text: str) -> str:
    """``text`` as a literal with every whitespace run possessive."""
    parts = re.split(r"(\s+)", text)
    return "".join(r"[ \t]++" if p.isspace() else re.escape(p) for p in parts if p)


def _value(name: str, following: str) -> str:
    pattern = _RULE_PATTERNS.get(name)
    if pattern is not None:
        return f"(?>{pattern})"
    stop = re.escape(following[0]) if following and not following[0].isspace() else ""
    return f"(?>[^\\s{stop}]{{1,{MAX_VALUE}}})"


def _parts(headline: str) -> list[tuple[str, bool]]:
    """The derived rule's pieces, (regex, is a placeholder), of a normalized headline.

    Raises:
        UsageError: the headline is empty or only placeholders (nothing would be specific).
    """
    head = headline.strip()[:MAX_HEADLINE]
    pieces = _PLACEHOLDER.split(head)
    literals = pieces[0::2]
    if sum(len(lit.strip()) for lit in literals) < 4:
        raise UsageError(f"the error's headline {headline!r} has too little constant text to "
                         "derive a detection rule; give one with --regex")
    out = []
    for i, piece in enumerate(pieces):
        if i % 2 == 0:
            out.append((_literal(piece), False))
        else:
            following = pieces[i + 1] if i + 1 < len(pieces) else ""
            out.append((_value(piece, following), True))
    return out


def derive_regex(headline: str) -> str:
    """The detection regex (one line) of a normalized headline.

    Raises:
        UsageError: the headline is empty or only placeholders (nothing would be specific).
    """
    return "".join(regex for regex, _ in _parts(headline))


#: a masked value kept literal when the fix names it: long enough not to be a coincidence
_MIN_KEPT = 3


def _named_by(value: str, fix_text: str) -> bool:
    """``value`` appears in ``fix_text`` as a whole token (``left-pad`` in ``npm install
    left-pad`` or ``left-pad@1.3``, not in ``left-padding``)."""
    if len(value) < _MIN_KEPT and not (len(value) == 2 and any(c.isalpha() for c in value)):
        return False
    return re.search(rf"(?<![\w.-]){re.escape(value)}(?![\w-])", fix_text) is not None


def derive_keeping(headline: str, text: str, fix_text: str) -> tuple[str, list[str]]:
    """The derived rule of ``headline``, with each masked value that ``text`` holds there and
    that ``fix_text`` (the fix's own words: a command's argv, a diff's changed lines) names
    kept literal: a fix that hard-codes the value (``npm install left-pad``) fixes that value
    only, and a rule masking it would claim every other value's error too (every missing
    module, ahead of the seeds' rules). Returns the rule and the values kept (none when
    ``text`` does not match the derived rule).

    Raises:
        UsageError: as :func:`derive_regex`.
    """
    parts = _parts(headline)
    plain = "".join(regex for regex, _ in parts)
    if not fix_text.strip():
        return plain, []
    grouped = "".join(f"(?P<_v{i}>{regex})" if value else regex
                      for i, (regex, value) in enumerate(parts))
    try:
        found = compile_rule(grouped).search(text)
    except UsageError:
        return plain, []
    if found is None:
        return plain, []
    kept: list[str] = []
    out = []
    for i, (regex, value) in enumerate(parts):
        held = found.group(f"_v{i}") if value else None
        if held and _named_by(held, fix_text):
            out.append(_literal(held))
            if held not in kept:
                kept.append(held)
        else:
            out.append(regex)
    return "".join(out), kept


def compile_rule(regex: str) -> Any:
    """Compile a taught rule exactly as the catalog does (the bounded ``regex`` engine).

    Raises:
        UsageError: it does not compile there.
    """
    import regex as engine

    from pipeline.boundedre import compile_bounded

    try:
        return compile_bounded(regex, engine.MULTILINE)
    except engine.error as exc:
        raise UsageError(f"the rule {regex!r} does not compile: {exc}") from exc


def check_regex(regex: str) -> str:
    """Accept a person's regex only in a bounded-time shape; returns it (VERBOSE-safe).

    Refused: back-references; a backtracking repeat inside a repeat; a backtracking repeat
    above ``MAX_BOUNDED_REPEAT`` or more than ``MAX_BACKTRACKING_REPEATS`` of them.
    Possessive repeats (``\\d++``, ``[^:]*+``) and bounded ones (``\\S{1,64}``) are fine.

    Raises:
        UsageError: says what to change.
    """
    if len(regex) > MAX_REGEX:
        raise UsageError(f"--regex is {len(regex)} characters; keep it under {MAX_REGEX}")
    try:
        tree = sre_parse.parse(regex, re.MULTILINE)
    except re.error as exc:
        raise UsageError(f"--regex {regex!r} does not compile: {exc}") from exc
    counted = _walk(regex, list(tree), inside_repeat=False)
    if counted > MAX_BACKTRACKING_REPEATS:
        raise UsageError(
            f"--regex {regex!r} has {counted} backtracking repeats (at most "
            f"{MAX_BACKTRACKING_REPEATS}); make them possessive (\\S++, [^:]*+) or atomic "
            "(?>...): events are untrusted text and every rule must run in bounded time")
    return regex


def _refuse(regex: str, why: str) -> UsageError:
    return UsageError(f"--regex {regex!r}: {why}; events are untrusted text, so a rule must run "
                      "in bounded time: use possessive repeats (\\S++, [^:]*+), atomic groups "
                      f"(?>...) or bounds up to {{1,{MAX_BOUNDED_REPEAT}}}")


def _walk(regex: str, items: list[Any], inside_repeat: bool) -> int:
    """Count backtracking repeats; raise for nested or unbounded ones."""
    count = 0
    for op, av in items:
        name = str(op)
        if name in ("GROUPREF", "GROUPREF_EXISTS"):
            raise _refuse(regex, "back-references can take exponential time")
        if name in ("MAX_REPEAT", "MIN_REPEAT"):
            low, high, sub = av
            if inside_repeat:
                raise _refuse(regex, "a repeat inside a repeat backtracks super-linearly")
            if high is sre_parse.MAXREPEAT or high > MAX_BOUNDED_REPEAT:
                raise _refuse(regex, f"an unbounded backtracking repeat ({{{low},}})")
            count += 1 + _walk(regex, list(sub), inside_repeat=True)
        elif name == "POSSESSIVE_REPEAT":
            # never gives back, so only a backtracking repeat inside it could blow up
            _walk(regex, list(av[2]), inside_repeat=True)
        elif name == "ATOMIC_GROUP":
            count += _walk(regex, list(av), inside_repeat)
        elif name == "SUBPATTERN":
            count += _walk(regex, list(av[3]), inside_repeat)
        elif name == "BRANCH":
            count += sum(_walk(regex, list(b), inside_repeat) for b in av[1])
        elif name in ("ASSERT", "ASSERT_NOT"):
            count += _walk(regex, list(av[1]), inside_repeat)
    return count
