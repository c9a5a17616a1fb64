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
were kept depends on arrival, so only such very large groups lose order-independence;
(3) mining a group costs time linear in its size, so online (``TemplateMiner``) a group of
more than ``exact_group_size`` sequences is mined again only when it has grown by
``regrowth`` since its last mining, and once more when full; in between, and for the
sequences a full group refuses, a sequence is *placed* against the last mining
(``GroupMining.place``: the template of its cluster it is an instance of, else its cluster
judged again with it). Its template then depends on when that mining was made, as in (1).
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
    return _root_of(line, list(map(getitem, freq, line)))  # (freq may be wider than line)


def _root_of(line: Tokens, freqs: list[int]) -> tuple[tuple[int, str], ...]:
    """The root of ``line`` given each of its tokens' frequency."""
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
    return GroupMining(lines, config, memo).result


Root = tuple[tuple[int, str], ...]
#: templates with one number of constant tokens: per set of constant positions, the
#: templates by their constants there
_Constants = list[tuple[tuple[int, ...], dict[Tokens, Tokens]]]


class GroupMining:
    """One group mined (``mine_group``): the template of each of its sequences, and what it
    takes to place another sequence against it (``place``)."""

    __slots__ = ("size", "result", "_config", "_freq", "_clusters", "_instances", "_placed")

    def __init__(self, lines: Iterable[Tokens], config: MinerConfig = DEFAULT_CONFIG,
                 memo: ClusterMemo | None = None) -> None:
        distinct = sorted(set(lines))  # sorted: iteration order never depends on arrival
        freq = _frequencies(distinct)
        clusters: dict[Root, list[Tokens]] = defaultdict(list)
        for line in distinct:
            clusters[_root(line, freq)].append(line)
        result: dict[Tokens, Tokens] = {}
        for root, members in clusters.items():
            if memo is None:
                result.update(templates(members, {pos for pos, _ in root}, config))
            else:
                result.update(memo.templates(root, members, config))
        #: how many distinct sequences were mined, and the template of each
        self.size = len(distinct)
        self.result = result
        self._config = config
        self._freq = freq
        self._clusters = clusters
        #: per root, its cluster's distinct templates indexed by their constants (made on
        #: the first placement into that cluster)
        self._instances: dict[Root, list[_Constants]] = {}
        #: sequences placed so far (bounded: a full group may be offered any number)
        self._placed: dict[Tokens, Tokens] = {}

    def knows(self, tokens: Tokens) -> bool:
        """Whether ``tokens`` was mined or placed here (and so already offered to the store)."""
        return tokens in self.result or tokens in self._placed

    def template(self, tokens: Tokens) -> Tokens:
        """The template of ``tokens``: mined, when it was one of the mined sequences; else
        placed (``place``)."""
        found = self.result.get(tokens)
        if found is None:
            found = self._placed.get(tokens)
            if found is None:
                found = self.place(tokens)
                if len(self._placed) >= _PLACED_MAX:
                    self._placed.clear()
                self._placed[tokens] = found
        return found

    def place(self, tokens: Tokens) -> Tokens:
        """The template of a sequence that was not mined, against this mining: its root with
        it counted among the frequencies, then the most constant template of that root's
        cluster of which it is an instance (the same constants where the template has
        any), else that cluster judged again with it (as mining the group with it would,
        but for the roots of the others, which it may shift by one count: they are kept;
        and a cluster of more than ``_JUDGED_MAX`` members is judged by its first ones)."""
        freq = self._freq
        width = len(freq)
        root = _root_of(tokens, [
            0 if tok == WILDCARD else (freq[pos].get(tok, 0) if pos < width else 0) + 1
            for pos, tok in enumerate(tokens)])
        members = self._clusters.get(root)
        if not members:
            return templates([tokens], {pos for pos, _ in root}, self._config)[tokens]
        for constants in self._cluster_templates(root, members):
            # (the templates with the same constant positions, by their constants: one
            # lookup per set of positions, however many templates the cluster has)
            fits = [template for kept, by_constants in constants
                    if (template := by_constants.get(tuple(tokens[i] for i in kept)))
                    is not None]
            if fits:
                return min(fits)
        # (at most _JUDGED_MAX of them, the first in order: a hostile stream of sequences
        # fitting no template of a cluster of thousands must not buy a judgement of it each)
        judged = templates(sorted([*members[:_JUDGED_MAX], tokens]),
                           {pos for pos, _ in root}, self._config)
        return judged[tokens]

    def _cluster_templates(self, root: Root, members: list[Tokens]) -> list[_Constants]:
        """The distinct templates of a cluster, indexed for ``place``: per number of
        constant tokens (most first), per set of constant positions, the templates by their
        constants."""
        found = self._instances.get(root)
        if found is None:
            index: dict[int, dict[tuple[int, ...], dict[Tokens, Tokens]]] = defaultdict(dict)
            for template in {self.result[m] for m in members}:
                kept = tuple(i for i, tok in enumerate(template) if tok != WILDCARD)
                index[len(kept)].setdefault(kept, {})[
                    tuple(template[i] for i in kept)] = template
            found = self._instances[root] = [
                sorted(index[n].items()) for n in sorted(index, reverse=True)]
        return found


