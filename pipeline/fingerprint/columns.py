"""Which columns of a cluster are variables: by the shape of their values and by how the
columns vary together, not by one count fitted to a data set.

A *cluster* (``cluster.py``) is a set of distinct token sequences of equal length sharing
their root tokens; every other position (*column*) holding two or more values is either a
variable (``<*>``) or wording that splits the cluster into several templates. Evidence:

1. **Value shape.** Compare the column's values after their common prefix and suffix (the
   part that actually varies; ``user=root`` / ``user=test`` vary in ``root`` / ``test``):

   - ``glob``: one value is another one with a masked part (``chdir(<*>)`` and
     ``chdir(pwd)``): the rules masked this slot once, so it is a variable (2 values suffice);
   - ``data``: the varying parts hold digits, ``/``, ``\\``, ``@`` or dotted names
     (``QQ.10018``, ``com.apple.x``), the common prefix ends in ``=`` (a key's value) or holds
     a path separator, or every value is mostly masked (more ``<*>`` than words:
     ``[<*>,<*>]-<*>.txt``);
   - ``code``: identifiers of a program (``Foo::start``, ``camelCase``, ``SNAKE_CASE``,
     ``kebab-case``, ``a:b``): names from the source (states, operations, methods), so more
     of them are needed to call the slot variable;
   - ``word``: anything else (plain words).

   A column is a variable when it holds at least the kind's threshold of distinct values
   (``MinerConfig``: words 3, data 3, code 5; one configuration for every input; words 3 is
   a requirement (three ``user X not found`` lines are one problem), data and code are
   chosen by the leave-one-dataset-out loop in ``bench/loghub.py``).
2. **Columns that vary together are one phrase.** Two word/code columns whose values pair
   one-to-one (``RTC (Alarm)``, ``ARPT (Network)``; ``Bad file descriptor``, ``No child
   processes``), or a word/code column paired one-to-one with the constant text of a data
   column (``illegal instruction......0``, ``imprecise exception......0``, digits and masks
   removed), are wording: they stay constant and split the cluster; each part is then judged
   again on its own (the data column paired with them stays a variable in every part).

Everything here is a pure function of the cluster's SET of sequences (iteration is over
sorted values), so mining stays order-independent. Costs are linear in the cluster per
column pair; the glob test uses ``str.find`` (no regex over event text) and is skipped for
columns with many values (those are variables anyway).
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations

WILDCARD = "<*>"

Tokens = tuple[str, ...]

#: varying parts with these characters are data (numbers, paths, addresses)
_DATA_CHARS = re.compile(r"[\d/\\@]")
#: a dot between word characters: dotted names, file extensions, versions
_DOTTED = re.compile(r"\w\.\w")
_LETTERS = re.compile(r"[A-Za-z]+")
#: identifiers of a program: ``A::b``, ``a:b``, ``camelCase``, ``snake_case``, ``kebab-case``
_CODE = re.compile(r"::|\w:\w|[a-z][A-Z]|[A-Za-z][_-][A-Za-z]")
_DIGITS = re.compile(r"\d+")
#: columns with this many values skip the glob test (quadratic; such columns are variables)
_GLOB_LIMIT = 64


@dataclass(frozen=True)
class MinerConfig:
    """The one configuration used for every input (no per-dataset tuning)."""

    #: distinct values that make a column of plain words a variable (3: a requirement,
    #: three ``user X not found`` lines are one problem; not searched by the LOO loop)
    min_words: int = 3
    #: ... a column of data-shaped values (digits, paths, key=value, dotted names)
    min_data: int = 3
    #: ... a column of program identifiers (``Foo::bar``, ``camelCase``, ``SNAKE_CASE``...)
    min_code: int = 5
    #: mechanisms, switchable so the benchmark can show what each one contributes
    #: (``bench/loghub.py``): value shapes (off: every column counts as words) and
    #: one-to-one paired columns kept as wording (off: columns are judged one by one)
    shapes: bool = True
    pairs: bool = True
    #: sequences kept per group (bounds memory; beyond it new sequences are not added)
    max_group_size: int = 5000
    #: online mining (``cluster.TemplateMiner``): a group of up to this many sequences is
    #: mined again whenever it changes; a larger one when it has grown by ``regrowth`` since
    #: its last mining (and once more when full), a new sequence meanwhile placed against
    #: that mining. Mining a group costs time linear in its size: mined again on every
    #: change, a growing group of thousands cost milliseconds per batch, and a full one
    #: (which used to be mined again for every sequence it refused) tens of milliseconds
    #: per event
    exact_group_size: int = 64
    regrowth: float = 1.5


DEFAULT_CONFIG = MinerConfig()


def column_kind(values: set[str]) -> str:
    """``glob``, ``data``, ``code`` or ``word`` for a column's distinct values (see above)."""
    literal = sorted(v for v in values if v != WILDCARD)
    if len(values) < _GLOB_LIMIT and _one_is_instance_of_another(literal):
        return "glob"
    if len(literal) < 2:
        return "word"
    prefix = os.path.commonprefix(literal)
    suffix = os.path.commonprefix([v[len(prefix):][::-1] for v in literal])[::-1]
    middles = [v[len(prefix):len(v) - len(suffix)] for v in literal]
    if (prefix.endswith("=") or "/" in prefix or "\\" in prefix
            or any(_DATA_CHARS.search(m.replace(WILDCARD, "")) for m in middles)
            or any(_DOTTED.search(m) for m in middles)
            or all(v.count(WILDCARD) > len(_LETTERS.findall(v.replace(WILDCARD, " ")))
                   for v in literal)):
        return "data"
    if any(_CODE.search(v.replace(WILDCARD, "")) for v in literal):
        return "code"
    return "word"


