"""UndefinedBehaviorSanitizer's ``runtime error:`` lines, XCTest failures and GHC's
HasCallStack call stacks are read as what they are (a run-time failure, a failing test, a
program's frames), never as compiler lines or plain text. Texts written for these tests;
each goes through `heal diagnose` in a subprocess, as a user runs it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pipeline.fingerprint import fingerprint_text
from pipeline.fingerprint.parsers_native import ub_kind
from tests._diagnose import diagnose_fingerprints


def _read(text: str) -> dict[str, Any]:
    found = fingerprint_text(text)
    return {**found.extraction.to_dict(), "normalized": found.normalized}  # type: ignore[union-attr]


# --- 2. UndefinedBehaviorSanitizer -------------------------------------------------------------

UBSAN = ("src/ledger.c:{line}:9: runtime error: {what}\n"
         "SUMMARY: UndefinedBehaviorSanitizer: undefined-behavior src/ledger.c:{line}:9 in \n")


def test_a_ubsan_runtime_error_is_keyed_on_its_kind_and_place_not_as_a_compiler_line(
        tmp_path: Path) -> None:
    overflow = "signed integer overflow: 2147483600 + 100 cannot be represented in type 'int'"
    texts = {
        "overflow": UBSAN.format(line=12, what=overflow),
        "overflow_moved": UBSAN.format(line=19, what=overflow.replace("100", "4000")),
        "overflow_elsewhere": UBSAN.format(line=12, what=overflow).replace("ledger.c",
                                                                           "totals.c"),
        "bounds": UBSAN.format(line=12, what="index 8 out of bounds for type 'long [4]'"),
        "null": UBSAN.format(line=12, what="load of null pointer of type 'const char'"),
    }
    found = diagnose_fingerprints(tmp_path, texts)
    read = _read(texts["overflow"])
    assert read["kind"] == "sanitizer"  # never "compiler"
    assert read["error_type"] == "UndefinedBehaviorSanitizer: signed integer overflow"
    assert found["overflow"]["fine"] == found["overflow_moved"]["fine"]  # line, values
    assert found["overflow"]["fine"] != found["overflow_elsewhere"]["fine"]  # another file
    assert found["overflow"]["fine"] != found["bounds"]["fine"]
    assert found["bounds"]["coarse"] != found["null"]["coarse"]


@pytest.mark.parametrize(("message", "kind"), [
    ("signed integer overflow: 1 + 2 cannot be represented in type 'int'",
     "signed integer overflow"),
    ("index 10 out of bounds for type 'int [5]'", "index out of bounds"),
    ("load of null pointer of type 'int'", "load of null pointer"),
    ("shift exponent 40 is too large for 32-bit type 'int'", "shift exponent"),
    ("division by zero", "division by zero"),
    ("load of misaligned address 0x55d1 for type 'int', which requires 4 byte alignment",
     "load of misaligned address"),
    ("left shift of negative value -1", "left shift of negative value"),
])
def test_ub_kind_leaves_the_values_out(message: str, kind: str) -> None:
    assert ub_kind(message) == kind


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_a_real_ubsan_report_is_read_as_a_runtime_failure(tmp_path: Path) -> None:
    source = tmp_path / "add.c"
    source.write_text("#include <limits.h>\n#include <stdlib.h>\n"
                      "int add(int a, int b) { return a + b; }\n"
                      "int main(int c, char **v) { return add(INT_MAX, atoi(v[1])) > 0; }\n")
    built = subprocess.run(["gcc", "-g", "-fsanitize=undefined", "-o", str(tmp_path / "add"),
                            str(source)], capture_output=True)
    if built.returncode != 0:
        pytest.skip("gcc cannot build with -fsanitize=undefined here")
    outputs = {}
    for name, arg in (("one", "1"), ("two", "2")):
        ran = subprocess.run([str(tmp_path / "add"), arg], capture_output=True, text=True,
                             timeout=60)
        if "runtime error" not in ran.stderr:
            pytest.skip("the sanitizer did not report here")
        outputs[name] = ran.stderr
    found = diagnose_fingerprints(tmp_path, outputs)
    read = _read(outputs["one"])
    assert read["error_type"] == "UndefinedBehaviorSanitizer: signed integer overflow"
    assert found["one"]["fine"] == found["two"]["fine"]


# --- 3. XCTest ----------------------------------------------------------------------------

def test_an_xctest_failure_is_keyed_on_the_test_and_the_assertion(tmp_path: Path) -> None:
    mac = ("/Users/dana/src/shop/Tests/ShopTests/BasketTests.swift:{line}: error: "
           "-[ShopTests.BasketTests {test}] : XCTAssertEqual failed: (\"{a}\") is not equal to "
           "(\"{b}\")\n")
    linux = ("/build/Tests/ShopTests/BasketTests.swift:{line}: error: BasketTests.{test} : "
             "XCTAssertEqual failed: (\"{a}\") is not equal to (\"{b}\")\n")
    texts = {
        "mac": mac.format(line=30, test="testSubtotal", a="7", b="9"),
        "mac_other_values": mac.format(line=33, test="testSubtotal", a="10", b="12"),
        "linux": linux.format(line=30, test="testSubtotal", a="7", b="9"),
        "other_test": mac.format(line=30, test="testDiscount", a="7", b="9"),
        "nil": ("/Users/dana/src/shop/Tests/ShopTests/BasketTests.swift:30: error: "
                "-[ShopTests.BasketTests testSubtotal] : XCTAssertNil failed: \"Optional(3)\"\n"),
    }
    found = diagnose_fingerprints(tmp_path, texts)
    read = _read(texts["mac"])
    assert (read["kind"], read["error_type"]) == ("test", "XCTAssertEqual")  # not "compiler"
    assert read["frames"][-1]["function"] == "BasketTests.testSubtotal"
    assert read["message"] == "failed: (<value>) is not equal to (<value>)"
    assert found["mac"]["fine"] == found["mac_other_values"]["fine"]
    assert found["mac"]["fine"] == found["linux"]["fine"]
    assert found["mac"]["fine"] != found["other_test"]["fine"]
    assert found["mac"]["fine"] != found["nil"]["fine"]


# --- 4. GHC's HasCallStack ---------------------------------------------------------------------

GHC_HEAD = """\
inventory: Prelude.head: empty list
CallStack (from HasCallStack):
  error, called at libraries/base/GHC/List.hs:1646:3 in base:GHC.List
  errorEmptyList, called at libraries/base/GHC/List.hs:85:11 in base:GHC.List
  badHead, called at libraries/base/GHC/List.hs:81:28 in base:GHC.List
  head, called at {file}:{line}:14 in main:{module}
