"""fp-v3's grouping fixes, each a pair of real tool outputs that fp-v2 grouped wrongly.

Two different errors that share a fine fingerprint share an issue group and every fix learned
for either; one error split in two is learned twice. Each case below names a pair and says
which it must be. The texts are the tools' own output (cargo, gcc/ld, pytest, npm, GitHub
Actions), cut to the lines that matter."""

from __future__ import annotations

import pytest

from pipeline.fingerprint import fingerprint_text

_CARGO = """   Compiling app v0.1.0 (/tmp/cap/app)
error[{code}]: {message}
 --> src/main.rs:2:20
  |
2 |     println!("{{}}", y);
  |                    ^ not found in this scope

error: could not compile `app` (bin "app") due to 1 previous error
"""
_COLLECTION = """==================================== ERRORS ====================================
__________________________ ERROR collecting test_m.py __________________________
test_m.py:2: in <module>
    {line}
/usr/lib/python3.11/json/__init__.py:346: in loads
    return _default_decoder.decode(s)
E   {error}
=========================== short test summary info ============================
ERROR test_m.py - {error}
!!!!!!!!!!!!!!!!!!!! Interrupted: 1 error during collection !!!!!!!!!!!!!!!!!!!!
"""
_NPM = """npm error code {code}
npm error {line}
npm error A complete log of this run can be found in: /root/.npm/_logs/2025-01-01-debug-0.log
"""
_PYTEST_FAILURE = """\x1b[1m\x1b[31mE   {error}\x1b[0m
\x1b[1m\x1b[31mtest_c.py\x1b[0m:3: {kind}
\x1b[31mFAILED\x1b[0m test_c.py::test_c - {error}
"""

DIFFERENT = {
    "cargo: two compile errors of one crate": (
        _CARGO.format(code="E0425", message="cannot find value `y` in this scope"),
        _CARGO.format(code="E0308", message="mismatched types")),
    "pytest: two collection errors of one file": (
        _COLLECTION.format(line='json.loads("{bad json")',
                           error="json.decoder.JSONDecodeError: Expecting value: line 1"),
        _COLLECTION.format(line="raise RuntimeError('QA_DB_URL is not set')",
                           error="RuntimeError: QA_DB_URL is not set")),
    "npm: an authentication and a permission error": (
        _NPM.format(code="E401", line="Unable to authenticate, need: Basic realm"),
        _NPM.format(code="E403", line="403 Forbidden - PUT https://registry.npmjs.org/x")),
    "GitHub Actions: exit code 1 and 137 at the end of a sentence": (
        "##[error]Process completed with exit code 1.",
        "##[error]Process completed with exit code 137."),
    "ld: a missing library and an undefined reference": (
        "/usr/bin/ld: cannot find -lssl: No such file or directory\n"
        "collect2: error: ld returned 1 exit status\n",
        "/usr/bin/ld: /tmp/cctV1qv4.o: in function `main':\n"
        "main.c:(.text+0x5): undefined reference to `foo'\n"
        "collect2: error: ld returned 1 exit status\n"),
    "coloured pytest: two different failures": (
        _PYTEST_FAILURE.format(error="KeyError: 'b'", kind="KeyError"),
        _PYTEST_FAILURE.format(error="TimeoutError: service not ready", kind="TimeoutError")),
}

SAME = {
    "colour codes": (
        "\x1b[31mModuleNotFoundError\x1b[0m: No module named 'yaml'",
        "ModuleNotFoundError: No module named 'yaml'"),
    "another patch release": (
        "ERROR: No matching distribution found for foo==1.2.3",
        "ERROR: No matching distribution found for foo==1.2.4"),
    "a v-prefixed version": (
        "ERROR: image myorg/app:v1.2.3 not found in registry",
        "ERROR: image myorg/app:v2.0.11 not found in registry"),
    "the same traceback on two CI runners": tuple(
        f'Traceback (most recent call last):\n  File "{root}/proj/app.py", line 3, in <module>\n'
        "    import yaml\nModuleNotFoundError: No module named 'yaml'\n"
        for root in ("/builds/acme", "/home/runner/work/proj")),
}


@pytest.mark.parametrize("case", sorted(DIFFERENT))
def test_different_errors_get_different_fingerprints(case: str) -> None:
    first, second = (fingerprint_text(t) for t in DIFFERENT[case])
    assert first.fine != second.fine, (case, first.normalized, second.normalized)


@pytest.mark.parametrize("case", sorted(SAME))
def test_one_error_gets_one_fingerprint(case: str) -> None:
    first, second = (fingerprint_text(t) for t in SAME[case])
    assert (first.fine, first.coarse) == (second.fine, second.coarse), (
        case, first.normalized, second.normalized)


def test_the_two_line_diagnostic_names_its_file_line_and_code() -> None:
    fp = fingerprint_text(DIFFERENT["cargo: two compile errors of one crate"][0])
    assert fp.extraction is not None and fp.extraction.kind == "compiler"
    assert (fp.params["file"], fp.params["line"], fp.params["code"]) == ("src/main.rs", 2, "E0425")
    ruff = fingerprint_text("F401 [*] `os` imported but unused\n --> app/m.py:1:8\n  |\n"
                            "1 | import os\n  |        ^^\n  |\nhelp: Remove unused import\n\n"
                            "Found 1 error.\n")
    assert (ruff.params["file"], ruff.params["line"]) == ("app/m.py", 1)
    assert ruff.params["tool"] == "ruff"


def test_a_collection_error_is_read_from_its_e_line_with_its_frames() -> None:
    fp = fingerprint_text(DIFFERENT["pytest: two collection errors of one file"][1])
    assert fp.extraction is not None
    assert (fp.extraction.kind, fp.extraction.error_type) == ("pytest", "RuntimeError")
    assert [(f.file, f.function) for f in fp.extraction.project_frames()] == [
        ("test_m.py", "<module>"), ("test_m.py", "")]


def test_a_failed_child_gives_way_to_the_line_it_printed() -> None:
    fp = fingerprint_text(DIFFERENT["ld: a missing library and an undefined reference"][0])
    assert "cannot find -lssl" in fp.normalized
    # a line that says nothing else is still the error when nothing precedes it
    alone = fingerprint_text("collect2: error: ld returned 1 exit status")
    assert alone.normalized == "ERROR: ld returned <num> exit status"


def test_npm_8_errors_are_told_apart_by_their_code() -> None:
    """npm 8 and older print ``npm ERR!``: its ``!`` hid the level word, so the headline was
    the log-path trailer and ERESOLVE, E404 and E401 were one error."""
    trailer = ("npm ERR! A complete log of this run can be found in:\n"
               "npm ERR!     /root/.npm/_logs/2024-01-01T00_00_00_000Z-debug-0.log\n")
    codes = [fingerprint_text(f"npm ERR! code {code}\nnpm ERR! {line}\n{trailer}")
             for code, line in (("E404", "404 Not Found - GET https://registry.npmjs.org/x"),
                                ("E401", "Unable to authenticate"),
                                ("ERESOLVE", "unable to resolve dependency tree"))]
    assert len({fp.fine for fp in codes}) == 3, [fp.normalized for fp in codes]
    assert codes[0].normalized == "ERR: code E404"
