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
from dataclasses import dataclass
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


#: a rule derived from an error's message alone (its class or level dropped) keeps at least
#: this many words that say what failed, so it never answers unrelated errors everywhere
MIN_MESSAGE_WORDS = 3
#: words that say nothing about what failed: function words, and the words every error uses
_GENERIC_WORDS = frozenset({
    "the", "and", "for", "with", "from", "into", "onto", "not", "but", "nor", "was", "were",
    "are", "has", "had", "have", "this", "that", "these", "those", "its", "then", "than",
    "when", "while", "there", "which", "who", "you", "your", "our", "can", "could", "may",
    "might", "will", "would", "shall", "should", "does", "did", "all", "any", "some", "one",
    "out", "off", "via", "per", "been", "being", "after", "before", "because", "cannot",
    "error", "errors", "failed", "failure", "fail", "fails", "fatal", "code", "exit",
    "exited", "status", "warning", "warn", "exception", "unknown", "null", "none", "nil",
    "undefined", "timeout", "timed", "invalid", "unexpected", "unable", "process",
    "completed", "command", "job", "step", "run", "returned", "non", "zero"})
_WORD = re.compile(r"[^\W\d_][\w'-]*")


def says_enough(message: str) -> bool:
    """Whether a normalized message, its placeholders aside, holds ``MIN_MESSAGE_WORDS``
    words that say what failed (not function words, not the words of every error, not a lone
    code): ``database migration locked by pid <num>`` does, ``failed`` and ``code 1`` do
    not."""
    literal = " ".join(_PLACEHOLDER.split(message.strip()[:MAX_HEADLINE])[0::2])
    words = {w.casefold() for w in _WORD.findall(literal)}
    return sum(1 for w in words if len(w) >= 3 and w not in _GENERIC_WORDS) >= MIN_MESSAGE_WORDS


def bounded(regex: str, headline: str, start: bool = True) -> str:
    """``regex`` (derived from ``headline``) kept from matching inside a longer word: a
    word character it starts (when ``start``) or ends with is not next to another one, so
    ``code 1`` does not match in ``code 137``."""
    head = headline.strip()[:MAX_HEADLINE]
    if start and head[:1].isalnum() and not head.startswith("<"):
        regex = r"(?<![\w])" + regex
    if head[-1:].isalnum() and not head.endswith(">"):
        regex += r"(?![\w])"
    return regex


def class_prefix(error_type: str) -> str:
    """A rule's start for an error's class or level in any case (``error:``, ``Error:``,
    ``npm error`` all read ``ERROR:`` in the headline): the class as a whole word, any case,
    then a colon or a space."""
    return rf"(?<![\w])(?i:{re.escape(error_type)})(?::[ \t]*+|[ \t]++)"


#: a masked value kept literal when the fix names it: long enough not to be a coincidence
_MIN_KEPT = 3
#: what separates the parts of a module, package or path (``react-dom/client``,
#: ``google.protobuf``, ``.\\lib\\helpers``)
_SEGMENTS = re.compile(r"[/\\.:]")
#: a version or extras a command adds to a name (``left-pad@1.3``, ``PyYAML==6.0``,
#: ``requests[socks]>=2``); a leading ``@`` is a scope, not a version
_VERSION = re.compile(r"(?<=.)(?:@|\[|[=<>~!]=?)[^\s]*$")


def _named_by(value: str, fix_text: str) -> bool:
    """``value`` appears in ``fix_text`` as a whole token (``left-pad`` in ``npm install
    left-pad`` or ``left-pad@1.3``, not in ``left-padding``)."""
    if len(value) < _MIN_KEPT and not (len(value) == 2 and any(c.isalpha() for c in value)):
        return False
    return re.search(rf"(?<![\w.-]){re.escape(value)}(?![\w-])", fix_text) is not None


def _plain(name: str) -> str:
    """``name`` compared loosely: no version, case folded, ``_`` as ``-`` (pip's own rule)."""
    return _VERSION.sub("", name).casefold().replace("_", "-")


