"""``heal explain FP``: every decision heal made about one fingerprint, gathered from the
stores of every stage (read through :class:`storage.reports.ReportStore`).

``FP`` may also be an error id (the id ``heal run`` prints): it is resolved to the fine
fingerprint it was recorded under (PostgreSQL, else the fingerprints stream), and an event
the pipeline dead-lettered is explained from its dead letter.

:func:`explain` returns a JSON-ready dict; :func:`render` turns it into one screen of text.
Raises :class:`NotFound` (exit 1) for a fingerprint nobody recorded and
:class:`~pipeline.errors.UsageError` (exit 2) for an ambiguous prefix.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import redis

from pipeline.config import Settings
from pipeline.errors import HealError, StreamUnavailable, UsageError
from pipeline.events import MAX_ID_LENGTH, CandidateEvent, FingerprintEvent, OutcomeEvent
from pipeline.fingerprint import fingerprint_text
from pipeline.fingerprint.explain import explain_grouping
from pipeline.lifecycle.flakiness import is_flaky
from pipeline.lifecycle.graduation import LifecyclePolicy, progress
from pipeline.lifecycle.posterior import Posterior
from pipeline.lookup.service import CAUSAL_MIN_CONFIDENCE
from pipeline.model import LifecycleState
from pipeline.operator.deadletters import ADVICE, read_dead, summary
from pipeline.operator.streams import newest_first_everywhere
from pipeline.replayid import replay_of
from storage.causal import CausalGraph
from storage.lifecycle import LifecycleStore
from storage.reports import ReportStore

T = TypeVar("T")
R = TypeVar("R")

#: outcome events read back (newest first) for the detail PostgreSQL does not keep
OUTCOME_SCAN_LIMIT = 20_000

#: the newest outcome event of any of these fine fingerprints, or None
OutcomeReader = Callable[[list[str]], dict[str, Any] | None]


def outcome_reader(client: redis.Redis, settings: Settings,
                   limit: int = OUTCOME_SCAN_LIMIT) -> OutcomeReader:
    """Reads the outcomes stream for the newest outcome of a fingerprint: its status, detail
    (why an escalation escalated) and the error text. Raises StreamUnavailable."""

    def read(fines: list[str]) -> dict[str, Any] | None:
        wanted = set(fines)
        for ev in newest_first_everywhere(client, settings, "outcomes", OutcomeEvent.decode,
                                         limit):
            if ev.fine in wanted:
                return {"error_id": ev.error_id, "status": ev.status, "detail": ev.detail,
                        "fix_id": ev.fix_id, "ts": ev.ts, "text": ev.error.text}
        return None

    return read


#: the newest lookup answer (the candidate event's ``match``) of any of these fine fingerprints
CandidateReader = Callable[[list[str]], dict[str, Any] | None]
#: how an error's command ended, as its event carried it: (exit code, signal, argv)
Status = tuple[int | None, str, tuple[str, ...]]


def candidate_reader(client: redis.Redis, settings: Settings,
                     limit: int = OUTCOME_SCAN_LIMIT) -> CandidateReader:
    """Reads the candidates stream for the newest lookup answer of a fingerprint: why nothing
    matched (the nearest pattern below the threshold), without loading an embedding model.
    Raises StreamUnavailable."""

    def read(fines: list[str]) -> dict[str, Any] | None:
        wanted = set(fines)
        for ev in newest_first_everywhere(client, settings, "candidates", CandidateEvent.decode,
                                         limit):
            if ev.fine in wanted:
                return {"error_id": ev.error_id, "ts": ev.ts, **ev.match}
        return None

    return read


def fingerprinted_reader(client: redis.Redis, settings: Settings,
                         limit: int = OUTCOME_SCAN_LIMIT
                         ) -> Callable[[str], FingerprintEvent | None]:
    """The fingerprint stage's event of an error id (None when not in the newest ``limit``
    entries of the fingerprints stream); each error id is looked up once. Raises
    StreamUnavailable."""
    found: dict[str, FingerprintEvent | None] = {}

    def read(error_id: str) -> FingerprintEvent | None:
        if error_id not in found:
            found[error_id] = next(
                (ev for ev in newest_first_everywhere(client, settings, "fingerprints",
                                                      FingerprintEvent.decode, limit)
                 if ev.error_id == error_id and ev.fine), None)
        return found[error_id]

    return read


def dead_reader(client: redis.Redis, settings: Settings
                ) -> Callable[[str], list[dict[str, Any]]]:
    """The dead letters of an error id, newest first (bounded). Raises StreamUnavailable."""
    return lambda error_id: read_dead(client, settings, limit=20, error_id=error_id)


@dataclass(frozen=True)
class StreamReaders:
    """What explain reads from Redis (each None when Redis is not at hand)."""

    outcome: OutcomeReader | None = None
    candidate: CandidateReader | None = None
    fine_of_error: Callable[[str], str] | None = None
    #: the text an error id arrived with, and its repository ('' when not in the stream)
    text_of_error: Callable[[str], tuple[str, str]] | None = None
    #: how an error id's command ended (its exit code and tags.signal; (None, '') when not
    #: in the stream): part of the key of a text with no line saying what failed
    status_of_error: Callable[[str], Status] | None = None
    #: the dead letters of an error id; None from it when they could not be read
    dead_of_error: Callable[[str], list[dict[str, Any]] | None] | None = None


def guarded(read: Callable[[T], R], empty: R, problems: list[str]) -> Callable[[T], R]:
    """``read`` that notes a failure in ``problems`` and gives ``empty`` instead of raising:
    PostgreSQL still tells most of the story."""
    def guarded(arg: T) -> R:
        try:
            return read(arg)
        except HealError as exc:
            problems.append(f"details from the streams not shown: {exc}")
            return empty
        except redis.RedisError as exc:  # (a refusal of its ACL is no outage: say which)
            how = ("refused" if isinstance(exc, redis.exceptions.NoPermissionError)
                   else "unreachable")
            problems.append(f"details from the streams not shown: Redis {how}: {exc}")
            return empty

    return guarded


def stream_readers(client: redis.Redis | None, settings: Settings,
                   problems: list[str]) -> StreamReaders:
    """Every reader of :class:`StreamReaders` on ``client`` (none without one), each noting
    a failure in ``problems`` instead of raising: what ``heal explain`` and
    ``GET /api/explain`` read.

    Once one read finds Redis unreachable (it died after the client connected: a dashboard's
    client outlives the server it connected to) the others are not tried: the outage is
    named once, not once per stream, and no read waits for a connection again. A refusal
    of one stream (ACL) leaves the others to be tried."""
    if client is None:
        return StreamReaders()
    down: list[bool] = []

    def unless_down(read: Callable[[T], R], empty: R) -> Callable[[T], R]:
        def call(arg: T) -> R:
            if down:
                return empty
            try:
                return read(arg)
            except (StreamUnavailable, redis.ConnectionError, redis.TimeoutError):
                down.append(True)
                raise

        return guarded(call, empty, problems)

    event = fingerprinted_reader(client, settings)

    def fine_of(error_id: str) -> str:
        ev = event(error_id)
        return ev.fine if ev is not None else ""

    def text_of(error_id: str) -> tuple[str, str]:
        ev = event(error_id)
        return (ev.error.text, ev.error.repo.path or "") if ev is not None else ("", "")

    def status_of(error_id: str) -> Status:
        ev = event(error_id)
        if ev is None:
            return None, "", ()
        signal = ev.error.tags.get("signal")
        return (ev.error.exit_code, signal if isinstance(signal, str) else "",
                tuple(ev.error.command))

    return StreamReaders(
        outcome=unless_down(outcome_reader(client, settings), None),
        candidate=unless_down(candidate_reader(client, settings), None),
        fine_of_error=unless_down(fine_of, ""),
        text_of_error=unless_down(text_of, ("", "")),
        status_of_error=unless_down(status_of, (None, "", ())),
        dead_of_error=unless_down(cast(Callable[[str], list[dict[str, Any]] | None],
                                       dead_reader(client, settings)), None))


class NotFound(HealError):
    """Nothing is recorded about the fingerprint (exit 1: the lookup found nothing)."""


#: characters of a name echoed back in a message
SHOWN_CHARS = 80


def shown(text: str) -> str:
    """``text`` quoted for a message, cut to a bounded head that says it was cut."""
    if len(text) <= SHOWN_CHARS:
        return repr(text)
    return f"{text[:SHOWN_CHARS]!r}... (cut: {len(text)} characters)"


def _not_found(text: str, dead_unread: bool = False) -> NotFound:
    """NotFound for ``text``; ``dead_unread``: the dead letters, where an error id the
    pipeline gave up on is found, could not be read (Redis down or refusing), so none is
    claimed absent."""
    if dead_unread:
        return NotFound(f"no record of fingerprint or error id {shown(text)} in PostgreSQL, "
                        "and the dead letters could not be read (Redis: see the warning), so "
                        "it may be a dead letter: run heal explain again once they can be read "
                        "(heal issues list --by-fingerprint shows the known fingerprints)")
    return NotFound(f"no record of fingerprint or error id {shown(text)}: no fingerprint, "
                    "recorded error id or dead letter of that name (see heal issues list "
                    "--by-fingerprint for known fingerprints, heal explain --dead for dead "
                    "letters)")


def resolve(store: ReportStore, text: str) -> tuple[str, str]:
    """The one (fingerprint, level) that ``text`` names (whole or a unique prefix)."""
    text = text.strip()
    if not text:
        raise UsageError("heal explain: give a fingerprint (fp-v8:...), a unique prefix of one "
                         "or an error id")
    found = store.resolve(text)
    if not found:
        raise _not_found(text)
    if len(found) > 1:
        names = "\n  ".join(f"{fp} ({level})" for fp, level in found)
        raise UsageError(f"{shown(text)} matches {len(found)} fingerprints; give more "
                         f"characters:\n  {names}")
    return found[0]


def _by_error_id(store: ReportStore, text: str, streams: StreamReaders
                 ) -> tuple[str, list[dict[str, Any]] | None]:
    """(the fine fingerprint of error id ``text`` or '', its dead letters: None when they
    could not be read)."""
    if len(text) > MAX_ID_LENGTH or text.startswith("fp-"):
        return "", []
    fine = store.fingerprint_of_error(text)
    if not fine and streams.fine_of_error is not None:
        fine = streams.fine_of_error(text)
    dead = streams.dead_of_error(text) if streams.dead_of_error is not None else None
    return fine, dead


def _dead_story(error_id: str, dead: list[dict[str, Any]]) -> dict[str, Any]:
    """The story of an error id the pipeline only dead-lettered."""
    return {"fingerprint": None, "level": "dead-lettered", "error_id": error_id,
            "why": summary(dead[0]), "advice": ADVICE, "dead_letters": dead}


def _stat_posterior(stat: dict[str, Any]) -> Posterior:
    return Posterior(int(stat["successes"]), int(stat["failures"]) + int(stat["reverts"]))


def _posterior(stat: dict[str, Any]) -> dict[str, Any]:
    p = _stat_posterior(stat)
    return {"mean": round(p.mean, 3), "lower95": round(p.lower(), 3),
            "upper95": round(p.upper(), 3), "attempts": p.attempts}


def lifecycle_in_force(settings: Settings) -> LifecyclePolicy:
    """The lifecycle thresholds the lifecycle stage uses: the operator configuration's
    ``[lifecycle]`` (consumers/lifecycle.py), or the defaults when it cannot be read."""
    from pipeline.trust.operator import operator_config

    try:
        policy: LifecyclePolicy = operator_config(settings).limits.lifecycle()
    except HealError:
        return LifecyclePolicy()
    return policy


def _graduation(stat: dict[str, Any], policy: LifecyclePolicy) -> str:
    """What the pair needs for its next lifecycle step (pipeline.lifecycle.graduation)."""
    try:
        state = LifecycleState(str(stat.get("state") or ""))
    except ValueError:  # a state written by hand: nothing to say
        return ""
    return progress(state, _stat_posterior(stat), policy)


def _sample(issues: list[dict[str, Any]], attempts: list[dict[str, Any]],
            last: dict[str, Any] | None) -> tuple[str, str, str]:
    """The group's sample: (its text, the error id it is the text of ('' for the issue
    queue's sample, which names none), its repository ('' when not recorded))."""
    for a in attempts:
        if a.get("error_text"):
            return str(a["error_text"]), str(a.get("error_id") or ""), str(a.get("repo") or "")
    if last and last.get("text"):
        return str(last["text"]), str(last.get("error_id") or ""), ""
    for i in issues:
        if i.get("sample"):
            return str(i["sample"]), "", ""
    return "", "", ""


