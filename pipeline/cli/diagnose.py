"""``heal diagnose [FILE] [--json]``: what heal thinks of one error text, without publishing it.

Fingerprint, extracted parameters, lookup tier and score, pattern id, fix and its category,
and whether the rollout mode would apply it. Uses PostgreSQL when reachable, else answers
from the local cache (said in ``reason``). The text is read as the pipeline reads a published
one (:func:`as_published`: redacted, and cut to 64 KiB, head and tail), so both give the same
answer.

``--exit-code N`` / ``--signal NAME``: how the command ended, as ``heal run`` publishes it
(a text with no line saying what failed is keyed on it; without them, on the text alone);
``--command CMD``: the command line that ran, whose program that key names as the stage does
(without it the key holds no program, and matches only what was keyed without one).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from pipeline.config import Settings
from pipeline.console import dump_json, visible
from pipeline.errors import DatabaseUnavailable, UsageError
from pipeline.lookup.result import LookupResult
from pipeline.model import Category, FixKind, LifecycleState, Mode


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "diagnose", help="what heal thinks of one error text (not published)", description=__doc__)
    parser.add_argument("file", nargs="?", default="-", help="error text file (default: stdin)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--mode", choices=[m.value for m in Mode],
                        help="rollout mode to judge would_apply (default: $HEAL_MODE or suggest)")
    parser.add_argument("--repo", default="", help="repository root, for project-relative paths")
    parser.add_argument("--offline", action="store_true",
                        help="do not contact PostgreSQL; answer from the local cache and seeds")
    parser.add_argument("--no-semantic", action="store_true",
                        help="skip tier 2 (no embedding model load)")
    parser.add_argument("--exit-code", type=int, default=None, metavar="N",
                        help="the status the command exited with (139 for a segfault): keys "
                             "a text with no line saying what failed, as heal run's event")
    parser.add_argument("--signal", default="", metavar="NAME",
                        help="the signal that killed the command (SIGSEGV, SEGV or 11)")
    parser.add_argument("--command", default="", metavar="CMD",
                        help="the command line that ran ('./app --port 8080'): its program "
                             "is part of the key of a text keyed on --exit-code/--signal")
    parser.set_defaults(func=run)


def signal_arg(value: str) -> str:
    """``--signal``'s value as a signal name (``SIGSEGV``, ``segv`` and ``11`` alike).

    Raises: UsageError naming the accepted forms."""
    import signal

    value = value.strip()
    if not value:
        return ""
    try:
        if value.isdigit():
            return signal.Signals(int(value)).name
        name = value.upper()
        return signal.Signals[name if name.startswith("SIG") else f"SIG{name}"].name
    except (KeyError, ValueError):
        raise UsageError(f"--signal {value!r} is no signal: give its name or number "
                         "(SIGSEGV, SEGV or 11; `kill -l` lists them)") from None


def command_arg(value: str) -> list[str]:
    """``--command``'s value as the argv a shell would run.

    Raises: UsageError when it is no command line (an unclosed quote)."""
    import shlex

    try:
        return shlex.split(value)
    except ValueError as exc:
        raise UsageError(f"--command {value!r} is no command line ({exc}): quote it as a "
                         "shell would, e.g. --command './app --port 8080'") from None


def read_text(path: str) -> str:
    """Raises: UsageError when the file cannot be read or the text is empty."""
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not text.strip():
        raise UsageError("no error text given: pass a file or pipe the text on standard input")
    return text


def as_published(text: str, settings: Settings) -> tuple[str, int]:
    """``text`` as the fingerprint stage reads it once published (``ErrorEvent.decode`` of a
    raw event: secrets redacted, cut to ``settings.max_text_bytes``, head and tail kept) and
    the bytes the cut removed (0 when none). A 13.8 MB traceback was once diagnosed whole: a
    rule gave up on it (its regex budget) and the answer was tier 2, where the pipeline's
    64 KiB of it matched at tier 1."""
    from pipeline.events import ErrorEvent

    event = ErrorEvent.decode(orjson.dumps({"v": 1, "id": "diagnose", "text": text}),
                              settings.max_text_bytes)
    return event.text, int(event.tags.get("truncated_bytes") or 0)


def resolve_mode(flag: str | None) -> Mode:
    """Raises: UsageError for an unknown HEAL_MODE."""
    value = flag or os.environ.get("HEAL_MODE") or Mode.SUGGEST.value
    try:
        return Mode(value)
    except ValueError as exc:
        allowed = ", ".join(m.value for m in Mode)
        raise UsageError(f"HEAL_MODE={value!r} is not one of {allowed}") from exc


def would_apply(mode: Mode, fix: dict[str, Any] | None) -> tuple[bool, str]:
    """The default policy: observe/suggest never apply; auto-safe applies SAFE fixes;
    auto applies SAFE fixes and fixes that graduated to AUTOMATED. Escalations, quarantined
    and deprecated fixes never apply."""
    if fix is None:
        return False, "no fix to apply"
    if fix["kind"] == FixKind.ESCALATE.value:
        return False, "the fix is an escalation: a human has to act"
    if fix.get("state") in (LifecycleState.QUARANTINED.value, LifecycleState.DEPRECATED.value):
        return False, f"the fix is {fix['state']}"
    if mode in (Mode.OBSERVE, Mode.SUGGEST):
        return False, f"mode {mode.value} never applies on its own (heal apply {fix['id']})"
    if fix["category"] == Category.SAFE.value:
        return True, f"mode {mode.value} applies verified SAFE fixes"
    if mode is Mode.AUTO and fix.get("state") == LifecycleState.AUTOMATED.value:
        return True, "mode auto applies fixes that graduated to AUTOMATED"
    return False, f"mode {mode.value} does not apply {fix['category']} fixes in state " \
                  f"{fix.get('state')}"


def _open_db(settings: Settings, offline: bool, starting: Any = None) -> Any:
    if offline:
        return None
    from storage.engines import open_database

    if starting is not None:
        starting.wait()
        if isinstance(starting.error, DatabaseUnavailable):
            return None  # it just failed to start: answer from the cache, do not wait again
    try:
        return open_database(settings)
    except DatabaseUnavailable:
        return None


def diagnose(text: str, settings: Settings, mode: Mode, *, repo: str = "",
             offline: bool = False, semantic: bool = True, exit_code: int | None = None,
             signal: str = "", command: Sequence[str] = ()) -> dict[str, Any]:
    """The report (the JSON of ``heal diagnose --json``).

    PostgreSQL starts on a helper thread while this one fingerprints the text, reads the
    seeds and, when the text will need tier 2, loads the model: the command waits for the
    longer of the two, not for their sum."""
    starting = None
    if not offline:
        from storage.engines import start_database_soon

        starting = start_database_soon(settings)
    from pipeline.fingerprint import fingerprint_text
    from pipeline.lookup.setup import build_lookup, model_while_waiting

    text, truncated = as_published(text, settings)
    # keyed as the fingerprint stage keys the event (fingerprint_event): with the status
    # given, a text with no line saying what failed is keyed on how the command ended
    fp = fingerprint_text(text, repo=repo, exit_code=exit_code, signal=signal, command=command)
    embedder = (model_while_waiting(settings, text, fp.fine, fp.coarse, fp.normalized)
                if semantic else None)
    db = _open_db(settings, offline, starting)
    lookup = build_lookup(settings, db, semantic=semantic, embedder=embedder)
    try:
        result = lookup.lookup(error_id="diagnose", text=text, fine=fp.fine, coarse=fp.coarse,
                               headline=fp.normalized, fp_params=fp.params, record=False)
    finally:
        if db is not None:
            db.close()
    mode, capped = _operator_cap(settings, mode)
    out = report(fp.fine, fp.coarse, fp.version, result, mode, online=lookup.online,
                 truncated=truncated)
    if capped:
        out["reason"] += f"; {capped}"
    return out


def _operator_cap(settings: Settings, mode: Mode) -> tuple[Mode, str]:
    """``mode`` under the operator's ``trust.max_mode`` (the stages' ceiling, a refused
    operator file's observe included), and why it was lowered ("" when it was not)."""
    from pipeline.trust.operator import lower_mode, operator_config, refusal_note

    operator = operator_config(settings)
    capped = lower_mode(mode, operator.max_mode)
    if capped is mode:
        return mode, ""
    why = (refusal_note(operator) if operator.refused
           else f"the operator's trust.max_mode caps mode {mode.value} at {capped.value}")
    return capped, why


