"""The fingerprint stage's faster spellings compute exactly what the plain ones did.

``stable_hash`` hashes one joined buffer instead of feeding each part, and mining counts
token frequencies per position instead of per (position, token) tuple; the references
below are the former code, verbatim. Hashes are frozen (``fp-v2``) and templates must not
move, so both are compared over generated inputs and over the fixtures' token sequences.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import re._parser as sre_parse
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
import regex
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipeline.fingerprint import Fingerprinter, fingerprint_text
from pipeline.fingerprint.cluster import WILDCARD, Tokens, mine_group, tokenize
from pipeline.fingerprint.columns import DEFAULT_CONFIG, _judge, templates
from pipeline.fingerprint.hashing import ALGORITHM_VERSION, stable_hash
from pipeline.fingerprint.params import _NOT_SOURCE
from pipeline.fingerprint.rules import (
    _BLOB_MIN,
    _GUARD,
    _KEPT,
    DEFAULT_NORMALIZER,
    RULES,
    Masked,
    Normalizer,
    Rule,
)
from pipeline.fingerprint.store import MemoryTemplateStore

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "errors"


def reference_hash(*parts: str, version: str = ALGORITHM_VERSION) -> str:
    digest = hashlib.blake2b(digest_size=8)
    digest.update(version.encode())
    for part in parts:
        digest.update(b"\x1f")
        digest.update(part.replace("\x1f", " ").encode("utf-8", "replace"))
    return f"{version}:{digest.hexdigest()}"


# any code point, lone surrogates and the separator included
parts = st.lists(st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF)) |
                 st.sampled_from(["", "\x1f", "\ud800", "a\x1fb", "\udc00x"]), max_size=5)


@settings(max_examples=300, deadline=None)
@given(parts, st.sampled_from([ALGORITHM_VERSION, "fp-v1", "v"]))
def test_stable_hash_equals_the_part_by_part_hash(values: list[str], version: str) -> None:
    assert stable_hash(*values, version=version) == reference_hash(*values, version=version)


def reference_root(line: Tokens, freq: Counter[tuple[int, str]]) -> tuple[tuple[int, str], ...]:
    freqs = [0 if tok == WILDCARD else freq[(pos, tok)] for pos, tok in enumerate(line)]
    shares: dict[int, int] = {}
    for f in freqs:
        if f:
            shares[f] = shares.get(f, 0) + 1
    if not shares:
        return ()
    root_freq = max(shares.items(), key=lambda kv: (kv[1], kv[0]))[0]
    return tuple((pos, tok) for pos, tok in enumerate(line) if freqs[pos] == root_freq)


def reference_mine_group(lines: list[Tokens]) -> dict[Tokens, Tokens]:
    distinct = sorted(set(lines))
    freq: Counter[tuple[int, str]] = Counter()
    for line in distinct:
        freq.update(enumerate(line))
    clusters: dict[tuple[tuple[int, str], ...], list[Tokens]] = defaultdict(list)
    for line in distinct:
        clusters[reference_root(line, freq)].append(line)
    result: dict[Tokens, Tokens] = {}
    for root, members in clusters.items():
        result.update(templates(members, {pos for pos, _ in root}))
    return result


words = st.sampled_from(["user", "root", "admin", "failed", "for", "from", WILDCARD, "port",
                         "42", "a=b", "x.y", "Foo::bar", "session", "closed", "()"])


groups = st.integers(1, 6).flatmap(lambda n: st.lists(
    st.lists(words, min_size=n, max_size=n).map(tuple), min_size=1, max_size=40))


@settings(max_examples=200, deadline=None)
@given(groups)
def test_mining_equals_the_former_counting(lines: list[Tokens]) -> None:
    # (a group: sequences of one length, as the miner groups them)
    assert mine_group(lines) == reference_mine_group(lines)


def test_mining_the_fixtures_and_log_lines_equals_the_former_counting() -> None:
    texts = [p.read_text(encoding="utf-8", errors="replace")
             for p in sorted(FIXTURES.rglob("*.txt"))]
    texts += [f"Failed password for {u} from 10.0.{i}.{i * 7} port {2000 + i} ssh2"
              for i, u in enumerate(["root", "admin", "invalid user guest", "test"] * 5)]
    by_length: dict[int, list[Tokens]] = defaultdict(list)
    for text in texts:
        tokens = tokenize(fingerprint_text(text).normalized)
        by_length[len(tokens)].append(tokens)
    assert len(by_length) > 5
    for lines in by_length.values():
        assert mine_group(lines) == reference_mine_group(lines)


def reference_describe(normalizer: Normalizer, masked: Masked) -> list[str]:
    lines = []
    for rule in normalizer.rules:
        count = masked.counts.get(rule.name, 0)
        if count:
            sample = ", ".join(repr(v) for v in masked.values[rule.name][:3])
            lines.append(f"<{rule.name}>: {count} replaced ({rule.why}); e.g. {sample}")
    return lines


def test_describe_equals_the_rule_by_rule_loop() -> None:
    texts = [p.read_text(encoding="utf-8", errors="replace")
             for p in sorted(FIXTURES.rglob("*.txt"))]
    texts += ["GET http://h.example.com/x?id=5 took 1.5s at 2026-11-22T10:00:00Z from 10.0.0.1",
              "x" * 250 + " user=bob@example.org uuid 123e4567-e89b-12d3-a456-426614174000"]
    fired = 0
    for text in texts:
        masked = DEFAULT_NORMALIZER.mask(text)
        assert DEFAULT_NORMALIZER.describe(masked) == reference_describe(DEFAULT_NORMALIZER,
                                                                         masked)
        fired += len(masked.counts)
    assert fired > 20
    # counts of zero and names outside the table, as a caller may build them
    odd = Masked(text="t", counts=Counter({"num": 0, "nope": 2, "ip": 1, "blob": 1}),
                 values={"num": [], "nope": ["a", "b"], "ip": ["1.2.3.4"], "blob": ["zz"]})
    assert DEFAULT_NORMALIZER.describe(odd) == reference_describe(DEFAULT_NORMALIZER, odd)
    # a table repeating a name (the blob rule's) describes both, as the loop did
    twice = Normalizer((*RULES, Rule("blob", r"zzz", "again")))
    masked = twice.mask("a " + "q" * 210 + " zzz")
    assert twice.describe(masked) == reference_describe(twice, masked)


@settings(max_examples=100, deadline=None)
@given(st.lists(words, min_size=0, max_size=8).map(tuple), st.sets(st.integers(0, 8)))
def test_a_single_member_cluster_is_judged_as_before(line: Tokens, fixed: set[int]) -> None:
    judged: dict[Tokens, Tokens] = {}
    _judge([line], frozenset(fixed), frozenset(), DEFAULT_CONFIG, judged)
    assert templates([line], fixed) == judged == {line: line}


def test_a_finished_fingerprint_is_the_analysis_with_its_template() -> None:
    fingerprinter = Fingerprinter(MemoryTemplateStore())
    for path in sorted(FIXTURES.rglob("*.txt"))[:20]:
        text = path.read_text(encoding="utf-8", errors="replace")
        found = fingerprinter.fingerprint(text, "/srv/r")
        base = fingerprinter._analyze(text, "/srv/r").base
        params = {**base.params, "cluster": found.params["cluster"]}
        assert found == dataclasses.replace(base, template=found.template, params=params)
        assert list(vars(found)) == [f.name for f in dataclasses.fields(found)]
        with pytest.raises(dataclasses.FrozenInstanceError):
            found.template = "x"  # type: ignore[misc]


def reference_mask(normalizer: Normalizer, text: str) -> Masked:
    result = Masked(text="")

    def replace(match: re.Match[str]) -> str:
        name = match.lastgroup or "var"
        if name in _KEPT:
            return match.group(0)
        result.counts[name] += 1
        result.values.setdefault(name, []).append(match.group(0))
        return f"<{name}>"

    if len(text) >= _BLOB_MIN:
        text = normalizer._blob.sub(replace, text)
    result.text = normalizer._regex.sub(replace, text)
    return result


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(
    ["GET", "http://a.example.com/x?y=1", "1.5s", "HTTP 404", "user=bob", "0x7f3a", "10.0.0.1:80",
     "/srv/app/x.py", "deadbeef12", "Mon Jan 12 10:00:00 2026", "blk_123", "exit 2", "42",
     "q" * 210, "2026-11-22T10:00:00Z", "a@b.org", "ok"]) | st.text(max_size=12), max_size=12)
    .map(" ".join))
def test_mask_equals_the_former_bookkeeping(text: str) -> None:
    assert DEFAULT_NORMALIZER.mask(text) == reference_mask(DEFAULT_NORMALIZER, text)


def test_mask_of_the_fixtures_equals_the_former_bookkeeping() -> None:
    for path in sorted(FIXTURES.rglob("*.txt")):
        text = path.read_text(encoding="utf-8", errors="replace")
        assert DEFAULT_NORMALIZER.mask(text) == reference_mask(DEFAULT_NORMALIZER, text)


# --- masking memoized under the zeroed text ----------------------------------------------

_DIGITS = {ord(d) for d in "0123456789"}
#: the child patterns of a parsed op, by op name
_CHILDREN = {"SUBPATTERN": lambda av: [av[-1]], "MAX_REPEAT": lambda av: [av[2]],
             "MIN_REPEAT": lambda av: [av[2]], "POSSESSIVE_REPEAT": lambda av: [av[2]],
             "ATOMIC_GROUP": lambda av: [av], "BRANCH": lambda av: av[1],
             "ASSERT": lambda av: [av[1]], "ASSERT_NOT": lambda av: [av[1]]}


def _class_breaks(items: Any) -> list[str]:
    held: set[int] = set()
    unknown = []
    for kind, arg in ((str(k), a) for k, a in items):
        if kind == "LITERAL":
            held |= {arg} & _DIGITS
        elif kind == "RANGE":
            held |= set(range(arg[0], arg[1] + 1)) & _DIGITS
        elif kind == "CATEGORY":
            if str(arg) in ("CATEGORY_DIGIT", "CATEGORY_WORD", "CATEGORY_NOT_SPACE"):
                held |= _DIGITS
        elif kind != "NEGATE":
            unknown.append(f"class item {kind}")
    partial = [f"a class holding {sorted(chr(d) for d in held)}"] if held and held != _DIGITS \
        else []
    return unknown + partial


def _digit_premise_breaks(node: Any) -> list[str]:
    """What in a parsed pattern answers differently for two ASCII digits: a literal digit,
    or a class holding some digits but not all (an op this walk does not know counts too)."""
    found: list[str] = []
    for op, av in node:
        name = str(op)
        if name == "LITERAL":
            found += [f"literal {chr(av)!r}"] if av in _DIGITS else []
        elif name == "IN":
            found += _class_breaks(av)
        elif name in _CHILDREN:
            for child in _CHILDREN[name](av):
                found += _digit_premise_breaks(child)
        elif name not in ("AT", "ANY", "NOT_LITERAL"):
            found.append(f"op {name}")
    return found


#: where the table's literal digits stand (each needs an ``0x`` or an ``HTTP/`` in the text,
#: the texts that ``Normalizer.mask`` keeps off its memo)
_LITERAL_DIGIT_SPOTS = {"hex": [r"0[xX]"], "code": [r"HTTP/1\.1", r"HTTP/1\.0", r"HTTP/2"]}


def test_the_table_tells_ascii_digits_apart_only_after_0x_or_http() -> None:
    """The premise of the memo: re-derived from the parse of every rule and the guard."""
    for source, name in [(r.pattern, r.name) for r in RULES] + [(_GUARD, "guard")]:
        spots = _LITERAL_DIGIT_SPOTS.get(name, [])
        assert all(spot in source for spot in spots), name
        for spot in spots:
            source = source.replace(spot, "")
        assert _digit_premise_breaks(sre_parse.parse(source, re.VERBOSE)) == [], (
            f"rule {name!r} tells digits apart elsewhere: extend the checks in "
            "Normalizer.mask (or set its memo aside for this table) and this list")


_DIGITY = ["0x1f", "5x1f", "1X0", "HTTP/1.1 404", "HTTP/2 503", "HTTP/3 200", "exit 2", "42",
           "10.0.0.1:80", "blk_123", "ssh2", "2026-11-22T10:00:00Z", "1.5s", "12 KB", "a1b2c3d",
           "deadbeef12", "R02-M1", "status=500", "/srv/app1/x.py", "07:07:00", "fe80::1",
           "x=1", "v1.2.3", "eth0", "ok", "at"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_DIGITY) | st.text("0123456789xX.:/-_ aH", max_size=8),
                max_size=10).map(" ".join), st.randoms(use_true_random=False))
def test_texts_that_differ_in_digits_mask_as_each_alone(text: str, rnd: Any) -> None:
    """A text masked after another of the same zeroed form (the memo's hit) masks as the
    unmemoized table does."""
    other = "".join(rnd.choice("0123456789") if c in "0123456789" else c for c in text)
    zeros, fives = (re.sub("[0-9]", d, text) for d in "05")
    for one in (text, other, zeros, fives, text):
        assert DEFAULT_NORMALIZER.mask(one) == reference_mask(DEFAULT_NORMALIZER, one), one


def test_a_custom_table_is_not_memoized() -> None:
    custom = Normalizer((*RULES, Rule("zip", r"\bZ\d\b", "one digit after Z")))
    assert custom._places is None
    assert custom.mask("Z1 Z7").counts["zip"] == 2


def test_fingerprints_of_one_masked_shape_equal_those_computed_alone() -> None:
    """Texts sharing a masked message share tokens and hashes: each still fingerprints as a
    fresh fingerprinter makes it."""
    shared = Fingerprinter(MemoryTemplateStore())
    texts = [f"Failed password for root from 10.0.{i}.{i * 7} port {2000 + i} ssh2"
             for i in range(6)] + ["ValueError: bad 12", "ValueError: bad 99", "bad 12"]
    for text in texts:
        alone = Fingerprinter(MemoryTemplateStore())._compute(text, "/srv/r").base
        assert shared._compute(text, "/srv/r").base == alone
    assert len(shared._shapes) == 3


#: the port and "host:port" parameter rules before they were made linear, verbatim (but
#: for fixB6's two exclusions: a name ending in a source file's extension, conn.c:229, and a
#: path's last component, cjs/loader:1210, are no host)
_FORMER_PORT = regex.compile(r"(?:\bport\s*[=:]?\s*|(?:\]|(?<![\w.-][/\\][\w.-]*)[A-Za-z])"
                             r"[\w.-]*+" + _NOT_SOURCE + r":|:::"
                             r"|EADDRINUSE[^\n]{0,200}?:)(?P<v>\d{2,5})\b", re.I)
_FORMER_HOST = regex.compile(r"(?P<v>[A-Za-z][\w-]*+(?:\.[\w-]++)++)" + _NOT_SOURCE
                             + r":\d{2,5}\b")
#: what those rules turn on: letters (with the two that case-fold into ASCII), digits, the
#: run characters, separators and the other alternatives' literals
_PARAM_ATOMS = ["a", "Z", "p", "port", "Port ", "port =", "PORT", "E", "EADDRINUSE", "1",
                "22", "8080", "_", "-", ".", "..", ":", ":80", ":::", "]", "é", "\u212a",
                "\u017f", " ", "\t", "\n", "=", "b.c", "x.y:99", "/", "\\", ".c", ".rb", "//"]


def _value(pattern: Any, text: str) -> str | None:
    found = pattern.search(text)
    return next((v for v in found.groups() if v), None) if found else None


def _linear_rules() -> tuple[Any, Any]:
    from pipeline.fingerprint.params import PARAM_RULES

    port = next(r.pattern for r in PARAM_RULES if r.name == "port")
    host = [r.pattern for r in PARAM_RULES if r.name == "host"][1]
    return port, host


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(_PARAM_ATOMS), max_size=16).map("".join))
# ("port 22" inside a run, at its first letter, came first and still does)
@example("..-port22:80")
@example("-port8080:801")
@example(":::.port8080-_-éx.y:99")
@example("1b.c:80")
@example(" .a.b:8080")
@example("a..b.c:99")
@example("x]a.b:80")
def test_the_linear_port_and_host_rules_find_the_former_values(text: str) -> None:
    port, host = _linear_rules()
    assert _value(port, text) == _value(_FORMER_PORT, text)
    assert _value(host, text) == _value(_FORMER_HOST, text)


def test_the_linear_port_and_host_rules_on_the_fixtures() -> None:
    port, host = _linear_rules()
    texts = [p.read_text(errors="replace") for p in sorted(FIXTURES.rglob("*")) if p.is_file()]
    assert len(texts) > 20
    found = 0
    for text in texts:
        for line in text.splitlines():
            assert _value(port, line) == _value(_FORMER_PORT, line), line
            assert _value(host, line) == _value(_FORMER_HOST, line), line
            found += _value(port, line) is not None
    assert found  # (the fixtures do name ports: the comparison saw matches)
