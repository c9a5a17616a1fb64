"""The line that heads a text, and the coarse key of text no parser reads (QA s16a D1-D4,
D8, D9; QA s16c #12). Texts written for these tests, not copied from the QA corpus."""

from __future__ import annotations

from pathlib import Path

from pipeline.fingerprint import fingerprint_text
from tests._diagnose import diagnose_fingerprints


def _coarse(text: str) -> str:
    return fingerprint_text(text).coarse


def _fine(text: str) -> str:
    return fingerprint_text(text).fine


# -- D4: the coarse key says what kind of failure it is -----------------------------------------

def test_codeless_compiler_errors_of_different_languages_and_kinds_have_different_coarse_keys(
) -> None:
    texts = [
        "src/queue.c:41:9: error: 'queue_len' undeclared (first use in this function)",
        "cmd/api/main.go:17:5: undefined: handlers.NewMux",
        "Sources/App/Cart.swift:9:14: error: value of type 'Cart' has no member 'totl'",
        "lib/Parse.hs:12:3: error: Variable not in scope: tokenise",
    ]
    assert len({_coarse(t) for t in texts}) == len(texts)


def test_one_kind_of_compiler_error_about_other_names_shares_its_coarse_key() -> None:
    a = "src/queue.c:41:9: error: 'queue_len' undeclared (first use in this function)"
    b = "src/pool.c:7:2: error: 'pool_size' undeclared (first use in this function)"
    assert _fine(a) != _fine(b)
    assert _coarse(a) == _coarse(b)


def test_free_text_errors_that_open_alike_split_at_coarse() -> None:
    assert _coarse("ERROR: Failed to fetch the index of the mirror") != _coarse(
        "ERROR: Failed to compile the native extension of gem ffi")
    assert _coarse('psql: error: connection to server at "db" (10.1.2.3), port 5432 failed: '
                   "Connection refused") != _coarse(
        'psql: error: connection to server at "db" (10.1.2.3), port 5432 failed: FATAL:  '
        'password authentication failed for user "app"')
    # (the same failure about another unit, peer or number stays one coarse key)
    assert _coarse("ERROR: Failed to start worker.service in 3s") == _coarse(
        "ERROR: Failed to start billing.service in 12s")


def test_kind_words_leave_out_names_quotes_and_function_words() -> None:
    from pipeline.fingerprint.cluster import tokenize
    from pipeline.fingerprint.fingerprinter import kind_words

    words = kind_words(tokenize("value of type 'User Profile' has no member named "
                                "server.NewRouter in fooBar_baz <*>"))
    assert words == ["value", "type", "has", "no", "member", "named"]
    # (hyphenated words are words; a token holding a masked value is part of that value)
    assert kind_words(tokenize("==<*>==ERROR: Sanitizer: stack-use-after-return on")) == [
        "sanitizer", "stack-use-after-return"]
    assert kind_words(tokenize("cannot reach cache:<*> from web-<*>")) == ["cannot", "reach"]


# -- D1, D9: a verdict banner never heads a text holding what failed ----------------------------

def test_a_verdict_banner_gives_way_to_the_line_that_says_what_failed() -> None:
    from pipeline.fingerprint.parsers_lines import is_verdict

    for banner in ("==917==ABORTING", "FAILURES!", "[INFO] BUILD FAILURE", "*** FAILED ***"):
        assert is_verdict(banner)
        one = f"pool.cc:12 ERROR: double free of chunk in Pool::drop\n{banner}\n"
        two = f"pool.cc:12 ERROR: stack overflow in Parser::descend\n{banner}\n"
        assert _fine(one) != _fine(two), banner
        assert "ABORTING" not in fingerprint_text(one).normalized
    assert not is_verdict("Failed to build gem native extension")


# -- D2: the exception or detail under a level line ---------------------------------------------

def test_the_exception_under_a_level_line_is_part_of_its_message() -> None:
    head = "12:00:01.002 [error] GenServer Shop.Stock terminating\n"
    one = head + "** (RuntimeError) stock exhausted\n    (shop 1.0) lib/stock.ex:8: f/1\n"
    two = head + "** (FunctionClauseError) no function clause matching\n"
    assert _fine(one) != _fine(two)
    assert "RuntimeError" in fingerprint_text(one).normalized


def test_a_level_line_ending_in_a_colon_takes_the_indented_block_it_introduces() -> None:
    head = "CMake Error at cmake/deps.cmake:3 (find_package):\n"
    one = head + '  Could not find a package configuration file provided by "zlib"\n\n-- done\n'
    two = head + "  Could NOT find Threads (missing: Threads_FOUND)\n\n-- done\n"
    assert _fine(one) != _fine(two)
    assert "zlib" in fingerprint_text(one).normalized
    assert "-- done" not in fingerprint_text(one).normalized


# -- D3: GHC's message below its header, its code kept -----------------------------------------

def test_a_ghc_error_is_read_from_the_lines_below_and_keeps_its_code() -> None:
    one = "app/Main.hs:4:8: error: [GHC-39999]\n    \u2022 No instance for \u2018Show Foo\u2019\n"
    two = "app/Main.hs:4:8: error: [GHC-88464]\n    Variable not in scope: foo\n"
    old = "app/Main.hs:4:8: error:\n    \u2022 No instance for \u2018Show Foo\u2019\n"
    fp = fingerprint_text(one)
    assert fp.extraction is not None and fp.extraction.error_type == "GHC-39999"
    assert "No instance" in fp.normalized
    assert _fine(one) != _fine(two)
    assert "No instance" in fingerprint_text(old).normalized


# -- D8, #12 ------------------------------------------------------------------------------------

def test_a_port_before_failed_is_no_tally() -> None:
    text = "booting\nConnect to 10.2.0.4:6379 failed: Connection refused\nretrying in 2s\n"
    assert fingerprint_text(text).normalized.startswith("Connect to")


def test_a_formatters_diff_is_headed_by_its_file_line_not_a_diff_line() -> None:
    one = "Diff in /w/crate/src/lib.rs:4:\n-fn a()->u8{1}\n+fn a() -> u8 {\n+    1\n+}\n"
    fp = fingerprint_text(one)
    assert fp.normalized.startswith("Diff in"), fp.normalized


# -- the real path ------------------------------------------------------------------------------

def test_heal_diagnose_splits_sanitizer_reports_and_code_less_compiler_kinds(
        tmp_path: Path) -> None:
    texts = {
        "uaf": "==7==ERROR: AddressSanitizer: heap-use-after-free on address 0x6020 at pc 0x1\n"
               "    #0 0x1 in Ring::pop ring.cc:9\n\nSUMMARY: AddressSanitizer: "
               "heap-use-after-free ring.cc:9 in Ring::pop\n==7==ABORTING\n",
        "dfree": "==8==ERROR: AddressSanitizer: attempting double-free on 0x6030 in thread T0\n"
                 "    #0 0x2 in Ring::drop ring.cc:30\n\nSUMMARY: AddressSanitizer: "
                 "double-free ring.cc:30 in Ring::drop\n==8==ABORTING\n",
        "gcc": "src/ring.c:3:1: error: 'ring_cap' undeclared (first use in this function)\n",
        "go": "internal/ring/ring.go:3:1: undefined: ring.Capacity\n",
    }
    out = diagnose_fingerprints(tmp_path, texts)
    assert out["uaf"]["fine"] != out["dfree"]["fine"]
    assert out["gcc"]["coarse"] != out["go"]["coarse"]