#: placed sequences remembered per mined group (cleared when full)
_PLACED_MAX = 4096
#: members of its cluster a placed sequence is judged with, at most
_JUDGED_MAX = 256


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
    docstring) while the group holds up to ``config.exact_group_size`` sequences. A larger
    group is mined again when it has grown by ``config.regrowth`` since its last mining,
    and once more when it is full; meanwhile a sequence that mining did not see is placed
    against it (``GroupMining.place``). Mining costs time linear in the group, so this
    keeps a growing group's cost per sequence bounded, and a full group's (whose set no
    longer changes) to a placement.

    Raises:
        StreamUnavailable: from a Redis-backed store.
    """

    def __init__(self, store: TemplateStoreLike, config: MinerConfig = DEFAULT_CONFIG) -> None:
        self.store = store
        self.config = config
        #: per group, its last mining
        self._cache: dict[str, GroupMining] = {}
        #: clusters judged before (a changed group is re-mined whole; most of its clusters
        #: are as they were)
        self._memo = ClusterMemo()
        #: templates decided by the last ``prepare`` (valid for that batch)
        self._batch: dict[Tokens, Tokens] = {}
        #: how many times a group was mined (what the schedule saves shows here)
        self.minings = 0

    def _due(self, mined: GroupMining | None, size: int) -> bool:
        """Whether a group of ``size`` sequences, last mined as ``mined``, is mined again."""
        if mined is None:
            return True
        config = self.config
        return mined.size != size and (
            size <= config.exact_group_size or size >= mined.size * config.regrowth
            or size >= config.max_group_size)

    def _mine(self, group: str, members: Sequence[Tokens]) -> GroupMining:
        self.minings += 1
        mined = self._cache[group] = GroupMining(members, self.config, self._memo)
        return mined

    def prepare(self, sequences: Iterable[Tokens]) -> None:
        """Add a whole batch's new sequences and read the groups' new members (one round
        trip), re-mine each group whose set changed once (not once per event; a large group
        only on the schedule above), and keep the batch's templates, so ``template`` of any
        of them then costs no round trip. Within ``exact_group_size``, each template is a
        pure function of its group's set as read after the batch was added, so
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
        for g in groups:  # (sorted: only the sequences this miner has not offered yet)
            cached = self._cache.get(g)
            new += [(g, t) for t in sorted(by_group[g])
                    if cached is None or not cached.knows(t)]
        synced = self.store.sync(new, groups, self.config.max_group_size)
        for group in groups:
            members, changed = synced[group]
            mining = self._cache.get(group)
            if mining is None or (changed and self._due(mining, len(members))):
                mining = self._mine(group, members or self.store.members(group))
            elif not changed and mining.size <= self.config.exact_group_size and not all(
                    map(mining.knows, by_group[group])):
                # the set may have grown without this miner being told (several miners
                # reading one store object) while it is mined exactly: read it whole
                members = self.store.members(group)
                if self._due(mining, len(members)):
                    mining = self._mine(group, members)
            for tokens in by_group[group]:
                self._batch[tokens] = mining.template(tokens)

    def template(self, tokens: Tokens) -> Tokens:
        found = self._batch.get(tokens)
        if found is not None:
            return found
        group = group_key(tokens)
        size = self.store.add(group, tokens, self.config.max_group_size)
        mining = self._cache.get(group)
        if self._due(mining, size):
            mining = self._mine(group, self.store.members(group))
        assert mining is not None
        return mining.template(tokens)


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
