"""Packs: what one installation learned, shared with another as versioned YAML.

A pack is the seeds' file format (``patterns:`` in the seeds' shape) plus a header
(``heal_pack: 1``, when and by whom it was made) and, per pattern, ``stats`` (its fix's
verified outcomes where it came from) and ``provenance``. A seed file is a pack without the
extras, so ``heal import seeds/net.yaml`` goes through the same code.

Importing never trusts the other installation's verdicts: every imported fix starts DRAFT
here, whatever its state was there, and is verified before it is offered. A pattern whose
detection is already known here with a different fix is a conflict: reported, never merged.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from pipeline.errors import ConfigError, UsageError
from pipeline.lookup.catalog import parse_pattern
from pipeline.lookup.taught import raw_pattern
from pipeline.spelling import spelled

PACK_VERSION = 1
_FIX_META = ("id", "kind", "category", "state", "title", "explanation")


def _template(fix: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fix.items() if k not in _FIX_META}


def _same(a: Any, b: Any) -> bool:
    return orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(
        b, option=orjson.OPT_SORT_KEYS)


def build_pack(rows: list[dict[str, Any]], stats: dict[str, dict[str, Any]],
               who: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """The pack of the taught patterns ``rows`` (``LearnedRepository.taught``)."""
    patterns = []
    for row in rows:
        raw = raw_pattern(row)
        raw["stats"] = stats.get(row["fix_id"], {"successes": 0, "failures": 0, "reverts": 0})
        raw["provenance"] = {**(row.get("provenance") or {}), "source": row["source"]}
        patterns.append(raw)
    return {"heal_pack": PACK_VERSION,
            "created": (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"),
            "created_by": who, "patterns": patterns}


def write_pack(path: Path, pack: dict[str, Any]) -> None:
    try:
        path.write_text(yaml.safe_dump(pack, sort_keys=False, allow_unicode=True, width=100),
                        encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--pack {path}: cannot write it: {exc.strerror or exc}") from exc


def read_pack(path: Path) -> dict[str, Any]:
    """A pack (or a seed file) with every pattern validated by the seeds' parser.

    Raises:
        UsageError: unreadable, not YAML, a version this heal does not know, or an invalid
            pattern (named, with the field to change).
    """
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("patterns"), list):
        raise UsageError(f"{path}: a pack is a mapping with a 'patterns:' list (the seeds' "
                         "format; heal export --pack writes one)")
    version = doc.get("heal_pack", PACK_VERSION)
    if isinstance(version, bool) or version != PACK_VERSION:  # (True == 1 in Python)
        raise UsageError(f"{path}: pack version {spelled(version)} (heal_pack); this heal "
                         f"reads version {PACK_VERSION}")
    for index, raw in enumerate(doc["patterns"]):
        if not isinstance(raw, dict):
            raise UsageError(f"{path}: pattern {index} is not a mapping")
        try:
            parse_pattern({k: v for k, v in raw.items() if k not in ("stats", "provenance")})
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


class PackImporter:
    """Imports a pack through :class:`storage.learned.LearnedRepository` (one pattern per
    transaction), auditing each import."""

    def __init__(self, db: Any, audit: Any = None) -> None:
        from storage.learned import LearnedRepository

        self.repo = LearnedRepository(db)
        self.audit = audit

    def run(self, doc: dict[str, Any], origin: str, who: str) -> ImportReport:
        from storage.learned import detection_key

        report = ImportReport()
        held = self.repo.detections()
        by_id = {pid: key for key, (pid, _fix) in held.items()}
        when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        for raw in doc["patterns"]:
            fix = dict(raw["fix"])
            rules = raw.get("detect") or []
            key = detection_key(rules) if rules else f"id:{raw['id']}"
            mine = held.get(key) or ((raw["id"], "") if raw["id"] in by_id else None)
            if mine is not None:
                self._known_or_conflict(raw, fix, mine, key, by_id, report)
                continue
            provenance = {**(raw.get("provenance") or {}), "imported_from": origin,
                          "imported_by": who, "imported_at": when,
                          "stats_elsewhere": raw.get("stats") or {},
                          "state_elsewhere": fix.get("state", "ACTIVE")}
            clean = parse_pattern({k: v for k, v in raw.items()
                                   if k not in ("stats", "provenance")}).to_dict()
            clean["fix"]["state"] = "DRAFT"  # verified here before it is ever offered
            fine = str((raw.get("provenance") or {}).get("fine") or "")
            saved = self.repo.save(clean, source="pack", provenance=provenance,
                                   fingerprints=[(fine, "fine")] if fine else [])
            report.imported.append({"pattern_id": saved.pattern_id, "fix_id": saved.fix_id})
            held[key] = (saved.pattern_id, saved.fix_id)
            if self.audit is not None:
                self.audit.append("pattern.import", saved.pattern_id,
                                  {"fix_id": saved.fix_id, "from": origin})
        return report

    def _known_or_conflict(self, raw: dict[str, Any], fix: dict[str, Any],
                           mine: tuple[str, str], key: str, by_id: dict[str, str],
                           report: ImportReport) -> None:
        pattern_id, fix_id = mine
        if raw["id"] in by_id and by_id[raw["id"]] != key:
            report.conflicts.append({
                "pattern_id": raw["id"], "held": raw["id"],
                "why": "the same pattern id is held here with a different detection"})
            return
        template = self.repo.fix_template(fix_id) if fix_id else None
        theirs = {"kind": fix.get("kind"), **_template(fix)}
        if template is not None and _same(template, theirs):
            report.known.append(raw["id"])
            return
        report.conflicts.append({
            "pattern_id": raw["id"], "held": pattern_id,
            "why": f"the same detection is held here by {pattern_id} with a different fix "
                   f"({fix_id or 'none'}); not merged: compare them and teach the better one "
                   "with heal learn"})
