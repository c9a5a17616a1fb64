"""The lean embedding runtime (numpy MiniLM) against the sentence-transformers reference, and
the promise that light commands import no model code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.fingerprint import fingerprint_text
from pipeline.lookup.semantic import Embedder, query_text

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "errors"
ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "sentence_transformers", "sklearn", "scipy")


def fixture_texts() -> list[str]:
    """Every fixture text, raw (long, truncated at 256 tokens) and as the query heal embeds."""
    texts: list[str] = []
    for path in sorted(FIXTURES.rglob("*.txt")):
        raw = path.read_text(encoding="utf-8", errors="replace")
        texts.append(raw)
        texts.append(query_text(raw, fingerprint_text(raw).normalized))
    return texts


@pytest.fixture(scope="module")
def reference() -> Embedder:
    pytest.importorskip("sentence_transformers")
    return Embedder("reference")


def test_lean_vectors_match_the_reference_on_every_fixture_text(reference: Embedder) -> None:
    # Given every fixture error text, raw and as the embedded query
    texts = fixture_texts()
    assert len(texts) > 100
    # When both runtimes embed them (the lean one batched, so padding is exercised)
    lean = Embedder("lean")
    ours = lean.embed(texts)
    theirs = reference.embed(texts)
    # Then the lean runtime really served, and every vector is the reference's
    assert lean.runtime == "lean" and reference.runtime == "reference"
    assert ours.shape == theirs.shape == (len(texts), 384)
    cosines = np.sum(ours * theirs, axis=1)
    worst = int(np.argmin(cosines))
    assert cosines.min() >= 0.999, f"cosine {cosines[worst]:.5f} on {texts[worst][:80]!r}"
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-4)


def test_lean_single_text_equals_its_batched_vector() -> None:
    lean = Embedder("lean")
    texts = ["ModuleNotFoundError: No module named 'yaml'", "short", "x " * 400]
    batch = lean.embed(texts)
    for i, text in enumerate(texts):
        assert float(lean.embed([text])[0] @ batch[i]) > 0.99999


def _modules_after(code: str, tmp_path: Path, output: list[str] | None = None) -> set[str]:
    env = {**os.environ, "HEAL_HOME": str(tmp_path / "home")}
    env.pop("HEAL_EMBEDDER", None)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    lines = out.stdout.strip().splitlines()
    if output is not None:
        output.extend(lines[:-1])
    return set(json.loads(lines[-1]))


def _heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in HEAVY or m == "pipeline.lookup.minilm"}


def test_help_imports_no_model_code(tmp_path: Path) -> None:
    code = ("import sys, json\nfrom pipeline.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(json.dumps(sorted(sys.modules)))")
    assert _heavy(_modules_after(code, tmp_path)) == set()


def _cli_modules(args: list[str], tmp_path: Path, output: list[str] | None = None
                 ) -> set[str]:
    code = ("import sys, json\nfrom pipeline.cli import main\n"
            f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
            "print()\nprint(json.dumps(sorted(sys.modules)))")
    return _modules_after(code, tmp_path, output)


def test_tier1_diagnose_imports_no_model_code(tmp_path: Path) -> None:
    # Given a text a tier-1 rule knows, on a fresh HEAL_HOME (the reference vectors are not
    # stored yet), diagnosed through the real command path
    error = tmp_path / "e.txt"
    error.write_text("ModuleNotFoundError: No module named 'yaml'\n")
    output: list[str] = []
    modules = _cli_modules(["diagnose", str(error), "--json"], tmp_path, output)
    # Then it answered from tier 1 without importing any model code
    assert json.loads(output[0])["match"]["tier"] == 1
    assert "pipeline.lookup.service" in modules
    assert _heavy(modules) == set()


def test_passing_heal_run_imports_no_model_code(tmp_path: Path) -> None:
    modules = _cli_modules(["run", "--", "true"], tmp_path)
    assert "producers.run" in modules
    assert _heavy(modules) == set()
