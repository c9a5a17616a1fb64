"""The input a parser or a conversion was given is masked where the message's grammar says
so (rule ``input``), in both keys; what it was converted to, and a quoted value elsewhere (a
missing file), stay. Texts written for these tests; the keys come from `heal diagnose` in a
subprocess, as a user runs it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.fingerprint import fingerprint_text
from pipeline.fingerprint.rules import DEFAULT_NORMALIZER
from tests._diagnose import diagnose_fingerprints


def _read(text: str) -> dict[str, Any]:
    found = fingerprint_text(text)
    return {**found.extraction.to_dict(), "normalized": found.normalized}  # type: ignore[union-attr]


def _py(exc: str, message: str, func: str = "parse_qty") -> str:
    return ("Traceback (most recent call last):\n"
            '  File "/srv/orders/app/forms.py", line 31, in ' + func + "\n"
            "    qty = convert(raw)\n"
            f"{exc}: {message}\n")


# --- 1. the input value ----------------------------------------------------------------------

def test_the_input_a_conversion_was_given_is_masked_in_both_keys(tmp_path: Path) -> None:
    texts = {
        "int_seven": _py("ValueError", "invalid literal for int() with base 10: 'seven'"),
        "int_eight": _py("ValueError", "invalid literal for int() with base 10: 'eight'"),
        "float_abc": _py("ValueError", "could not convert string to float: 'abc'"),
        "float_xyz": _py("ValueError", "could not convert string to float: 'x y z'"),
        "java_abc": ('Exception in thread "main" java.lang.NumberFormatException: For input '
                     'string: "abc"\n\tat com.shop.Qty.parse(Qty.java:12)\n'),
        "java_q": ('Exception in thread "main" java.lang.NumberFormatException: For input '
                   'string: "12q"\n\tat com.shop.Qty.parse(Qty.java:12)\n'),
        "go_atoi_a": 'strconv.Atoi: parsing "abc": invalid syntax\n',
        "go_atoi_b": 'strconv.Atoi: parsing "4x": invalid syntax\n',
        "go_float": 'strconv.ParseFloat: parsing "4x": invalid syntax\n',
        "js_html": ("SyntaxError: Unexpected token '<', \"<!DOCTYPE \"... is not valid JSON\n"
                    "    at JSON.parse (<anonymous>)\n    at load (/srv/web/src/api.js:9:17)\n"),
        "js_obj": ("SyntaxError: Unexpected token 'o', \"[object Obj\"... is not valid JSON\n"
                   "    at JSON.parse (<anonymous>)\n    at load (/srv/web/src/api.js:9:17)\n"),
        "missing_a": _py("FileNotFoundError", "[Errno 2] No such file or directory: 'a.csv'"),
        "missing_b": _py("FileNotFoundError", "[Errno 2] No such file or directory: 'b.csv'"),
    }
    found = diagnose_fingerprints(tmp_path, texts)
    for one, other in (("int_seven", "int_eight"), ("float_abc", "float_xyz"),
                       ("java_abc", "java_q"), ("go_atoi_a", "go_atoi_b"),
                       ("js_html", "js_obj")):
        assert found[one]["fine"] == found[other]["fine"], (one, other)
        assert found[one]["coarse"] == found[other]["coarse"], (one, other)
    # what it was converted to stays: int is not float
    assert found["int_seven"]["fine"] != found["float_abc"]["fine"]
    assert found["go_atoi_a"]["fine"] != found["go_float"]["fine"]
    # a missing file named in quotes is the cause: it stays
    assert found["missing_a"]["fine"] != found["missing_b"]["fine"]
    assert _read(texts["int_seven"])["normalized"] == (
        "ValueError: invalid literal for int() with base <num>: <input>")


@pytest.mark.parametrize(("text", "masked"), [
    ("invalid literal for int() with base 16: 'zz'",
     "invalid literal for int() with base <num>: <input>"),
    ('For input string: "7f" under radix 10', "For input string: <input> under radix <num>"),
    ('strconv.ParseInt: parsing "99999999999999999999": value out of range',
     "strconv.ParseInt: parsing <input>: value out of range"),
    ("Unexpected token u in JSON at position 0",
     "Unexpected token <input> in JSON at position <num>"),
    ('"[object Object]" is not valid JSON', "<input> is not valid JSON"),
    ("Expecting value: line 1 column 1 (char 0)",
     "Expecting value: line <num> column <num> (char <num>)"),
    ("time data '31/02/2024' does not match format '%Y-%m-%d'",
     "time data <input> does not match format '%Y-%m-%d'"),
    ('invalid value for Integer(): "4 apples"', "invalid value for Integer(): <input>"),
    ("The input string 'four' was not in a correct format.",
     "The input string <input> was not in a correct format."),
    ("Text '2024-02-31x' could not be parsed at index 10",
     "Text <input> could not be parsed at index <num>"),
    ("invalid character 'h' looking for beginning of value",
     "invalid character <input> looking for beginning of value"),
    # not a value being parsed: kept
    ("No such file or directory: 'config.yml'", "No such file or directory: 'config.yml'"),
    ("Text 'hello' is shown", "Text 'hello' is shown"),
    ("parsing 'rules.toml' failed", "parsing 'rules.toml' failed"),
])
def test_the_input_rule_masks_only_where_the_grammar_says_it_is_the_input(
        text: str, masked: str) -> None:
    assert DEFAULT_NORMALIZER.mask(text).text == masked


def test_the_input_rule_runs_in_bounded_time() -> None:
    hostile = "invalid literal for int() with base 10: '" + "'" * 20000
    hostile += ' Unexpected token "' + '"' * 20000 + " is not valid JSON" * 50
    start = time.perf_counter()
    DEFAULT_NORMALIZER.mask(hostile)
    assert time.perf_counter() - start < 2.0