"""


def test_a_ghc_call_stack_keys_the_program_s_own_frames(tmp_path: Path) -> None:
    texts = {
        "stock": GHC_HEAD.format(file="src/Stock.hs", line=22, module="Stock"),
        "stock_moved": GHC_HEAD.format(file="src/Stock.hs", line=40, module="Stock"),
        "report": GHC_HEAD.format(file="src/Report.hs", line=22, module="Report"),
        "own_error": ("inventory: negative stock\nCallStack (from HasCallStack):\n"
                      "  error, called at src/Stock.hs:51:9 in inventory-0.1.0-inplace:Stock\n"),
    }
    found = diagnose_fingerprints(tmp_path, texts)
    read = _read(texts["stock"])
    assert (read["kind"], read["error_type"]) == ("haskell", "ErrorCall")
    own = [f for f in read["frames"] if f["in_project"]]
    assert [(f["file"], f["function"]) for f in own] == [("src/Stock.hs", "head")]
    assert found["stock"]["fine"] == found["stock_moved"]["fine"]  # line numbers left out
    assert found["stock"]["fine"] != found["report"]["fine"]  # called from elsewhere
    own_error = _read(texts["own_error"])
    assert [f["function"] for f in own_error["frames"] if f["in_project"]] == ["error"]
    assert own_error["message"] == "inventory: negative stock"
