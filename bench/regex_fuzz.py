"""Worst-case regex time on 64 KB adversarial lines, as a ratio to a plain 64 KB line.

Every regex heal runs over event text (normalization, parameter, seed detection and
secret redaction rules) is tried on lines built from its own atoms: each literal run and
character-class representative of the pattern, repeated to 64 KB, alone and in pairs.
Quadratic backtracking shows up as seconds on such lines; a linear pattern stays within
a small multiple of a plain line of the same length.

    python bench/regex_fuzz.py            # prints the worst pattern and the ratio

``tests/security/test_regex_bounds.py`` runs the same generator as a test (each line
well under a second).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LINE = 64 * 1024
_CATEGORY_REPS = {
    "CATEGORY_DIGIT": "1", "CATEGORY_NOT_DIGIT": "a", "CATEGORY_SPACE": " ",
    "CATEGORY_NOT_SPACE": "a", "CATEGORY_WORD": "a", "CATEGORY_NOT_WORD": ".",
}


def _class_atoms(items: Any, out: list[str]) -> None:
    for op, arg in items:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(arg))
        elif name == "RANGE":
            out.append(chr(arg[0]))
        elif name == "CATEGORY":
            out.append(_CATEGORY_REPS.get(str(arg), "a"))


def _children(name: str, arg: Any) -> list[Any]:
    """The sub-patterns of one parsed node (repeats, groups, look-arounds, branches)."""
    if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
        return [arg[2]]
    if name == "SUBPATTERN":
        return [arg[-1]]
    if name in ("ASSERT", "ASSERT_NOT"):
        return [arg[1]]
    if name == "BRANCH":
        return list(arg[1])
    if name == "ATOMIC_GROUP":
        return [arg]
    if name == "GROUPREF_EXISTS":
        return [a for a in arg[1:] if a is not None]
    return []


def _walk(parsed: Any, out: list[str]) -> None:
    run = ""
    for op, arg in parsed:
        name = str(op)
        if name == "LITERAL":
            run += chr(arg)
            continue
        if run:
            out.append(run)
            run = ""
        if name == "IN":
            _class_atoms(arg, out)
        elif name == "NOT_LITERAL":
            out.append("a" if chr(arg) != "a" else "b")
        for child in _children(name, arg):
            _walk(child, out)
    if run:
        out.append(run)


def atoms(pattern: Any) -> list[str]:
    """The pattern's literal runs and class representatives, deduplicated, in order."""
    found: list[str] = []
    try:
        flags = pattern.flags & (re.I | re.M | re.S | re.X)  # re's bits (``regex`` adds more)
        _walk(sre_parse.parse(pattern.pattern, flags), found)
    except Exception:  # noqa: BLE001 - a pattern the parser cannot walk gets generic atoms
        pass
    seen: dict[str, None] = {}
    for atom in [*found, "a", "1", " ", ".", "/", ":", "-", "\n"]:
        if atom:
            seen.setdefault(atom, None)
    return list(seen)