def _one_is_instance_of_another(literal: Sequence[str]) -> bool:
    plain = [v for v in literal if WILDCARD not in v]
    if not plain:
        return False
    for pattern in literal:
        if WILDCARD in pattern:
            parts = pattern.split(WILDCARD)
            if any(_glob_match(parts, text) for text in plain):
                return True
    return False


def _glob_match(parts: Sequence[str], text: str) -> bool:
    """``text`` matches ``parts`` joined by wildcards of one or more characters (leftmost
    greedy search of each fixed part: linear, no backtracking)."""
    first, last = parts[0], parts[-1]
    if not text.startswith(first):
        return False
    at = len(first) + 1
    for part in parts[1:-1]:
        found = text.find(part, at)
        if found < 0:
            return False
        at = found + len(part) + 1
    return len(text) - len(last) >= at and text.endswith(last)


def templates(
    members: Sequence[Tokens], fixed: set[int], config: MinerConfig = DEFAULT_CONFIG
) -> dict[Tokens, Tokens]:
    """The template of every member of one cluster; ``fixed`` are its root positions."""
    if len(members) == 1:  # no column varies and none is forced: the member is its template
        return {members[0]: tuple(members[0])}
    out: dict[Tokens, Tokens] = {}
    _judge(sorted(members), frozenset(fixed), frozenset(), config, out)
    return out


def _judge(members: Sequence[Tokens], fixed: frozenset[int], forced: frozenset[int],
           config: MinerConfig, out: dict[Tokens, Tokens]) -> None:
    columns = _columns(members, fixed)
    kinds = {pos: column_kind(values) if config.shapes else "word"
             for pos, values in columns.items()}
    coupled, paired_data = _coupled(members, columns, kinds) if config.pairs else (set(), set())
    threshold = {"word": config.min_words, "code": config.min_code}
    variable = set(forced)
    for pos, values in columns.items():
        kind = kinds[pos]
        if pos not in coupled and (
                kind == "glob" or len(values) >= threshold.get(kind, config.min_data)):
            variable.add(pos)
    if coupled:  # wording: split, and judge each part on its own
        keep = forced | (variable & paired_data)
        parts: dict[tuple[str, ...], list[Tokens]] = defaultdict(list)
        order = sorted(coupled)
        for line in members:
            parts[tuple(line[p] for p in order)].append(line)
        for part in parts.values():
            _judge(part, fixed | coupled | keep, frozenset(keep), config, out)
        return
    for line in members:
        out[line] = tuple(WILDCARD if pos in variable else tok for pos, tok in enumerate(line))


def _columns(members: Sequence[Tokens], fixed: frozenset[int]) -> dict[int, set[str]]:
    """Positions outside ``fixed`` holding two or more values, with their values."""
    columns: dict[int, set[str]] = {}
    if len(members) > 1:
        for pos in range(len(members[0])):
            if pos not in fixed:
                values = {line[pos] for line in members}
                if len(values) > 1:
                    columns[pos] = values
    return columns


def _coupled(members: Sequence[Tokens], columns: dict[int, set[str]], kinds: dict[int, str]
             ) -> tuple[set[int], set[int]]:
    """Word/code columns that pair one-to-one with another such column or with a data
    column's constant text; and those data columns."""
    wordy = [pos for pos in sorted(columns) if kinds[pos] in ("word", "code")]
    coupled: set[int] = set()
    paired_data: set[int] = set()
    for a, b in combinations(wordy, 2):
        if _one_to_one(members, a, b, _same, len(columns[a]), len(columns[b])):
            coupled |= {a, b}
    data = [pos for pos in sorted(columns) if kinds[pos] == "data"]
    skeletons = {pos: len({_skeleton(v) for v in columns[pos]}) for pos in data}
    for a in wordy:
        for b in data:
            if skeletons[b] > 1 and _one_to_one(members, a, b, _skeleton, len(columns[a]),
                                                skeletons[b]):
                coupled.add(a)
                paired_data.add(b)
    return coupled, paired_data


def _one_to_one(members: Sequence[Tokens], a: int, b: int, view: Callable[[str], str],
                count_a: int, count_b: int) -> bool:
    """Do column ``a``'s values and ``view`` of column ``b``'s pair one-to-one?"""
    if count_a != count_b:
        return False
    return len({(line[a], view(line[b])) for line in members}) == count_a



def _same(value: str) -> str:
    return value


def _skeleton(value: str) -> str:
    """A value's constant text: digits and masked parts removed."""
    return _DIGITS.sub("", value).replace(WILDCARD, "")
