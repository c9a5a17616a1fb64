"""The pattern catalog: patterns with compiled detection rules and their declared fix.

Loaded from the seeds' YAML (``seeds/*.yaml``) or from rows of the ``patterns``/``fixes``
tables; the same parser serves both, so what is seeded is what is stored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import regex
import yaml

from pipeline.boundedre import BoundedPattern, Budget, compile_bounded
from pipeline.errors import ConfigError
from pipeline.fixes.params import ParamSpec
from pipeline.fixes.render import FixSpec
from pipeline.lookup.prefixes import strip_prefixes
from pipeline.model import Category, FixKind, LifecycleState
from pipeline.spelling import spelled, spelled_list
from pipeline.yamlload import safe_load

SEEDS_DIR = Path(__file__).resolve().parents[2] / "seeds"
_ID = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+$")
_FIX_KEYS = ("id", "kind", "title", "explanation", "category", "state")


@dataclass(frozen=True)
class Rule:
    """One detection rule: a regex (MULTILINE) whose named groups become parameters.

    Compiled with the ``regex`` engine and searched within a :class:`Budget` (event text
    is hostile: see ``pipeline/boundedre.py``)."""

    regex: BoundedPattern
    unless: BoundedPattern | None = None
    constants: Mapping[str, str] = field(default_factory=dict)
    name: str = ""
    #: a taught rule that alone decides where its lesson answers (a person's ``--regex``, or
    #: a derived rule that kept a value literal): the lesson's fingerprint mapping, which
    #: masks that value, does not widen it (see ``LookupService._evidence_of``)
    decides: bool = False

    def match(self, text: str, budget: Budget | None = None) -> dict[str, str] | None:
        budget = budget or Budget()
        found = budget.search(self.regex, text, self.name)
        if found is None or (self.unless is not None
                             and budget.search(self.unless, text, self.name + ":unless")):
            return None
        params = {k: v for k, v in found.groupdict().items() if v is not None}
        # alternative spellings of one parameter are written name2, name3 in the regex
        for key in [k for k in params if k[-1].isdigit()]:
            params.setdefault(key.rstrip("0123456789"), params.pop(key))
        params.update(self.constants)
        return params

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"regex": self.regex.pattern}
        if self.unless is not None:
            out["unless"] = self.unless.pattern
        if self.constants:
            out["set"] = dict(self.constants)
        if self.decides:
            out["decides"] = True
        return out


@dataclass(frozen=True)
class Pattern:
    id: str
    name: str
    category: Category
    description: str
    rules: tuple[Rule, ...]
    params: Mapping[str, ParamSpec]
    fix: FixSpec
    examples: tuple[str, ...] = ()
    priority: int = 50
    #: other fixes for the same error (ranked against ``fix`` by Thompson sampling; the next
    #: one is tried in the same attempt when the chosen one fails). Playbooks and commands.
    alternatives: tuple[FixSpec, ...] = ()

    @property
    def rule_decides(self) -> bool:
        """One of its rules alone decides where it answers (:attr:`Rule.decides`)."""
        return any(rule.decides for rule in self.rules)

    @property
    def fixes(self) -> tuple[FixSpec, ...]:
        return (self.fix, *self.alternatives)

    def detect(self, text: str, budget: Budget | None = None,
               bare: str | None = None) -> dict[str, str] | None:
        """Parameters of the first rule matching ``text``, else the first matching its view
        without CI/log line prefixes (``bare``, computed when not given); every rule shares
        ``budget``."""
        budget = budget or Budget()
        for rule in self.rules:
            params = rule.match(text, budget)
            if params is not None:
                return params
        bare = strip_prefixes(text) if bare is None else bare
        if bare == text:
            return None
        for rule in self.rules:
            params = rule.match(bare, budget)
            if params is not None:
                return params
        return None

    def to_dict(self) -> dict[str, Any]:
        """The YAML/JSON shape of the seeds (``heal export``)."""
        out = {
            "id": self.id,
            "name": self.name,
            "category": self.category.value,
            "priority": self.priority,
            "description": self.description,
            "detect": [r.to_dict() for r in self.rules],
            "params": {n: p.to_dict() for n, p in self.params.items()},
            "examples": list(self.examples),
            "fix": _fix_dict(self.fix),
        }
        if self.alternatives:
            out["alternatives"] = [_fix_dict(a) for a in self.alternatives]
        return out


def _fix_dict(fix: FixSpec) -> dict[str, Any]:
    return {"id": fix.id, "kind": fix.kind.value, "category": fix.category.value,
            "state": fix.state.value, "title": fix.title, "explanation": fix.explanation,
            **dict(fix.template)}


def _compile(pattern_id: str, source: str) -> BoundedPattern:
    try:
        return compile_bounded(source, regex.MULTILINE)
    except regex.error as exc:
        raise ConfigError(f"pattern {pattern_id}: bad regex {spelled(source)}: {exc}") from exc


def _enum(pattern_id: str, enum: type[Any], value: Any, what: str) -> Any:
    try:
        return enum(value)
    except ValueError as exc:
        allowed = ", ".join(e.value for e in enum)
        raise ConfigError(
            f"pattern {pattern_id}: {what} {spelled(value)} is not one of {allowed}"
        ) from exc


def parse_pattern(raw: Mapping[str, Any]) -> Pattern:
    """Build one pattern from its YAML mapping.

    Raises:
        ConfigError: names the pattern and the field to change.
    """
    pid = str(raw.get("id", ""))
    if not _ID.match(pid):
        raise ConfigError(f"pattern id {spelled(raw.get('id'))} must look like area.name "
                          "(lowercase, dots)")
    rules = tuple(
        Rule(
            regex=_compile(pid, r["regex"]),
            unless=_compile(pid, r["unless"]) if r.get("unless") else None,
            constants={str(k): str(v) for k, v in (r.get("set") or {}).items()},
            name=f"{pid}:{i}",
            decides=r.get("decides") is True,
        )
        for i, r in enumerate(raw.get("detect") or [])
    )
    declared = raw.get("params") or {}
    params = {n: ParamSpec.from_dict(n, spec or {}) for n, spec in declared.items()}
    category = _enum(pid, Category, raw.get("category"), "category")
    fix_raw = dict(raw.get("fix") or {})
    if not fix_raw:
        raise ConfigError(f"pattern {pid}: needs a fix (use kind: escalate when none is safe)")
    fix = _parse_fix(pid, fix_raw, category, params, f"{pid}/fix")
    alternatives = []
    for i, alt in enumerate(raw.get("alternatives") or []):
        if not isinstance(alt, Mapping) or not alt.get("id"):
            raise ConfigError(f"pattern {pid}: alternatives[{i}] needs an id (id: "
                              f"{pid}/NAME)")
        spec = _parse_fix(pid, dict(alt), category, params, "")
        if spec.kind not in (FixKind.PLAYBOOK, FixKind.COMMAND):
            raise ConfigError(f"pattern {pid}: alternatives[{i}] must be a playbook or a "
                              "command (they are verified when applied)")
        alternatives.append(spec)
    ids = [f.id for f in (fix, *alternatives)]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"pattern {pid}: fix ids must be unique, got {spelled_list(ids)}")
    return Pattern(
        id=pid,
        name=str(raw.get("name", pid)),
        category=category,
        description=str(raw.get("description", "")).strip(),
        rules=rules,
        params=params,
        fix=fix,
        examples=tuple(str(e) for e in raw.get("examples") or ()),
        priority=int(raw.get("priority", 50)),
        alternatives=tuple(alternatives),
    )


def _parse_fix(pid: str, fix_raw: dict[str, Any], category: Category,
               params: Mapping[str, ParamSpec], default_id: str) -> FixSpec:
    kind = _enum(pid, FixKind, fix_raw.get("kind"), "fix kind")
    fix = FixSpec(
        id=str(fix_raw.get("id") or default_id),
        pattern_id=pid,
        kind=kind,
        # an escalation never changes anything, so it is never auto-applied: RISKY
        category=Category.RISKY if kind is FixKind.ESCALATE else _enum(
            pid, Category, fix_raw.get("category", category), "fix category"),
        title=str(fix_raw.get("title", "")),
        explanation=str(fix_raw.get("explanation", "")).strip(),
        template={k: v for k, v in fix_raw.items() if k not in _FIX_KEYS},
        params=params,
        state=_enum(pid, LifecycleState, fix_raw.get("state", "ACTIVE"), "fix state"),
    )
    fix.check_template()
    return fix


class Catalog:
    """Patterns by id, with detection in priority order (highest first)."""

    def __init__(self, patterns: Iterable[Pattern]) -> None:
        self.patterns: dict[str, Pattern] = {}
        for p in patterns:
            if p.id in self.patterns:
                raise ConfigError(f"pattern {p.id} is defined twice")
            self.patterns[p.id] = p
        self._ordered: Sequence[Pattern] = sorted(
            self.patterns.values(), key=lambda p: (-p.priority, p.id)
        )

    def __len__(self) -> int:
        return len(self.patterns)

    def get(self, pattern_id: str) -> Pattern | None:
        return self.patterns.get(pattern_id)

    def detect(self, text: str) -> tuple[Pattern, dict[str, str]] | None:
        """The highest-priority pattern whose rules match ``text``, with its parameters. The
        text is also read without its lines' CI/log prefixes (:mod:`.prefixes`); the stronger
        of the two matches wins (higher priority, then more parameters); the view without
        prefixes on a tie or when both name the same pattern, so a prefix never leaks into a
        parameter. Every rule of both passes shares one time budget
        (``boundedre.PASS_BUDGET_S``)."""
        budget = Budget()
        found = self._first(text, budget)
        bare = strip_prefixes(text)
        if bare == text:
            return found
        other = self._first(bare, budget)
        if other is None:
            return found
        if found is None or found[0] is other[0] or _strength(other) >= _strength(found):
            return other  # the rule written for the tool's own output, found under a prefix
        return found

    def _first(self, text: str, budget: Budget) -> tuple[Pattern, dict[str, str]] | None:
        for pattern in self._ordered:
            params = pattern.detect(text, budget, text)
            if params is not None:
                return pattern, params
        return None


def _strength(found: tuple[Pattern, dict[str, str]]) -> tuple[int, int]:
    """A match is stronger when its pattern ranks higher, then when it found more parameters."""
    return found[0].priority, len(found[1])


def load_catalog(paths: Iterable[Path] | None = None) -> Catalog:
    """Parse the seed files (default: every ``seeds/*.yaml``).

    A file parsed before in this process, unchanged since (same size and modification time),
    is not parsed again: ``heal run`` builds several stages that each read the seeds.

    Raises:
        ConfigError: unreadable YAML or an invalid pattern; the message names file and field.
    """
    files = sorted(SEEDS_DIR.glob("*.yaml")) if paths is None else list(paths)
    patterns: list[Pattern] = []
    for path in files:
        patterns.extend(_seed_file(path))
    return Catalog(patterns)


#: path -> ((size, mtime_ns), its patterns): Pattern is frozen, so parsed ones are shared
_PARSED: dict[Path, tuple[tuple[int, int], tuple[Pattern, ...]]] = {}


def _seed_file(path: Path) -> tuple[Pattern, ...]:
    """Raises: ConfigError."""
    try:
        stat = path.stat()
        stamp = (stat.st_size, stat.st_mtime_ns)
        cached = _PARSED.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        doc = safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read seeds: {exc}") from exc
    parsed = []
    for raw in doc.get("patterns") or []:
        try:
            parsed.append(parse_pattern(raw))
        except ConfigError as exc:
            raise ConfigError(f"{path.name}: {exc}") from exc
    _PARSED[path] = (stamp, tuple(parsed))
    return _PARSED[path][1]