def adversarial_lines(pattern: Any, limit: int = 24) -> Iterator[str]:
    """64 KB lines: each atom repeated, each neighbouring pair of atoms alternated, and
    the first literal run followed by each atom repeated (the rule's anchor, then filler)."""
    items = atoms(pattern)
    candidates: list[str] = list(items)
    candidates += [a + b for a, b in zip(items, items[1:], strict=False)]
    candidates += [items[0] + " " + a for a in items[1:]] if items else []
    candidates += [a + "\n" for a in items[:8]]  # the same atoms on many short lines
    seen: set[str] = set()
    for unit in candidates[:limit]:
        if unit in seen:
            continue
        seen.add(unit)
        body = (unit * (LINE // len(unit) + 1))[:LINE]
        yield body
        if items and not body.startswith(items[0]):
            yield (items[0] + body)[:LINE]


def windowed_lines(pattern: Any, limit: int = 24) -> Iterator[str]:
    """64 KB texts of lines as long as a windowed rule reads (``MAX_LINE_CHARS``), each of
    one atom or neighbouring pair repeated: a rule that reads each line up to the window is
    quadratic per line there, which one 64 KB line, cut to its first window, never shows."""
    from pipeline.boundedre import MAX_LINE_CHARS

    items = atoms(pattern)
    units = [*items, *(a + b for a, b in zip(items, items[1:], strict=False))]
    for unit in dict.fromkeys(units[:limit]):
        line = (unit * (MAX_LINE_CHARS // len(unit) + 1))[:MAX_LINE_CHARS - 1]
        yield "\n".join([line] * (LINE // MAX_LINE_CHARS))


def plain_line() -> str:
    words = "the quick brown fox jumps over the lazy dog while heal reads logs "
    return (words * (LINE // len(words) + 1))[:LINE]


Runner = Callable[[str], object]


def _hinted(hint: str, extract_params: Callable[[str, Any], object], empty: Any) -> Runner:
    """The parameter pass over ``hint`` followed by the line."""
    return lambda text: extract_params(hint + text, empty)


def _redactor(regex: re.Pattern[str]) -> Runner:
    """One redaction rule run as redact() runs it (a function per rule, typed)."""
    return lambda text: regex.sub("<redacted>", text)


def event_regexes() -> dict[str, tuple[Any, Runner]]:
    """Every regex over event text, named, with the call heal makes with it."""
    from pipeline.fingerprint.model import Extraction
    from pipeline.fingerprint.params import PARAM_RULES, extract_params
    from pipeline.fingerprint.rules import DEFAULT_NORMALIZER, RULES
    from pipeline.lookup.catalog import load_catalog
    from pipeline.redact import REDACTION_RULES

    out: dict[str, tuple[Any, Runner]] = {}
    for rule in RULES:
        compiled = re.compile(rule.pattern, re.VERBOSE)
        out[f"normalize:{rule.name}"] = (compiled, DEFAULT_NORMALIZER.normalize)
    empty = Extraction(kind="text", error_type="", message="")
    for i, prule in enumerate(PARAM_RULES):
        # a rule runs only on a text holding one of its hints: the line gets the first
        # (without it, the pre-filter skips the rule and the line proves nothing about it)
        hint = prule.hints[0] + " " if prule.hints else ""
        out[f"param:{prule.name}:{i}"] = (prule.pattern, _hinted(hint, extract_params, empty))
    catalog = load_catalog()
    for pattern in catalog.patterns.values():
        for j, drule in enumerate(pattern.rules):
            # a rule is searched (and its "unless") on its own, as Catalog.detect does
            out[f"seed:{pattern.id}:{j}"] = (drule.regex, drule.match)
            if drule.unless is not None:
                out[f"seed:{pattern.id}:{j}:unless"] = (drule.unless, drule.match)
    for name, regex in REDACTION_RULES.items():
        # each rule on its own, as redact() runs it once its literal occurs (through redact()
        # a line without that literal would skip the rule and prove nothing about it)
        out[f"redact:{name}"] = (regex, _redactor(regex))
    out.update(_extraction_regexes())
    return out


#: extraction regexes heal runs with search/sub/finditer (the others with match, per line)
_SEARCHED = {"_HAS_LOCATION", "_SHELL_HINT", "_LEVEL", "_ENVIRONMENT", "_LOGIC",
             "_ENVIRONMENTAL", "_PLACEHOLDER", "_LETTER", "_SPACE", "_LINE_STAMPS",
             "STEP_EXIT", "BUILD_END"}
_EXTRACTION_MODULES = (
    "pipeline.fingerprint.parsers_lines", "pipeline.fingerprint.parsers_python",
    "pipeline.fingerprint.parsers_stacks", "pipeline.fingerprint.parsers_runners",
    "pipeline.fingerprint.paths",
    "pipeline.fingerprint.cluster", "pipeline.fingerprint.fingerprinter",
    "pipeline.lookup.guard", "pipeline.lookup.semantic", "pipeline.runnerlines",
)


def _extraction_regexes() -> dict[str, tuple[Any, Runner]]:
    """Every module-level regex of the extraction, clustering and lookup-guard modules."""
    import importlib

    out: dict[str, tuple[Any, Runner]] = {}
    for module_name in _EXTRACTION_MODULES:
        module = importlib.import_module(module_name)
        for name, value in vars(module).items():
            if isinstance(value, re.Pattern):
                run = value.search if name in _SEARCHED else value.match
                out[f"extract:{module_name.rsplit('.', 1)[-1]}.{name}"] = (value, run)
    return out


def DEFAULT_NORMALIZER_RUN(text: str) -> object:  # noqa: N802 - the baseline runner
    """The baseline: the normalizer over a line (what every event goes through)."""
    from pipeline.fingerprint.rules import DEFAULT_NORMALIZER

    return DEFAULT_NORMALIZER.normalize(text)


def timed(run: Runner, line: str) -> float:
    """CPU seconds of this thread spent in ``run(line)``: the work a line costs, whatever the
    machine's load (the wall time of a search on a loaded machine is that times the load;
    heal's own bounds are CPU time too, see pipeline/boundedre.py)."""
    start = time.thread_time()
    run(line)
    return time.thread_time() - start


def worst_cases(limit: int = 24) -> list[tuple[float, str, str]]:
    """(seconds, regex name, line head) per regex: its slowest adversarial line."""
    results = []
    for name, (pattern, run) in event_regexes().items():
        worst = (0.0, "")
        for line in adversarial_lines(pattern, limit):
            worst = max(worst, (timed(run, line), line[:40]))
        results.append((worst[0], name, worst[1]))
    return sorted(results, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--top", type=int, default=8, help="slowest patterns to print")
    args = parser.parse_args()
    plain = plain_line()
    baseline = min(timed(DEFAULT_NORMALIZER_RUN, plain) for _ in range(5))
    results = worst_cases()
    for seconds, name, head in results[:args.top]:
        print(f"{seconds * 1000:9.1f} ms  {name:45s} {head!r}")
    top = results[0][0]
    print(f"regexes: {len(results)}; plain 64 KB line (normalize): {baseline * 1000:.2f} ms; "
          f"worst adversarial 64 KB line: {top * 1000:.1f} ms = {top / baseline:.1f}x plain")


if __name__ == "__main__":
    main()
