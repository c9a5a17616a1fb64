"""Snapshot tests: real error texts and their expected fingerprints, per algorithm version.

Inputs are ``tests/unit/snapshots/<version>/<case>.txt`` (captured from real python, pytest,
ruff, mypy, gcc, node, java and bash runs; the Go panic and the two log lines are typed in
the tools' exact formats); the expectation is ``<case>.json`` next to it. A change in
grouping shows up as a diff of these files. Regenerate deliberately with
``HEAL_UPDATE_SNAPSHOTS=1 pytest tests/unit/test_fingerprint_snapshots.py`` -- and when the
hashes change, bump the algorithm version instead of overwriting the current version's snapshots.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from pipeline.fingerprint import ALGORITHM_VERSION, VERSIONS, fingerprint_text

SNAPSHOTS = Path(__file__).parent / "snapshots" / ALGORITHM_VERSION
CASES = sorted(SNAPSHOTS.glob("*.txt"))


def _observed(text: str) -> dict[str, Any]:
    fp = fingerprint_text(text)
    assert fp.extraction is not None
    return {
        "kind": fp.extraction.kind,
        "error_type": fp.extraction.error_type,
        "fine": fp.fine,
        "coarse": fp.coarse,
        "template": fp.template,
        "params": fp.params,
        "project_frames": [[f.file, f.function] for f in fp.extraction.project_frames()],
        "chain": [list(c) for c in fp.extraction.chain],
    }


def test_the_current_version_has_snapshots_and_a_changelog_entry() -> None:
    assert ALGORITHM_VERSION in VERSIONS
    assert len(CASES) >= 10


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_snapshot(case: Path) -> None:
    observed = _observed(case.read_text(encoding="utf-8"))
    expected_file = case.with_suffix(".json")
    if os.environ.get("HEAL_UPDATE_SNAPSHOTS"):
        expected_file.write_text(json.dumps(observed, indent=2, sort_keys=True) + "\n")
    # a missing expectation is a failure, never silently written: the test would otherwise
    # pass on whatever the code happens to produce
    assert expected_file.exists(), (
        f"no expected fingerprint for {case.name}: review the output of the current algorithm "
        f"and write it deliberately with "
        f"HEAL_UPDATE_SNAPSHOTS=1 pytest tests/unit/test_fingerprint_snapshots.py -k {case.stem}"
    )
    assert observed == json.loads(expected_file.read_text(encoding="utf-8"))
    assert observed["fine"].startswith(f"{ALGORITHM_VERSION}:")
