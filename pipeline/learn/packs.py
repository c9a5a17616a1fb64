"""Packs: what one installation learned, shared with another as versioned YAML.

A pack is the seeds' file format (``patterns:`` in the seeds' shape) plus a header
(``heal_pack: 1``, when and by whom it was made) and, per pattern, ``stats`` (its fix's
verified outcomes where it came from) and ``provenance``. Every fix taught for a pattern is
carried: the newest as ``fix``, the others as ``alternatives`` (newest first), each with its
own ``stats`` and ``provenance``. A seed file is a pack without the extras, so
``heal import seeds/net.yaml`` goes through the same code.

Importing never trusts the other installation's verdicts: every imported fix starts DRAFT
here, whatever its state was there, and is verified before it is offered. A pattern held here
(by its id, a seed's included, or by its rules) with the same fix is already known: importing
a pack again changes nothing. One held with a different fix or other rules under its id, one
with a fix id held by another pattern, or whose ``provenance.fine`` is mapped here to another
pattern, is a conflict: reported, never merged. A pack naming one pattern id twice, or a fix
id not under its own pattern's id (or, under ``learned.``, not the one heal derives for that
fix), or a pattern id under ``review.`` (the placeholders ``heal issues review`` creates), is
refused before anything is stored.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from pipeline.errors import ConfigError, UsageError
from pipeline.lookup.catalog import Catalog, load_catalog, parse_pattern
from pipeline.lookup.taught import raw_pattern
from pipeline.safefile import load_yaml_file
from pipeline.spelling import spelled

PACK_VERSION = 1
#: bounds of one pack (the seeds hold 48 patterns with at most 8 examples each): every
#: example is embedded and searched at tier 2, every fix verified, so a pack past them is
#: refused before anything is stored
MAX_PATTERNS = 10_000
MAX_EXAMPLES = 100
MAX_ALTERNATIVES = 50
_FIX_META = ("id", "kind", "category", "state", "title", "explanation")


def _template(fix: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fix.items() if k not in _FIX_META}


def _same(a: Any, b: Any) -> bool:
    return orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(
        b, option=orjson.OPT_SORT_KEYS)


def _stats(stats: dict[str, dict[str, Any]], fix_id: str) -> dict[str, Any]:
    return stats.get(fix_id, {"successes": 0, "failures": 0, "reverts": 0})


def _provenance(row: dict[str, Any]) -> dict[str, Any]:
    """The fix's own provenance (who taught it, when, from which error): the pattern's is
    the first lesson's, whichever fix came later."""
    own = row.get("fix_provenance") or row.get("provenance") or {}
    return {**own, "source": row["source"]}


