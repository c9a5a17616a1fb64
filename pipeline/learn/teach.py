"""The one path every lesson takes (``heal learn``, ``heal issues review``, the hooks'
``on_learn_phase_complete``, agent transcripts, packs): a DRAFT pattern and fix in PostgreSQL
with provenance, detected by the error's fine fingerprint and by a rule derived from its
normalized headline (or the person's ``--regex``).

Nothing taught is applied on its own: the fix starts DRAFT, the validate stage verifies it
before it is offered, and only the lifecycle (verified successes) graduates it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from pipeline.console import visible
from pipeline.errors import ConfigError, UsageError
from pipeline.fingerprint.model import Fingerprint
from pipeline.guardrails.actor import who_am_i
from pipeline.learn.detection import (
    Kept,
    bounded,
    check_regex,
    class_prefix,
    compile_rule,
    derive_keeping,
    named_values,
    says_enough,
)
from pipeline.learn.fixes import FixDraft, check_stays_inside
from pipeline.learn.source import TaughtError
from pipeline.lookup.catalog import parse_pattern
from pipeline.lookup.taught import TAUGHT_PRIORITY
from pipeline.model import Category

CATEGORIES = tuple(c.value for c in Category)
#: lessons mined, not given by a person: mined again (a history or a transcript read again),
#: a fix they knew already is not made the served one again over what a person taught since
MINED_SOURCES = ("heal learn --history", "transcript")


@dataclass(frozen=True)
class Lesson:
    error: TaughtError
    fix: FixDraft
    category: str = Category.MODERATE.value
    name: str = ""
    regex: str | None = None
    reason: str = ""
    confirmed: bool = False  # --yes: needed (with a reason) for SAFE
    #: --category was given: a fix taught again takes it (else it keeps the category it has)
    category_given: bool = False
    source: str = "heal learn"  # what taught it: heal learn, review, hook, transcript, pack
    who: str = ""


@dataclass(frozen=True)
class Taught:
    pattern_id: str
    fix_id: str
    kind: str
    category: str
    regex: str | None  # None: detected by fingerprint only (see ``notes``)
    fingerprints: tuple[str, ...]
    new_fix: bool
    provenance: dict[str, Any]
    notes: tuple[str, ...] = field(default_factory=tuple)
    state: str = "DRAFT"  # the fix's: a fix taught again keeps its lifecycle state
    pattern_state: str = "DRAFT"

    def as_dict(self) -> dict[str, Any]:
        return {"pattern_id": self.pattern_id, "fix_id": self.fix_id, "kind": self.kind,
                "category": self.category, "state": self.state,
                "pattern_state": self.pattern_state, "regex": self.regex,
                "fingerprints": list(self.fingerprints), "new_fix": self.new_fix,
                "provenance": self.provenance, "notes": list(self.notes)}


def _hash(value: Any, n: int) -> str:
    data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(data).hexdigest()[:n]


#: the namespace of the patterns and fixes heal derives from a lesson (the error's
#: fingerprint, the fix's kind and template); a pack may carry them (an export does) but
#: never name a fix there that heal would not derive itself
LEARNED = "learned."


def learned_fix_id(pattern_id: str, kind: str, template: Any) -> str:
    """The id heal gives a taught fix: its pattern's id, its kind and a hash of its template,
    so the same fix taught again is the same row."""
    return f"{pattern_id}.{kind}_{_hash(template, 8)}"


def _category(lesson: Lesson) -> str:
    category = lesson.category.upper()
    if category not in CATEGORIES:
        raise UsageError(f"--category {lesson.category!r}: one of {', '.join(CATEGORIES)}")
    if category == Category.SAFE.value and not (lesson.confirmed and lesson.reason.strip()):
        raise UsageError("--category SAFE lets the fix run without a human once it graduates; "
                         "confirm with --yes and say why with --reason 'TEXT'")
    return Category.RISKY.value if lesson.fix.kind == "escalate" else category


@dataclass(frozen=True)
class Headline:
    """What a rule may be derived from: ``text`` (a normalized headline, or its message),
    with ``prefix`` (a regex) before it and word boundaries when ``bounded``."""

    text: str
    prefix: str = ""
    bounded: bool = False

    def rule(self, regex: str) -> str:
        if not self.bounded:
            return regex
        return self.prefix + bounded(regex, self.text, start=not self.prefix)


def _rule(lesson: Lesson, headlines: tuple[Headline, ...],
          notes: list[str]) -> tuple[str | None, bool]:
    """The lesson's detection rule, and whether it alone decides where the lesson answers
    (a person's ``--regex``, or a derived rule that kept a value literal: its fingerprint
    mapping masks that value, so it must not widen the rule). The rule is the person's
    ``--regex``, else the first of ``headlines`` (see :func:`_headlines`) whose derived rule
    matches the raw text."""
    text = lesson.error.text
    if lesson.regex is not None:
        regex = check_regex(lesson.regex)
        if compile_rule(regex).search(text) is None:
            raise UsageError(f"--regex {regex!r} does not match the error it is taught from; "
                             "a rule must at least recognize its own example")
        return regex, True
    derived: tuple[str, list[Kept]] | None = None
    refused: list[UsageError] = []
    words, values = fix_text(lesson.fix), fix_values(lesson.fix)
    for headline in headlines:
        try:
            regex, kept = derive_keeping(headline.text, text, words, values)
            regex = headline.rule(regex)
        except UsageError as exc:
            refused.append(exc)
            continue
        if compile_rule(regex).search(text) is not None:
            derived = (regex, kept)
            break
    if derived is None and len(refused) == len(headlines):
        notes.append(f"no rule derived ({refused[0]}); detected by fingerprint only")
        return None, False
    if derived is None:
        notes.append("the derived rule does not match the raw text (its headline was "
                     "reassembled, or its message alone says too little to be a rule: it "
                     "would answer unrelated errors); detected by fingerprint only: give one "
                     "with --regex")
        return None, False
    regex, kept = derived
    named = [k.value for k in kept if k.named]
    if named:
        shown = ", ".join(visible(repr(v)) for v in named)
        notes.append(f"kept {shown} literal in the rule: the fix names it, so the lesson "
                     "covers this value only (errors naming another value keep their own "
                     "answer); give --regex to cover more")
    others = [k for k in kept if not k.named]
    if others:
        shown = ", ".join(visible(repr(k.value)) for k in others)
        given = ", ".join(visible(repr(v)) for v in others[0].others)
        notes.append(f"kept {shown} literal in the rule: the fix names {given}, which is not "
                     "the error's value, so it was taught for this error only and the lesson "
                     "covers this value only (errors naming another value keep their own "
                     "answer); if the fix is right for every such error, teach it again with "
                     "--regex matching them all")
    return regex, bool(kept)


def _headlines(fp: Fingerprint) -> tuple[Headline, ...]:
    """What a rule may be derived from: the normalized headline; then, when it leads with
    the error's class, the message alone if it says enough on its own (:func:`says_enough`:
    a rule of ``failed`` or ``code 1`` would answer unrelated errors everywhere), else the
    message after the class in any case. A log line's level is written in one case in the
    headline (``error: ...`` and ``npm error ...`` read ``ERROR: ...``), and a rule of that
    spelling would never match the raw text it was taught from."""
    error_type = fp.extraction.error_type if fp.extraction is not None else ""
    prefix = f"{error_type}: " if error_type else ""
    headline = fp.normalized
    message = headline[len(prefix):]
    if not (prefix and headline.startswith(prefix) and message.strip()):
        return (Headline(headline),)
    if says_enough(message):
        return (Headline(headline), Headline(message, bounded=True))
    return (Headline(headline), Headline(message, class_prefix(error_type), bounded=True))


def _served_notes(lesson: Lesson, category: str, regex: str | None) -> list[str]:
    """What will keep the lookup from serving this lesson for its own error, said when it is
    taught rather than found out later: a seed rule matching an error the lesson detects by
    fingerprint only (rules are tried before fingerprints), and a SAFE/MODERATE fix for an
    error naming a logic bug (the guard refuses it; the seeds' answer is served instead)."""
    from pipeline.lookup.catalog import load_catalog
    from pipeline.lookup.guard import logic_bug

    text = lesson.error.text
    notes = []
    if regex is None:
        try:
            seed = load_catalog().detect(text)
        except ConfigError:
            seed = None
        if seed is not None:
            notes.append(f"the seed rule of {seed[0].id} matches this error, and rules are "
                         "tried before fingerprints: this lesson is not served for it until "
                         "it has a rule of its own; give one with --regex")
    bug = logic_bug(text) if lesson.fix.kind != "escalate" else None
    if bug is not None and category in (Category.SAFE.value, Category.MODERATE.value):
        notes.append(f"the error names a logic bug ({bug}): heal never serves a SAFE or "
                     f"MODERATE fix for one, so this {category} fix is refused when it "
                     "matches (the seeds' answer, if any, is served instead); teach it with "
                     "--category RISKY to have it suggested")
    return notes


def _argvs(fix: FixDraft) -> list[list[str]]:
    """The command lines a fix runs: a command's argv, each of a playbook's steps' argv."""
    if fix.kind == "command":
        return [[str(a) for a in fix.template.get("argv") or []]]
    if fix.kind == "playbook":
        steps = fix.template.get("steps") or {}
        return [[str(a) for a in step.get("argv") or []]
                for phase in steps.values() if isinstance(phase, list)
                for step in phase if isinstance(step, dict)]
    return []


def fix_text(fix: FixDraft) -> str:
    """The fix's own words a derived rule keeps literal when it masks them: a command's or a
    playbook's argv, a diff's changed lines (not its headers)."""
    if fix.kind == "diff":
        diff = str(fix.template.get("diff") or "")
        return "\n".join(line[1:] for line in diff.splitlines()
                         if line[:1] in ("+", "-") and not line.startswith(("+++", "---")))
    return "\n".join(a for argv in _argvs(fix) for a in argv)


def fix_values(fix: FixDraft) -> list[str]:
    """The values a command or a playbook's commands name (``react-dom`` of ``npm install
    react-dom``; see :func:`named_values`); a diff names none this way (its changed lines are
    code, not arguments)."""
    return [v for argv in _argvs(fix) for v in named_values(argv)]


def draft_pattern(lesson: Lesson, now: dt.datetime | None = None) -> tuple[dict[str, Any],
                                                                         Taught]:
    """The pattern in the seeds' shape (validated by the seeds' own parser) and what will be
    reported about it. Raises UsageError (bad input) or ConfigError (an invalid fix)."""
    from pipeline.fingerprint import fingerprint_text
    from pipeline.fingerprint.status import EXIT_KIND, says_what_failed

    error = lesson.error
    if error.repo:  # every lesson (heal learn, reviews, hooks) acts inside its repository
        check_stays_inside(lesson.fix, Path(error.repo), f"the taught {lesson.fix.kind}")
    # as the fingerprint stage keyed the error (fingerprint_event): its exit code and signal
    fp = fingerprint_text(error.text, repo=error.repo, exit_code=error.exit_code,
                          signal=error.signal, command=error.command)
    fine = error.fine or fp.fine
    notes: list[str] = []
    category = _category(lesson)
    if lesson.regex is None and fp.extraction is not None and (
            fp.extraction.kind == EXIT_KIND
            # a queued sample without its status, keyed on it by the stage
            or (error.fine and error.fine != fp.fine and not says_what_failed(fp.extraction))):
        # no line of it says what failed: a rule over its ordinary lines would match any
        # output holding them; the fingerprint (how it ended) is what recognizes it
        regex, decides = None, False
        notes.append(f"no line of the error says what failed (keyed on {fp.normalized!r}); "
                     "detected by fingerprint only: give one with --regex")
    else:
        regex, decides = _rule(lesson, _headlines(fp), notes)
    notes.extend(_served_notes(lesson, category, regex))
    pid = f"{LEARNED}h{fine.split(':', 1)[-1].lower()[:12]}"
    fix_id = learned_fix_id(pid, lesson.fix.kind, lesson.fix.template)
    when = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    provenance = {"who": lesson.who or who_am_i(), "when": when, "source": lesson.source,
                  "error_id": error.error_id, "fine": fine, "coarse": error.coarse or fp.coarse,
                  "repo": error.repo, "error_was": error.why, "how": lesson.fix.kind,
                  **({"reason": lesson.reason} if lesson.reason else {}), **lesson.fix.origin}
    headline = fp.normalized.strip()
    raw = {
        "id": pid, "name": (lesson.name or headline or pid)[:120], "category": category,
        "priority": TAUGHT_PRIORITY,
        "description": f"taught by {provenance['who']} ({lesson.source}) from error "
                       f"{error.error_id}: {headline[:200]}",
        # a rule that decides says so (``decides``): the lookup then answers the lesson only
        # where it matches, not wherever the fingerprint does
        "detect": [{"regex": regex, **({"decides": True} if decides else {})}] if regex else [],
        "params": {},
        "examples": [error.text[-2000:]],
        "fix": lesson.fix.as_fix(fix_id, category),
    }
    try:
        parse_pattern(raw)
    except ConfigError as exc:
        raise UsageError(f"the taught fix is not valid: {exc}") from exc
    taught = Taught(pid, fix_id, lesson.fix.kind, category, regex, (fine,), True, provenance,
                    tuple(notes))
    return raw, taught


class Teacher:
    """Stores lessons: PostgreSQL (``storage.learned``), the audit log, the local cache."""

    def __init__(self, db: Any, audit: Any = None, cache: Any = None) -> None:
        self.db = db
        self.audit = audit
        self.cache = cache

    def teach(self, lesson: Lesson) -> Taught:
        """Raises UsageError (bad input), AuditError (no room for its record: nothing
        stored), DatabaseUnavailable / QueryError."""
        from storage.learned import LearnedRepository, detection_key

        raw, taught = draft_pattern(lesson)
        fine = taught.fingerprints[0]
        # audited once stored (the record names what was kept): on a full HEAL_HOME nothing
        # is stored
        ensure_room = getattr(self.audit, "ensure_room", None)
        if ensure_room is not None:
            ensure_room()
        saved = LearnedRepository(self.db).save(
            raw, source="learned", provenance=taught.provenance,
            fingerprints=[(fine, "fine")], issue=fine, rule_given=lesson.regex is not None,
            name_given=bool(lesson.name),
            serve_again=lesson.source not in MINED_SOURCES,
            category_given=lesson.category_given)
        regex, notes = taught.regex, list(taught.notes)
        category = saved.fix_category or taught.category
        if category != taught.category:
            how = ("a lesson without --category does not change it; give --category to "
                   "change it" if not lesson.category_given else
                   "a lesson mined again does not change it")
            notes.append(f"kept the fix's category {category} ({how})")
        if detection_key(saved.detection) != detection_key(raw["detect"]):
            # the rule a person gave earlier with --regex beats the one derived now
            regex = next((str(d["regex"]) for d in saved.detection if "regex" in d), None)
            notes = [n for n in notes if "fingerprint only" not in n]
            notes.append("kept the detection rule given earlier with --regex (a lesson "
                         "without --regex does not replace it; give --regex to change it)")
        if saved.name and saved.name != raw["name"]:
            # the name a person gave earlier with --name beats the one derived now
            notes.append(f"kept the name given earlier with --name ({visible(saved.name)}; a "
                         "lesson without --name does not replace it; give --name to change "
                         "it)")
        if not saved.new_fix:
            again = ("and is the one served again" if lesson.source not in MINED_SOURCES
                     else "and keeps its place among the pattern's fixes (a mined lesson "
                          "does not make it the one served again)")
            notes.append(f"this fix was taught before: it keeps its state ({saved.fix_state}) "
                         f"and statistics, {again}")
        if self.cache is not None:
            # this machine's tier 1 must not keep answering with what it knew before
            self.cache.replace_fingerprints([(fine, "fine", taught.pattern_id)])
        if self.audit is not None:
            self.audit.append("pattern.learn", taught.pattern_id, {
                "fix_id": taught.fix_id, "kind": taught.kind, "category": category,
                "regex": regex, **taught.provenance})
        return Taught(**{**taught.__dict__, "new_fix": saved.new_fix, "regex": regex,
                         "category": category,
                         "notes": tuple(notes), "state": saved.fix_state,
                         "pattern_state": saved.pattern_state})
