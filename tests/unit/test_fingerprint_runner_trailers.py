"""A CI runner's verdict and bookkeeping lines after a failure (Jenkins' ``Finished:
FAILURE``, GitHub's ``Post job cleanup.``, GitLab's ``Uploading artifacts for failed job``)
are neither part of a Python exception's message nor the headline of a text no parser
reads; of a text's equally good lines, the one naming the failure heads it, not the advice
or a call stack's frame. Through ``heal diagnose --offline --json`` in a subprocess."""

from __future__ import annotations

from pathlib import Path

from pipeline.fingerprint import fingerprint_text
from pipeline.runnerlines import is_runner_line
from tests._diagnose import diagnose_fingerprints

#: what runners print after a failed step, one trailer per CI system (not the step's output)
TRAILERS = {
    "jenkins": "Archiving artifacts\nRecording test results\n"
               "Build step 'Execute shell' marked build as failure\nFinished: UNSTABLE\n",
    "jenkins_failure": "[Pipeline] }\n[Pipeline] End of Pipeline\nFinished: FAILURE\n",
    "github": "Post job cleanup.\nCleaning up orphan processes\n",
    "gitlab": "Running after_script\nSaving cache for failed job\n"
              "Uploading artifacts for failed job\n"
              "Cleaning up project directory and file based variables\n",
    "circleci": "Uploading artifacts\nUploading test results\n",
}

TRACEBACK = """\
Traceback (most recent call last):
  File "/home/ci/billing/billing/rates.py", line 41, in convert
    rate = RATES[currency]
LookupError: unknown currency code
"""


def _keys(found: dict[str, str]) -> tuple[str, str]:
    return found["fine"], found["coarse"]


def test_runner_trailers_after_a_traceback_are_not_its_message(tmp_path: Path) -> None:
    texts = {"plain": TRACEBACK, **{name: TRACEBACK + t for name, t in TRAILERS.items()},
             # a line of the next program's output the runner checks do not know
             "other": TRACEBACK + "Stopping 3 service containers\n"}
    found = diagnose_fingerprints(tmp_path, texts)
    for name in texts:
        assert _keys(found[name]) == _keys(found["plain"]), name


def test_messages_that_go_on_keep_their_lines() -> None:
    """Continuation lines are read by what they are: under a line ending with a colon, an
    open bracket or quote, pydantic's field names, indented details."""
    block = TRACEBACK.replace("unknown currency code", "no rate for:") + "EUR -> JPY\n"
    bracket = TRACEBACK.replace("unknown currency code", "bad rows [1,") + "2, 3]\n"
    for text, message in ((block, "no rate for:\nEUR -> JPY"),
                          (bracket, "bad rows [1,\n2, 3]")):
        extraction = fingerprint_text(text + "Finished: FAILURE\n").extraction
        assert extraction is not None and extraction.message == message
    pydantic = TRACEBACK.replace(
        "LookupError: unknown currency code",
        "pydantic_core._pydantic_core.ValidationError: 2 validation errors for Rate\n"
        "currency\n  Field required [type=missing]")
    extraction = fingerprint_text(pydantic + "Post job cleanup.\n").extraction
    assert extraction is not None
    assert extraction.message.splitlines() == [
        "2 validation errors for Rate", "currency", "  Field required [type=missing]"]


def test_runner_trailer_never_heads_a_text_no_parser_reads(tmp_path: Path) -> None:
    """The same unparsed error with and without each runner's trailer has one key; two
    different errors with the same trailer keep two."""
    errors = {
        "hs": "billing: Prelude.!!: index too large\n",
        "php": "PHP Notice:  Trying to access array offset on value of type null in "
               "/var/www/html/cart.php on line 88\n",
        "tool": "deploy: the release bundle is older than the schema\n",
    }
    texts = {f"{e}_plain": text for e, text in errors.items()}
    for e, text in errors.items():
        for name, trailer in TRAILERS.items():
            texts[f"{e}_{name}"] = text + trailer
    found = diagnose_fingerprints(tmp_path, texts)
    for e in errors:
        for name in TRAILERS:
            assert _keys(found[f"{e}_{name}"]) == _keys(found[f"{e}_plain"]), (e, name)
    for name in TRAILERS:
        fines = {found[f"{e}_{name}"]["fine"] for e in errors}
        assert len(fines) == len(errors), name


def test_the_line_naming_the_failure_heads_not_advice_or_frames(tmp_path: Path) -> None:
    """bundler's advice under its error and GHC's call stack under a crash are the same for
    every cause: the error line above them heads the text, so two causes keep two keys."""
    advice = "Run `bundle install` to install missing gems.\n"
    stack = ("CallStack (from HasCallStack):\n"
             "  error, called at libraries/base/GHC/List.hs:1646:3 in base:GHC.List\n"
             "  errorEmptyList, called at libraries/base/GHC/List.hs:85:11 in base:GHC.List\n"
             "  badHead, called at libraries/base/GHC/List.hs:81:28 in base:GHC.List\n")
    texts = {
        "gem_pg": "Could not find pg-1.5.6 in locally installed gems\n" + advice,
        "gem_puma": "Could not find puma-6.4.2 in any of the sources\n" + advice,
        "hs_head": "report: Prelude.head: empty list\n" + stack
                   + "  head, called at src/Report.hs:12:9 in main:Report\n",
        "hs_last": "report: Prelude.last: empty list\n" + stack
                    + "  last, called at src/Report.hs:30:5 in main:Report\n",
    }
    found = diagnose_fingerprints(tmp_path, texts)
    assert found["gem_pg"]["fine"] != found["gem_puma"]["fine"]
    assert found["hs_head"]["fine"] != found["hs_last"]["fine"]
    assert fingerprint_text(texts["gem_pg"]).normalized.startswith("Could not find")
    # (read as a Haskell run-time error since the call stack is parsed: its class ErrorCall)
    assert fingerprint_text(texts["hs_head"]).normalized == (
        "ErrorCall: report: Prelude.head: empty list")


def test_runner_line_shapes() -> None:
    """The general shapes: a verdict (label, colon, an outcome in capitals) and bookkeeping
    (a lifecycle verb, then what a runner keeps), never an exception line or an error."""
    for line in ("Finished: FAILURE", "Build result: ABORTED", "Status: CANCELED",
                 "Post job cleanup.", "Cleaning up orphan processes",
                 "Uploading artifact report-1a2b.zip (12.0 KB)", "Restoring cache",
                 "Archiving artifacts", "[Pipeline] // stage"):
        assert is_runner_line(line), line
    for line in ("KeyError: FAILED", "ValueError: FAILURE", "Finished: 3 of 4 checks failed",
                 "Restoring cache failed: permission denied",
                 "Could not find pg-1.5.6 in locally installed gems",
                 "Upload failed for job 3: 404 Not Found"):
        assert not is_runner_line(line), line


def test_advice_is_told_from_lines_that_say_what_failed() -> None:
    from pipeline.fingerprint.parsers_lines import headline

    for advice, failure in (("Try `npm ci` to reinstall.", "npm: the lockfile is missing"),
                            ("hint: pass --force to overwrite", "cp: target exists"),
                            ("See 'docker run --help'.", "docker: invalid reference format")):
        assert headline([failure, advice]) == failure
        assert headline([advice, failure]) == failure
    # a failure that reads like an imperative is no advice
    for failure in ("Check failed: queue.size() < limit", "You must be logged in to publish"):
        assert headline(["starting worker", failure]) == failure