def build_pack(rows: list[dict[str, Any]], stats: dict[str, dict[str, Any]],
               who: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """The pack of the taught patterns ``rows`` (``LearnedRepository.taught(every_fix=True)``:
    one row per fix, newest first). The newest fix is the pattern's ``fix`` (with ``stats``
    and ``provenance`` beside it, as in every pack); every other fix is one of its
    ``alternatives``, each carrying its own ``stats`` and ``provenance``."""
    patterns: list[dict[str, Any]] = []
    by_id: dict[str, dict[str, Any]] = {}
    for row in rows:
        raw = raw_pattern(row)
        held = by_id.get(row["id"])
        if held is None:
            raw["stats"] = _stats(stats, row["fix_id"])
            raw["provenance"] = _provenance(row)
            by_id[row["id"]] = raw
            patterns.append(raw)
            continue
        held.setdefault("alternatives", []).append(
            {**raw["fix"], "stats": _stats(stats, row["fix_id"]),
             "provenance": _provenance(row)})
    # the extras last, after the seeds' own keys
    for raw in patterns:
        for key in ("alternatives", "stats", "provenance"):
            if key in raw:
                raw[key] = raw.pop(key)
    return {"heal_pack": PACK_VERSION,
            "created": (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"),
            "created_by": who, "patterns": patterns}


def fix_count(pack: dict[str, Any]) -> int:
    return sum(1 + len(p.get("alternatives") or []) for p in pack["patterns"])


@dataclass(frozen=True)
class PackFix:
    """One fix of a pattern in a pack: the fix mapping (seeds' shape) and the extras."""

    fix: dict[str, Any]
    stats: dict[str, Any]
    provenance: dict[str, Any]


_EXTRAS = ("stats", "provenance")


def pattern_fixes(raw: dict[str, Any]) -> tuple[dict[str, Any], list[PackFix]]:
    """The pattern without its fixes' extras and alternatives, and every fix (its ``fix``
    first, then its ``alternatives`` in order), each with its own stats and provenance."""
    base = {k: v for k, v in raw.items() if k not in (*_EXTRAS, "alternatives")}
    fixes = [PackFix(dict(raw.get("fix") or {}), dict(raw.get("stats") or {}),
                     dict(raw.get("provenance") or {}))]
    for alt in raw.get("alternatives") or []:
        if isinstance(alt, dict):
            fixes.append(PackFix({k: v for k, v in alt.items() if k not in _EXTRAS},
                                 dict(alt.get("stats") or {}),
                                 dict(alt.get("provenance") or {})))
        else:
            fixes.append(PackFix({"alternative": alt}, {}, {}))
    return base, fixes


def parse_pack_pattern(raw: dict[str, Any]) -> tuple[dict[str, Any], list[PackFix]]:
    """The pattern (seeds' shape, validated by the seeds' parser, without alternatives) and
    each of its fixes validated as that pattern's fix, whatever its kind: a pack carries
    every fix taught for a pattern (a diff, an escalation too), where the seeds allow only
    playbooks and commands as alternatives.

    Raises:
        ConfigError: naming the pattern, the alternative and the field to change.
    """
    base, fixes = pattern_fixes(raw)
    _check_pattern_id(base.get("id"))
    clean = parse_pattern({**base, "fix": fixes[0].fix}).to_dict()
    out = [PackFix(clean["fix"], fixes[0].stats, fixes[0].provenance)]
    seen = {clean["fix"]["id"]}
    for index, item in enumerate(fixes[1:]):
        if not item.fix.get("id") or "alternative" in item.fix:
            raise ConfigError(f"pattern {base.get('id')}: alternatives[{index}] must be a "
                              "fix mapping with an id")
        try:
            fix = parse_pattern({**base, "fix": item.fix}).to_dict()["fix"]
        except ConfigError as exc:
            raise ConfigError(f"pattern {base.get('id')}: alternatives[{index}]: {exc}") from exc
        if fix["id"] in seen:
            raise ConfigError(f"pattern {base.get('id')}: alternatives[{index}]: fix id "
                              f"{spelled(fix['id'])} is given twice")
        seen.add(fix["id"])
        out.append(PackFix(fix, item.stats, item.provenance))
    for index, item in enumerate(out):
        _check_fix_id(clean["id"], "fix" if index == 0 else f"alternatives[{index - 1}]",
                      item.fix)
    clean.pop("alternatives", None)
    return clean, out


def _check_pattern_id(pattern_id: Any) -> None:
    """Ids under ``review.`` belong to ``heal issues review`` alone: its ``y`` derives
    ``review.<hash of the fine fingerprint>`` (and the escalation ``<id>.escalate``) for a
    waiting error, so a pack holding such an id, whatever its fix, would stand in for the
    placeholder a later review creates for that error (its name, rules and message) or block
    it. ``heal export --pack`` never writes them.

    Raises:
        ConfigError: naming the pattern and the id to give instead.
    """
    from storage.reports import REVIEW

    if isinstance(pattern_id, str) and pattern_id.startswith(REVIEW):
        raise ConfigError(
            f"pattern {spelled(pattern_id)}: ids under {REVIEW} are the placeholders heal "
            "issues review creates for a waiting error, never a pack's; give the pattern an "
            "id of your own (area.name) and its fix <pattern id>/NAME, or leave it out of "
            "the pack")


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def _check_fix_id(pattern_id: str, where: str, fix: dict[str, Any]) -> None:
    """A pack's fix id is under its own pattern's id (``<pattern id>/<name>``, as the seeds
    name theirs, or ``<pattern id>.<name>``, as heal names what it learns), and under
    ``learned.`` it is the id heal itself derives from the fix (its kind and a hash of its
    template): a fix id is a row of its own, so a pack naming another pattern's id, or the
    id a later ``heal learn`` would derive for another fix, would block that lesson or stand
    in for it. (Ids under ``review.`` are refused whole, see :func:`_check_pattern_id`.)

    Raises:
        ConfigError: naming the pattern, the fix and the id to give.
    """
    from pipeline.learn.teach import LEARNED, learned_fix_id

    fix_id = str(fix["id"])
    name = next((fix_id[len(pattern_id) + 1:] for sep in ("/", ".")
                 if fix_id.startswith(pattern_id + sep)), "")
    # NAME holds neither "/" nor ".": one fix id has one pattern it can be under (pattern a.b
    # cannot name a.b.c/fix, pattern a.b.c's)
    if not name or len(name) > 100 or not set(name) <= _NAME_CHARS:
        raise ConfigError(f"pattern {pattern_id}: {where}: fix id {spelled(fix_id)} is not "
                          f"under the pattern's own id: name it {pattern_id}/NAME (or "
                          f"{pattern_id}.NAME), NAME of letters, digits, _ and -")
    if pattern_id.startswith(LEARNED):
        derived = learned_fix_id(pattern_id, str(fix["kind"]), _template(fix))
        if fix_id != derived:
            raise ConfigError(
                f"pattern {pattern_id}: {where}: fix id {spelled(fix_id)} is not the id heal "
                f"derives for this fix ({derived}): ids under {LEARNED} are heal's own; "
                "keep the id heal export gave it, or give the pattern an id of your own "
                "(area.name) and the fix <pattern id>/NAME")


def write_pack(path: Path, pack: dict[str, Any]) -> None:
    try:
        path.write_text(yaml.safe_dump(pack, sort_keys=False, allow_unicode=True, width=100),
                        encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--pack {path}: cannot write it: {exc.strerror or exc}") from exc


def read_pack(path: Path) -> dict[str, Any]:
    """A pack (or a seed file) with every pattern validated by the seeds' parser.

    Raises:
        UsageError: unreadable, not a regular file, over 16 MiB, not UTF-8, not YAML,
            nested too deeply, aliases expanding beyond its text, a version this heal does
            not know, more than MAX_PATTERNS patterns, a pattern with more than
            MAX_EXAMPLES examples or MAX_ALTERNATIVES alternatives, an invalid pattern
            (named, with the field to change), one pattern id given twice, or a fix id
            that is not its own (:func:`_check_fix_id`).
    """
    doc = load_yaml_file(path, str(path))
    if not isinstance(doc, dict) or not isinstance(doc.get("patterns"), list):
        raise UsageError(f"{path}: a pack is a mapping with a 'patterns:' list (the seeds' "
                         "format; heal export --pack writes one)")
    version = doc.get("heal_pack", PACK_VERSION)
    if isinstance(version, bool) or version != PACK_VERSION:  # (True == 1 in Python)
        raise UsageError(f"{path}: pack version {spelled(version)} (heal_pack); this heal "
                         f"reads version {PACK_VERSION}")
    if len(doc["patterns"]) > MAX_PATTERNS:
        raise UsageError(f"{path}: {len(doc['patterns'])} patterns; a pack holds at most "
                         f"{MAX_PATTERNS}: split it into several packs")
    first_at: dict[str, int] = {}
    for index, raw in enumerate(doc["patterns"]):
        if not isinstance(raw, dict):
            raise UsageError(f"{path}: pattern {index} is not a mapping")
        pid = raw.get("id")
        if isinstance(pid, str) and pid in first_at:
            # stored one after the other, the second would overwrite the first's detection
            raise UsageError(f"{path}: pattern id {spelled(pid)} is given twice (patterns "
                             f"{first_at[pid]} and {index}); give each pattern its own id")
        if isinstance(pid, str):
            first_at[pid] = index
        for key, cap in (("examples", MAX_EXAMPLES), ("alternatives", MAX_ALTERNATIVES)):
            items = raw.get(key)
            if isinstance(items, list) and len(items) > cap:
                raise UsageError(f"{path}: pattern {spelled(raw.get('id'))} has {len(items)} "
                                 f"{key}; a pattern holds at most {cap}: keep the ones that "
                                 "tell its errors apart")
        try:
            # each fix id under its own pattern's id: no two patterns can give the same one
            parse_pack_pattern(raw)
        except ConfigError as exc:
            raise UsageError(f"{path}: {exc}") from exc
    return doc


@dataclass
class ImportReport:
    imported: list[dict[str, str]] = field(default_factory=list)
    known: list[str] = field(default_factory=list)
    conflicts: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"imported": self.imported, "known": self.known, "conflicts": self.conflicts}


def _fix_key(fix: dict[str, Any]) -> dict[str, Any]:
    """What makes two fixes the same fix: its kind and template (not its id or state)."""
    return {"kind": fix.get("kind"), **_template(fix)}


class _Held:
    """The patterns held here (PostgreSQL, and the seed files, which a fresh installation
    has not stored yet and which are the seeds whatever PostgreSQL holds under their ids),
    by id, by detection and by fix id; kept current as a pack is imported."""

    def __init__(self, rows: list[Any], seeds: Catalog) -> None:
        from storage.learned import HeldPattern, detection_key

        self.by_id: dict[str, HeldPattern] = {r.id: r for r in rows}
        for seed in seeds.patterns.values():
            d = seed.to_dict()
            self.by_id[seed.id] = HeldPattern(
                seed.id, detection_key(d["detect"]), "seed",
                tuple((f["id"], _fix_key(f)) for f in (d["fix"], *d.get("alternatives", []))))
        self.by_detection: dict[str, Any] = {}
        self.owner: dict[str, str] = {}
        for held in self.by_id.values():
            self.add(held)

    def add(self, held: Any) -> None:
        from storage.learned import detection_key

        self.by_id[held.id] = held
        if held.detection != detection_key([]):
            # a pattern with no rule is known by its id only: two such patterns share nothing
            self.by_detection.setdefault(held.detection, held)
        for fix_id, _fix in held.fixes:
            self.owner[fix_id] = held.id

    def has_fix(self, held: Any, fix: dict[str, Any]) -> bool:
        return any(_same(mine, _fix_key(fix)) for _id, mine in held.fixes)

    def taken(self, pattern_id: str, fixes: list[PackFix]) -> dict[str, str] | None:
        """A conflict when a fix id of the pack's pattern is held here by another pattern, or
        by this one as a different fix: storing it would drop it or attach it elsewhere."""
        for item in fixes:
            fix_id = str(item.fix["id"])
            owner = self.owner.get(fix_id)
            if owner is None:
                continue
            if owner != pattern_id:
                return {"pattern_id": pattern_id, "held": owner,
                        "why": f"its fix id {fix_id} is held here by pattern {owner}; not "
                               "imported: give the fix an id of its own"}
            mine = dict(self.by_id[owner].fixes).get(fix_id)
            if not _same(mine, _fix_key(item.fix)):
                return {"pattern_id": pattern_id, "held": owner,
                        "why": f"its fix id {fix_id} is held here as a different fix; not "
                               "merged: compare them and teach the better one with heal learn"}
        return None


class PackImporter:
    """Imports a pack through :class:`storage.learned.LearnedRepository` (one pattern per
    transaction), auditing each fix stored. A pattern is held here when its id is (the seeds'
    ids included) or, for a pattern with rules, when its rules are; held with the same fix
    (the one served or an alternative) it is already known and gains only the alternatives it
    lacks; anything else held is a conflict, and nothing of that pattern is stored."""

    def __init__(self, db: Any, audit: Any = None, seeds: Catalog | None = None) -> None:
        from storage.learned import LearnedRepository

        self.repo = LearnedRepository(db)
        self.audit = audit
        self.seeds = load_catalog() if seeds is None else seeds

    def run(self, doc: dict[str, Any], origin: str, who: str) -> ImportReport:
        from storage.learned import HeldPattern, detection_key

        report = ImportReport()
        # the fixes are audited once stored: on a full HEAL_HOME nothing is stored
        ensure_room = getattr(self.audit, "ensure_room", None)
        if ensure_room is not None:
            ensure_room()
        held = _Held(self.repo.held_patterns(), self.seeds)
        when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        for raw in doc["patterns"]:
            clean, fixes = parse_pack_pattern(raw)
            key = detection_key(clean["detect"])
            mine = held.by_id.get(clean["id"]) or held.by_detection.get(key)

            def provenance(item: PackFix) -> dict[str, Any]:
                return {**item.provenance, "imported_from": origin, "imported_by": who,
                        "imported_at": when, "stats_elsewhere": item.stats,
                        "state_elsewhere": item.fix.get("state", "ACTIVE")}

            if mine is not None:
                conflict = (self._differs(clean, fixes[0].fix, mine, key, held)
                            or held.taken(mine.id, fixes))
                if conflict is not None:
                    report.conflicts.append(conflict)
                    continue
                report.known.append(clean["id"])
                # the same pattern and fix: the alternatives not held here join it (verified
                # here before any of them is ever offered)
                lacking = [({**item.fix, "state": "DRAFT"}, provenance(item))
                           for item in fixes[1:] if not held.has_fix(mine, item.fix)]
                added = self.repo.add_older_fixes(mine.id, lacking) if lacking else []
                self._imported(report, mine.id, added, origin)
                held.add(HeldPattern(mine.id, mine.detection, mine.source, (
                    *mine.fixes, *((f["id"], _fix_key(f)) for f, _p in lacking))))
                continue
            conflict = held.taken(clean["id"], fixes)
            if conflict is not None:
                report.conflicts.append(conflict)
                continue
            # a copy: the pack's fix (fixes[0].fix, the same dict) keeps the state it had
            # where it came from, which its provenance records as state_elsewhere
            clean["fix"] = {**clean["fix"], "state": "DRAFT"}
            fine = str((raw.get("provenance") or {}).get("fine") or "")
            owner = self.repo.fingerprint_owner(fine, "fine") if fine else None
            if owner is not None and owner != clean["id"]:
                # a pack never moves a fingerprint: only a person (heal learn) says what
                # fixes an error heal already maps to a pattern
                report.conflicts.append({
                    "pattern_id": clean["id"], "held": owner,
                    "why": f"its provenance maps fingerprint {fine} to it, which is mapped "
                           f"here to {owner}; not imported: teach it with heal learn if "
                           "that fingerprint should move"})
                continue
            others = [({**item.fix, "state": "DRAFT"}, provenance(item)) for item in fixes[1:]]
            saved = self.repo.save(clean, source="pack", provenance=provenance(fixes[0]),
                                   fingerprints=[(fine, "fine")] if fine else [],
                                   alternatives=others, move_fingerprints=False)
            stored = [saved.fix_id] if saved.new_fix else []
            self._imported(report, saved.pattern_id, [*stored, *saved.new_alternatives], origin)
            held.add(HeldPattern(clean["id"], key, "pack",
                                 tuple((item.fix["id"], _fix_key(item.fix)) for item in fixes)))
        return report

    def _imported(self, report: ImportReport, pattern_id: str, fix_ids: list[str],
                  origin: str) -> None:
        """Report and audit the fixes that were stored (only those)."""
        for fix_id in fix_ids:
            report.imported.append({"pattern_id": pattern_id, "fix_id": fix_id})
            if self.audit is not None:
                self.audit.append("pattern.import", pattern_id,
                                  {"fix_id": fix_id, "from": origin})

    @staticmethod
    def _differs(clean: dict[str, Any], fix: dict[str, Any], mine: Any, key: str,
                 held: _Held) -> dict[str, str] | None:
        """A conflict when the pattern held here has the pack's id with other rules, or has
        none of its fixes as the pack's ``fix``; None: the same pattern and fix."""
        if mine.id == clean["id"] and mine.detection != key:
            what = "a seed" if mine.source == "seed" else "a pattern"
            return {"pattern_id": clean["id"], "held": mine.id,
                    "why": f"the same pattern id is held here ({what}) with a different "
                           "detection; not merged: give the pack's pattern an id of its own"}
        if held.has_fix(mine, fix):
            return None
        served = mine.fixes[0][0] if mine.fixes else "none"
        return {"pattern_id": clean["id"], "held": mine.id,
                "why": f"the same detection is held here by {mine.id} with a different fix "
                       f"({served}); not merged: compare them and teach the better one with "
                       "heal learn"}
