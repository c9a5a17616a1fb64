"""PHPUnit's failed tests are read like the other runners' (QA s16d R8: every assertSame
failure of every project was one fine and one coarse fingerprint). PHPUnit 9 and 10 reports
written for these tests."""

from __future__ import annotations

from pathlib import Path

from pipeline.fingerprint import fingerprint_text
from tests._diagnose import diagnose_texts


def _report(version: str, entries: list[tuple[str, str]], what: str = "failure") -> str:
    """A PHPUnit run whose failed tests are ``entries`` (header, body), in that order."""
    many = "were" if len(entries) > 1 else "was"
    plural = "s" if len(entries) > 1 else ""
    body = "\n--\n\n".join(f"{i}) {head}\n{rest}" for i, (head, rest) in
                           enumerate(entries, 1))
    verdict = "FAILURES!" if what == "failure" else "ERRORS!"
    return (f"PHPUnit {version} by Sebastian Bergmann and contributors.\n\n"
            "Runtime:       PHP 8.2.14\nConfiguration: /srv/app/phpunit.xml\n\n"
            ".....F..F...                                                    12 / 12 (100%)\n\n"
            "Time: 00:00.318, Memory: 24.00 MB\n\n"
            f"There {many} {len(entries)} {what}{plural}:\n\n{body}\n"
            f"{verdict}\nTests: 12, Assertions: 31, {what.title()}s: {len(entries)}.\n")


_SAME_A = ("Tests\\Unit\\InvoiceTest::testTaxIsRounded",
           "Failed asserting that 19.99 is identical to 20.0.\n\n"
           "/srv/app/tests/Unit/InvoiceTest.php:27\n")
_SAME_B = ("Tests\\Unit\\StockTest::testReserveDecrements",
           "Failed asserting that 4 is identical to 3.\n\n"
           "/srv/app/tests/Unit/StockTest.php:58\n")
_ERROR = ("Tests\\Feature\\ShipTest::testLabel",
          "App\\Shipping\\CarrierDown: carrier api returned 503\n\n"
          "/srv/app/src/Shipping/Carrier.php:71\n/srv/app/src/Shipping/Label.php:18\n"
          "/srv/app/tests/Feature/ShipTest.php:33\n")


def test_heal_diagnose_tells_assert_same_failures_of_different_tests_apart(
        tmp_path: Path) -> None:
    texts = {"a10": _report("10.5.9", [_SAME_A]), "b10": _report("10.5.9", [_SAME_B]),
             "a9": _report("9.6.15", [_SAME_A]),
             # (the same failure on another machine, with other values and another line)
             "a_ci": _report("10.5.9", [(_SAME_A[0], _SAME_A[1].replace("19.99", "21.5")
                                         .replace("/srv/app", "/home/runner/work/shop/shop")
                                         .replace(":27", ":29"))])}
    out = {name: {**found["fingerprint"], "params": found["params"]}
           for name, found in diagnose_texts(tmp_path, texts).items()}
    assert out["a10"]["fine"] != out["b10"]["fine"]
    assert out["a10"]["coarse"] != out["b10"]["coarse"]
    assert out["a10"]["fine"] == out["a9"]["fine"] == out["a_ci"]["fine"]
    assert out["a10"]["params"]["file"] == "tests/Unit/InvoiceTest.php"
    assert out["a10"]["params"]["line"] == 27


def test_a_phpunit_failure_names_its_test_and_assertion() -> None:
    fp = fingerprint_text(_report("10.5.9", [_SAME_A]))
    ex = fp.extraction
    assert ex is not None and (ex.kind, ex.tool) == ("test", "phpunit")
    assert ex.error_type == "ExpectationFailedException"
    assert ex.message == "Failed asserting that 19.99 is identical to 20.0."
    assert (ex.frames[-1].file, ex.frames[-1].function) == (
        "Tests\\Unit\\InvoiceTest", "testTaxIsRounded")


def test_a_phpunit_error_is_its_exception_with_its_frames_innermost_last() -> None:
    ex = fingerprint_text(_report("9.6.15", [_ERROR], "error")).extraction
    assert ex is not None
    assert (ex.error_type, ex.message) == ("App\\Shipping\\CarrierDown",
                                           "carrier api returned 503")
    assert [f.file for f in ex.frames] == [
        "tests/Feature/ShipTest.php", "src/Shipping/Label.php", "src/Shipping/Carrier.php",
        "Tests\\Feature\\ShipTest"]


def test_a_custom_message_is_kept_and_a_comparison_diff_is_not_read() -> None:
    def equals(expected: str, actual: str) -> str:
        return _report("10.5.9", [(
            "Tests\\Unit\\SlugTest::testSlug with data set \"accents\" ('Été')",
            "slug of the title\nFailed asserting that two strings are equal.\n"
            f"--- Expected\n+++ Actual\n@@ @@\n-'{expected}'\n+'{actual}'\n\n"
            "/srv/app/tests/Unit/SlugTest.php:40\n")])
    one, two = fingerprint_text(equals("ete", "t")), fingerprint_text(equals("x", "y"))
    assert one.fine == two.fine
    assert one.extraction is not None
    assert one.extraction.message == (
        "slug of the title Failed asserting that two strings are equal.")
    assert one.extraction.frames[-1].function == 'testSlug "accents"'


def test_of_several_failed_tests_the_first_by_name_decides_whatever_the_order() -> None:
    assert fingerprint_text(_report("10.5.9", [_SAME_B, _SAME_A])).fine == fingerprint_text(
        _report("10.5.9", [_SAME_A, _SAME_B])).fine
    # (a section of warnings or risky tests is no failed test)
    risky = ("There was 1 risky test:\n\n1) Tests\\Unit\\AaaTest::testNothing\n"
             "This test did not perform any assertions\n\n/srv/app/tests/Unit/AaaTest.php:9\n\n")
    text = _report("10.5.9", [_SAME_B]).replace("FAILURES!", risky + "FAILURES!")
    assert fingerprint_text(text).extraction.frames[-1].function == "testReserveDecrements"