def _own_text(error_id: str, attempts: list[dict[str, Any]], last: dict[str, Any] | None,
              streams: StreamReaders) -> tuple[str, str]:
    """(the text error ``error_id`` arrived with, its repository); ('', '') when neither an
    attempt, the newest outcome nor the fingerprints stream still holds it."""
    for a in attempts:
        if a.get("error_id") == error_id and a.get("error_text"):
            return str(a["error_text"]), str(a.get("repo") or "")
    if last and last.get("error_id") == error_id and last.get("text"):
        return str(last["text"]), ""
    if streams.text_of_error is not None:
        return streams.text_of_error(error_id)
    return "", ""


def _status(streams: StreamReaders, error_id: str) -> Status:
    """(exit code, signal, command) of error ``error_id``'s event, as far as the stream still
    holds it; (None, '', ()) without an id or a reader."""
    if not error_id or streams.status_of_error is None:
        return None, "", ()
    return streams.status_of_error(error_id)


def _normalization(sample: str, repo: str = "", recorded: str = "",
                   status: Status = (None, "", ())) -> dict[str, Any] | None:
    """How ``sample`` is fingerprinted, recomputed: the fingerprints, template and params,
    ``grouping`` (what the fine and coarse keys are made of:
    :func:`pipeline.fingerprint.explain.explain_grouping`) and ``hints`` (one sentence per
    thing normalization did). ``recomputed_matches``: whether the recomputed fine fingerprint
    is ``recorded`` (None without one: a coarse story, or a sample from another version).
    ``status``: (exit code, signal) of the sample's event when the stream still holds it, so
    a text keyed on how its command ended is recomputed as the stage keyed it."""
    if not sample:
        return None
    exit_code, signal, command = status
    fp = fingerprint_text(sample, repo, exit_code=exit_code, signal=signal, command=command)
    grouping = explain_grouping(sample, repo, exit_code, signal, command)
    return {"fine": fp.fine, "coarse": fp.coarse, "template": fp.template,
            "normalized": fp.normalized, "params": fp.params,
            "hints": list(grouping["steps"]), "grouping": grouping,
            "recomputed_matches": (fp.fine == recorded) if recorded else None}


