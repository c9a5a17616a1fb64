"""Template mining: group normalized messages whose remaining differences are variables.

The rules (``rules.py``) mask what has a recognisable shape; what is left are variable
*words* (user names, host names, file names) that only show up as variable by comparing
messages. This module does that comparison in the spirit of Drain and Brain, with ONE
configuration (``MinerConfig()``) for every kind of input; nothing is tuned per source.

Algorithm (``mine_group``), on the set of distinct token sequences of one *group*
(same token count; runs of masked tokens are one ``<*>``, so variable-length values such
as ``()`` vs ``(host)`` do not change the count):

1. Count, for every (position, token), in how many distinct sequences it occurs.
2. For each sequence, its *root* is the set of its constant tokens sharing the frequency
   that most of them share (ties: the higher frequency). Tokens of one template occur
   together, so they share a frequency; variables are rarer. Already masked tokens take no
   part (they would tie every template of the group together).
3. Sequences with the same root form a cluster; which of its other columns are variables
   is decided by ``columns.py`` from the shape of their values and from how the columns
   vary together (no single count fitted to a data set); constant columns split the
   cluster.

Determinism: the template of a sequence is a pure function of that sequence and the SET of
distinct sequences seen in its group (iteration is over the sorted set). Set union is
commutative, associative and idempotent, so the state reached after any interleaving of
events across any number of workers adding to one shared set (``store.py``) is the same,
and so is every template computed from it: no result depends on arrival order, batch
boundaries or worker count. Two honest limits of the online form: (1) an event is mined
against the set as it is when the event is processed, so the first occurrences of a new
kind of message may get a more specific template than later ones; asking again later (or
mining a batch, as ``heal fingerprint`` and backfills do) gives the converged answer;
(2) a group keeps at most ``max_group_size`` distinct sequences; beyond that, which ones
were kept depends on arrival, so only such very large groups lose order-independence.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from itertools import count, zip_longest
from operator import getitem
from typing import Protocol, cast

from pipeline.fingerprint.columns import DEFAULT_CONFIG, WILDCARD, MinerConfig, Tokens, templates

__all__ = ["DEFAULT_CONFIG", "WILDCARD", "MinerConfig", "TemplateMiner", "Tokens", "mine",
           "mine_group", "render", "tokenize"]

_PLACEHOLDER = re.compile(r"<[a-z0-9_]+>")

_LETTER = re.compile(r"[A-Za-z]")
_EMPTY_VALUES = frozenset({"()", "[]", "{}", '""', "''", "<>"})


def tokenize(normalized: str) -> Tokens:
    """Split a normalized message into tokens; masked tokens become ``<*>``, runs collapse."""
    out: list[str] = []
    for token in normalized.split():
        if "<" in token and _PLACEHOLDER.search(token):
            # keep constant text around a masked value (``onExtend:<*>``); a token that
            # is nothing but masked values and punctuation is one wildcard
            token = _PLACEHOLDER.sub(WILDCARD, token)
            if not _LETTER.search(token.replace(WILDCARD, "")):
                token = WILDCARD
        elif token in _EMPTY_VALUES:
            token = WILDCARD  # an empty value is still a value: ``()`` vs ``(host)``
        if token == WILDCARD and out and out[-1] == WILDCARD:
            continue  # a run of variables of any length is one variable
        out.append(token)
    return tuple(out)


def group_key(tokens: Tokens) -> str:
    """Which group a sequence is compared within: its token count. (Not the first token:
    it is often itself a variable, e.g. a logger or job name.)"""
    return str(len(tokens))


def _root(line: Tokens, freq: list[dict[str, int]]) -> tuple[tuple[int, str], ...]:
    """``freq[pos][tok]``: in how many distinct sequences ``tok`` is at ``pos`` (0 for a
    wildcard: already variables, they must not decide which constants belong together)."""
    freqs = list(map(getitem, freq, line))  # (freq may be wider than line)
    shared = set(freqs)
    shared.discard(0)
    if not shared:
        return ()
    # the frequency most constants share; ties: the higher frequency
    root_freq = max([(freqs.count(f), f) for f in shared])[1]
    return tuple([(pos, tok) for pos, tok, f in zip(count(), line, freqs, strict=False)
                  if f == root_freq])


def _frequencies(distinct: Sequence[Tokens]) -> list[dict[str, int]]:
    """Per position, in how many of ``distinct`` each token is there (one counter per
    position, counted in C: no (position, token) tuple built and hashed per token); a
    wildcard counts 0."""
    freq: list[dict[str, int]] = []
    for column in zip_longest(*distinct, fillvalue=None):
        counts: Counter[str | None] = Counter(column)
        counts.pop(None, None)  # (the filler of a shorter sequence)
        if WILDCARD in counts:
            counts[WILDCARD] = 0
        freq.append(cast(dict[str, int], counts))
    return freq


def mine_group(
    lines: Iterable[Tokens], config: MinerConfig = DEFAULT_CONFIG,
    memo: ClusterMemo | None = None,
) -> dict[Tokens, Tokens]:
    """Template of every distinct sequence of one group (see the module docstring).

    With a ``memo`` (one per configuration), a cluster whose root and members are the same
    as at an earlier call reuses that call's templates: they are a pure function of the
    two, and when a group grows by a few sequences most of its clusters stay as they were
    (judging the columns is most of the cost of re-mining a group)."""
    distinct = sorted(set(lines))  # sorted: iteration order never depends on arrival order
    freq = _frequencies(distinct)
    clusters: dict[tuple[tuple[int, str], ...], list[Tokens]] = defaultdict(list)
    for line in distinct:
        clusters[_root(line, freq)].append(line)
    result: dict[Tokens, Tokens] = {}
    for root, members in clusters.items():
        if memo is None:
            result.update(templates(members, {pos for pos, _ in root}, config))
        else:
            result.update(memo.templates(root, members, config))
    return result


class ClusterMemo:
    """Templates of clusters already judged, by (root, members); bounded by the number of
    members it holds (cleared when full, like the stage's other caches)."""

    def __init__(self, max_members: int = 50_000) -> None:
        self.max_members = max_members
        self._found: dict[tuple[object, ...], dict[Tokens, Tokens]] = {}
        self._members = 0

    def templates(self, root: tuple[tuple[int, str], ...], members: list[Tokens],
                  config: MinerConfig) -> dict[Tokens, Tokens]:
        if len(members) == 1:  # no column varies: nothing to judge, nothing worth keeping
            return templates(members, {pos for pos, _ in root}, config)
        key = (root, tuple(members))
        found = self._found.get(key)
        if found is None:
            found = templates(members, {pos for pos, _ in root}, config)
            if self._members + len(members) > self.max_members:
                self._found.clear()
                self._members = 0
            self._found[key] = found
            self._members += len(members)
        return found


def mine(lines: Iterable[Tokens], config: MinerConfig = DEFAULT_CONFIG) -> dict[Tokens, Tokens]:
    """Templates for a whole batch: groups are mined independently (order-free)."""
    groups: dict[str, set[Tokens]] = defaultdict(set)
    for line in lines:
        groups[group_key(line)].add(line)
    result: dict[Tokens, Tokens] = {}
    for members in groups.values():
        result.update(mine_group(members, config))
    return result


def render(template: Tokens) -> str:
    return " ".join(template)


class TemplateMiner:
    """Online mining against a persisted :class:`~pipeline.fingerprint.store.TemplateStore`.

    ``template(tokens)`` adds the sequence to its group's set and returns its template
    mined from the group's current set (a pure function of that set, see the module
    docstring). Mined templates are cached per group by set size (the set only grows).

    Raises:
        StreamUnavailable: from a Redis-backed store.
    """

    def __init__(self, store: TemplateStoreLike, config: MinerConfig = DEFAULT_CONFIG) -> None:
        self.store = store
        self.config = config
        self._cache: dict[str, tuple[int, dict[Tokens, Tokens]]] = {}
        #: clusters judged before (a changed group is re-mined whole; most of its clusters
        #: are as they were)
        self._memo = ClusterMemo()
        #: templates decided by the last ``prepare`` (valid for that batch)
        self._batch: dict[Tokens, Tokens] = {}

    def prepare(self, sequences: Iterable[Tokens]) -> None:
        """Add a whole batch's new sequences and read the groups' new members (one round
        trip), re-mine each group whose set changed once (not once per event), and keep the
        batch's templates, so ``template`` of any of them then costs no round trip. Each
        template is a pure function of its group's set as read after the batch was added, so
        order-independence holds.

        Raises:
            StreamUnavailable: from a Redis-backed store.
        """
        by_group: dict[str, list[Tokens]] = defaultdict(list)
        for tokens in set(sequences):
            by_group[group_key(tokens)].append(tokens)
        self._batch = {}
        if not by_group:
            return
        groups = sorted(by_group)
        new: list[tuple[str, Tokens]] = []
        for g in groups:  # (sorted: only the sequences this miner has not mined yet)
            mined = self._cache.get(g, (0, {}))[1]
            new += [(g, t) for t in sorted(t for t in by_group[g] if t not in mined)]
        synced = self.store.sync(new, groups, self.config.max_group_size)
        for group in groups:
            members, changed = synced[group]
            if changed or group not in self._cache:
                members = members or self.store.members(group)
                self._cache[group] = (len(members), mine_group(members, self.config,
                                                               self._memo))
            mined = self._cache[group][1]
            for tokens in by_group[group]:
                found = mined.get(tokens)
                if found is None:  # the group is full: mine it against the kept set
                    kept = self.store.members(group)
                    found = mine_group([*kept, tokens], self.config, self._memo)[tokens]
                self._batch[tokens] = found

    def template(self, tokens: Tokens) -> Tokens:
        found = self._batch.get(tokens)
        if found is not None:
            return found
        group = group_key(tokens)
        size = self.store.add(group, tokens, self.config.max_group_size)
        cached = self._cache.get(group)
        if cached is None or cached[0] != size:
            cached = (size, mine_group(self.store.members(group), self.config, self._memo))
            self._cache[group] = cached
        found = cached[1].get(tokens)
        if found is None:  # the group is full: mine this sequence against the kept set
            members = [*self.store.members(group), tokens]
            found = mine_group(members, self.config, self._memo)[tokens]
        return found


class TemplateStoreLike(Protocol):
    """Where the per-group sets live (implementations in ``store.py``)."""

    def add(self, group: str, tokens: Tokens, limit: int) -> int:
        """Add ``tokens`` to ``group`` unless it holds ``limit`` sequences; return its size."""
        ...

    def members(self, group: str) -> Sequence[Tokens]:
        """Every sequence of ``group``, sorted."""
        ...

    def sync(self, items: Sequence[tuple[str, Tokens]], groups: Sequence[str], limit: int
             ) -> dict[str, tuple[Sequence[Tokens], bool]]:
        """Add ``items`` (group, tokens) below ``limit``, then read ``groups``: per group its
        members (sorted; ``()`` when unchanged) and whether they changed since this store
        object last read them; one round trip."""
        ...