def report(fine: str, coarse: str, version: str, result: LookupResult, mode: Mode, *,
           online: bool, truncated: int = 0) -> dict[str, Any]:
    applies, why = would_apply(mode, result.fix)
    fix = None
    if result.fix is not None:
        fix = {k: result.fix[k] for k in ("id", "kind", "category", "state", "title",
                                          "explanation", "rendered")}
    reason = f"{result.reason}; {why}"
    if not online:
        reason += "; PostgreSQL not used: answered from the local cache and the seeds"
    if truncated:
        reason += (f"; the text was cut as the pipeline cuts it ({truncated} bytes of its "
                   "middle left out, head and tail kept)")
    return {
        "fingerprint": {"fine": fine, "coarse": coarse, "version": version},
        "params": result.params,
        "match": result.match_dict(),
        "fix": fix,
        "would_apply": applies,
        "mode": mode.value,
        "reason": reason,
        "truncated_bytes": truncated,
    }


def _print_human(data: dict[str, Any]) -> None:
    fp, match, fix = data["fingerprint"], data["match"], data["fix"]
    print(f"fingerprint  fine {fp['fine']}  coarse {fp['coarse']}  ({fp['version']})")
    print(f"params       {orjson.dumps(data['params'], default=str).decode()}")
    if match["pattern_id"] is None:
        print("match        none")
    else:
        print(f"match        {match['pattern_id']} (tier {match['tier']}, "
              f"score {match['score']:.3f}) via {' <- '.join(match['path'])}")
    if fix is None:
        print("fix          none")
    else:
        print(f"fix          {fix['id']} [{fix['kind']}, {fix['category']}, {fix['state']}] "
              f"{fix['title']}")
        print(f"rendered     {orjson.dumps(fix['rendered']).decode()}")
    print(f"would apply  {'yes' if data['would_apply'] else 'no'} (mode {data['mode']})")
    print(f"reason       {visible(str(data['reason']))}")


def run(args: argparse.Namespace) -> int:
    text = read_text(args.file)
    mode = resolve_mode(args.mode)
    data = diagnose(text, Settings.from_env(), mode, repo=args.repo, offline=args.offline,
                    semantic=not args.no_semantic, exit_code=args.exit_code,
                    signal=signal_arg(args.signal), command=command_arg(args.command))
    if args.json:
        dump_json(data)
    else:
        _print_human(data)
    return 0
