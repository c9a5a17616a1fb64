"""The fingerprint stage's faster spellings compute exactly what the plain ones did.

``stable_hash`` hashes one joined buffer instead of feeding each part, and mining counts
token frequencies per position instead of per (position, token) tuple; the references
below are the former code, verbatim. Hashes are frozen (``fp-v2``) and templates must not
move, so both are compared over generated inputs and over the fixtures' token sequences.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.fingerprint import fingerprint_text
from pipeline.fingerprint.cluster import WILDCARD, Tokens, mine_group, tokenize
from pipeline.fingerprint.columns import templates
from pipeline.fingerprint.hashing import ALGORITHM_VERSION, stable_hash

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