def _copy(record: dict[str, Any]) -> str:
    """`` (replay of <id>)`` for a record of a replay copy: its original's story is told
    apart from what a replay did (``heal backfill --replay``)."""
    original = record.get("replay_of")
    return f" (replay of {original}, error {record['error_id']})" if original else ""


def _mark_copies(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for r in records:
        r["replay_of"] = replay_of(str(r.get("error_id", "")))
    return records


def _why(story: dict[str, Any]) -> str:
    """One sentence: what happened last and why (or why not) a fix was applied."""
    if any(c["ignored"] for c in story["controls"]):
        return "ignored by a person (heal ignore): no fix is looked up or applied"
    last = story.get("last_event")
    if last:
        return (f"last outcome {last['status']}{_copy(last)}: "
                f"{last['detail']}").rstrip(": ")
    latest = story["attempts"][0] if story["attempts"] else None
    if latest and latest.get("apply"):
        applied = latest["apply"]
        return (f"last attempt {applied['status']}{_copy(latest)}: "
                f"{applied['detail']}").rstrip(": ")
    if latest:
        return (f"last attempt decided {latest['decision']}{_copy(latest)}: "
                f"{latest['reason']}").rstrip(": ")
    if story["outcomes"]:
        last = story["outcomes"][0]
        return f"last outcome {last['status']}{_copy(last)} (no validated attempt recorded)"
    if story["issues"]:
        return "no known pattern matched: waiting in the issue queue (heal issues review)"
    return "seen, but no decision recorded yet"


def explain(store: ReportStore, text: str, read_outcome: OutcomeReader | None = None,
            streams: StreamReaders | None = None,
            problems: list[str] | None = None,
            lifecycle: LifecyclePolicy | None = None) -> dict[str, Any]:
    """Everything recorded about the fingerprint ``text`` names, or about the fingerprint of
    the error id ``text`` names (with the newest outcome event still in the outcomes stream
    when ``read_outcome`` is given). An error id known only as a dead letter gets the story
    of its dead letters (``level`` ``dead-lettered``, ``fingerprint`` None). What could not
    be read is named in ``problems`` (a record changed by hand is skipped, not fatal)."""
    streams = streams or StreamReaders(outcome=read_outcome)
    read_outcome = read_outcome or streams.outcome
    text = text.strip()
    error_id, dead = "", cast(list[dict[str, Any]], [])
    try:
        fp, level = resolve(store, text)
    except NotFound:
        fp, letters = _by_error_id(store, text, streams)
        if not fp and letters:
            return _dead_story(text, letters)
        if not fp:
            raise _not_found(text, dead_unread=letters is None) from None
        error_id, level, dead = text, "fine", letters or []
    fines = [fp] if level == "fine" else store.fines_of_coarse(fp) or [fp]
    lookup = store.lookup_path(fines)
    pattern_ids = sorted({p["pattern_id"] for p in lookup["paths"] + lookup["learned"]})
    stats = store.fix_stats(fines)
    for s in stats:
        s["posterior"] = _posterior(s)
        s["graduation"] = _graduation(s, lifecycle or LifecyclePolicy())
    attempts = _mark_copies(store.attempts(fines))
    issues = store.issues_for(fines)
    last = read_outcome(fines) if read_outcome else None
    sample, sample_of, repo = _sample(issues, attempts, last)
    own, own_repo = ("", "")
    if error_id and sample_of != error_id:  # the group's sample is another error's text
        own, own_repo = _own_text(error_id, attempts, last, streams)
    story: dict[str, Any] = {
        "fingerprint": fp, "level": level, "fines": fines,
        "sample": sample[-2000:], "sample_error_id": sample_of,
        "error_text": (own or (sample if sample_of == error_id else ""))[-2000:],
        "error_text_found": bool(error_id) and (bool(own) or sample_of == error_id),
        "normalization": _normalization(sample, repo, fp if level == "fine" else "",
                                        _status(streams, sample_of)),
        "error_normalization": (_normalization(own, own_repo, fp, _status(streams, error_id))
                                if own and own != sample else None),
        "lookup": lookup, "patterns": store.patterns_and_fixes(pattern_ids),
        "fix_stats": stats, "rankings": store.rankings(fines), "attempts": attempts,
        "outcomes": _mark_copies(store.outcomes(fines)),
        "transitions": store.transitions(fines),
        "breaker": store.breaker_trips(fines, problems=problems),
        "controls": store.controls([fp, *fines]), "issues": issues,
        "last_event": None if last is None else _mark_copies(
            [{k: v for k, v in last.items() if k != "text"}])[0],
        "error_id": error_id, "dead_letters": dead,
    }
    if not lookup["paths"] and not lookup["learned"] and streams.candidate is not None:
        lookup["miss_reason"] = _miss_reason(streams.candidate, fines)
    story["determinism"] = _determinism(store, fines)
    story["causal"] = _causal(store, [*fines, *pattern_ids])
    story["why"] = _current(story, _why(story))
    return story


def _miss_reason(read: CandidateReader, fines: list[str]) -> str:
    """Why the lookup matched nothing, as its newest candidate event says ('' when that event
    is no longer in the candidates stream: nothing is re-computed, explain loads no model)."""
    match = read(fines)
    if not match or match.get("pattern_id"):
        return ""
    return str(match.get("reason") or "")[:500]


#: a why that names a fix withheld in the state it had then (pipeline.validate.validator)
_WITHHELD = re.compile(r"fix (\S{1,300}) is (QUARANTINED|DEPRECATED)")


def _current(story: dict[str, Any], why: str) -> str:
    """``why`` told in the present: a last outcome that names a fix QUARANTINED (or
    DEPRECATED) when its fix has moved on since (``heal unquarantine``) says the state now."""
    withheld = _WITHHELD.search(why[:2000])
    if withheld is None:
        return why
    fix_id, then = withheld.groups()
    now = next((p["state"] for p in story["patterns"] if p["fix_id"] == fix_id), None)
    if now is None or now == then:
        return why
    head = why.split("; `heal unquarantine", 1)[0]
    return (f"{head} (then); fix {fix_id} is {now} now, so the next occurrence is validated "
            "again")


def _causal(store: ReportStore, nodes: list[str]) -> list[dict[str, Any]]:
    """The tier-3 walk from these nodes: each known root cause with the chain to it."""
    causes = CausalGraph(store.db).causes(nodes, CAUSAL_MIN_CONFIDENCE)
    return [{"cause": c.node, "confidence": round(c.confidence, 3), "path": list(c.path)}
            for c in causes[:5]]


def _determinism(store: ReportStore, fines: list[str]) -> dict[str, Any]:
    """The lowest determinism score among the fine fingerprints (0 flaky .. 1 deterministic)."""
    lifecycle = LifecycleStore(store.db)
    scores = {fine: lifecycle.determinism(fine) for fine in fines[:50]}
    score = min(scores.values(), default=1.0)
    # what the lookup acts on (LifecycleStore.flaky_fingerprints): a low score alone (irregular
    # occurrences) gets no retry playbook until a failure has passed on a plain re-run
    low = [fine for fine, value in scores.items() if is_flaky(value)]
    flaky = bool(low) and lifecycle.has_flaky_outcome(low)
    return {"score": score, "flaky": flaky, "by_fingerprint": scores}