def relates(value: str, token: str) -> bool:
    """Whether a fix's argument ``token`` names what the error's ``value`` is, or a part or a
    whole of it: the same name (``left-pad``, ``Left_Pad==1``), a leading part of its path
    (``react-dom`` of ``react-dom/client``), one of its parts (``protobuf`` of
    ``google.protobuf``), or one holding the other (``pyyaml``/``yaml``, ``pillow``/``PIL``,
    ``yaml-nosuch-dist``/``yaml_nosuch``) when the shorter has at least ``_MIN_KEPT``
    characters."""
    v, t = _plain(value), _plain(token)
    if not v or not t:
        return False
    if v == t:
        return True
    if t in _SEGMENTS.split(v):  # one of its parts
        return True
    if len(v) > len(t) and v.startswith(t) and _SEGMENTS.match(v[len(t)]):  # its leading path
        return True
    short, long_ = (v, t) if len(v) <= len(t) else (t, v)
    return len(short) >= _MIN_KEPT and short in long_


#: words of a command that say what to do, not to what (never taken for a value it names)
_VERBS = frozenset({"install", "i", "add", "ci", "update", "upgrade", "get", "mod", "tidy",
    "vendor", "download", "sync", "lock", "build", "rebuild", "clean", "test", "run", "exec",
    "generate", "init", "remove", "uninstall", "reinstall", "dedupe", "prune", "fetch", "pull",
    "restore", "refresh", "clear", "purge", "cache", "audit", "fix", "migrate", "compile",
    "deps", "dependencies", "submodule", "up", "down", "start", "stop", "restart", "reset",
    "prepare", "setup", "bootstrap", "link", "unlink"})


def named_values(argv: list[str]) -> list[str]:
    """The values a command names: its arguments that are neither flags, nor its program and
    the first word after it (``npm install``, ``python -m pip``), nor a verb (``install``,
    ``update``, ``tidy``): ``react-dom`` of ``npm install react-dom``, nothing of ``npm ci``
    or ``go mod tidy``."""
    words = [a for a in argv[1:] if a and not a.startswith("-")]
    # (``.``, ``./``, ``..``: the current or parent folder, where a command acts, names no
    # value: ``python3 -m compileall -q .`` fits every such error)
    return [w for w in words[1:] if w.casefold() not in _VERBS and w.strip("./\\")]


@dataclass(frozen=True)
class Kept:
    """A masked value a derived rule keeps literal, and why: ``named`` when the fix names it
    or a part or whole of it, else the fix names other values only (``others``)."""

    value: str
    named: bool
    others: tuple[str, ...] = ()


def derive_keeping(headline: str, text: str, fix_text: str,
                   values: list[str] | None = None) -> tuple[str, list[Kept]]:
    """The derived rule of ``headline``, with masked values that ``text`` holds there kept
    literal, so that a fix hard-coding a value does not claim every other value's error too
    (every missing module, ahead of the seeds' rules):

    - a value that ``fix_text`` (the fix's own words: a command's argv, a diff's changed
      lines) names as a whole token, or that one of ``values`` (the arguments a command
      names, :func:`named_values`) relates to (:func:`relates`: ``npm install react-dom``
      for ``react-dom/client``, ``pip install PyYAML`` for ``yaml``);
    - every value, when ``values`` is not empty but none relates to any value: a command
      hard-coding another name (``pip install beautifulsoup4`` for ``bs4``) was taught for
      this error only, and what it does for another value is not known.

    Returns the rule and the values kept (none when ``text`` does not match the rule).

    Raises:
        UsageError: the headline is empty or only placeholders (nothing would be specific).
    """
    parts = _parts(headline)
    plain = "".join(regex for regex, _ in parts)
    values = [v for v in values or [] if v.strip()]
    if not fix_text.strip() and not values:
        return plain, []
    grouped = "".join(f"(?P<_v{i}>{regex})" if value else regex
                      for i, (regex, value) in enumerate(parts))
    try:
        found = compile_rule(grouped).search(text)
    except UsageError:
        return plain, []
    if found is None:
        return plain, []
    held = {i: found.group(f"_v{i}") for i, (_, value) in enumerate(parts) if value}
    named = {i for i, v in held.items()
             if v and (_named_by(v, fix_text) or any(relates(v, t) for t in values))}
    hard_coded = bool(values) and not named
    kept: list[Kept] = []
    out = []
    for i, (regex, _) in enumerate(parts):
        value = held.get(i)
        if value and (i in named or hard_coded):
            out.append(_literal(value))
            if all(k.value != value for k in kept):
                kept.append(Kept(value, i in named, () if i in named else tuple(values)))
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
