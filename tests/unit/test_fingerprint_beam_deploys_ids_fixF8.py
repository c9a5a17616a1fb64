"""Elixir frames are frames, not compiler diagnostics; a deploy's release folder is no part
of a frame's key; digit-less random ids, a fleet's short host names and a field path's index
are masked alike. Through the real command (`heal diagnose --offline --json` in a
subprocess) and on the parts."""

from __future__ import annotations

from pathlib import Path

from pipeline.fingerprint.extract import extract
from pipeline.fingerprint.parsers_lines import parse_diagnostic
from pipeline.fingerprint.paths import normalize_path
from pipeline.fingerprint.rules import DEFAULT_NORMALIZER
from tests._diagnose import diagnose_fingerprints

#: an ExUnit failure: the test, then what failed in it, then its stack
_EXUNIT = ("  1) test {name} (Shop.CartTest)\n"
           "     test/shop/cart_test.exs:{line}\n"
           "     {failure}\n"
           "     stacktrace:\n"
           "       (shop 0.3.0) lib/shop/cart.ex:{inner}: Shop.Cart.total/1\n"
           "       test/shop/cart_test.exs:{outer}: (test)\n")
#: an Elixir script's uncaught exception over its frames
_CRASH = ("** ({kind}) {msg}\n"
          "    (ledger 1.2.0) lib/ledger/import.ex:{line}: Ledger.Import.row/2\n"
          "    (elixir 1.16.0) lib/enum.ex:1700: Enum.\"-map/2-lists^map/1-1-\"/2\n")


def test_exunit_failures_of_one_test_split_by_what_failed(tmp_path: Path) -> None:
    # before: both read "error: (test)" from the frame line, one key for every failure
    texts = {
        "raise_1": _EXUNIT.format(name="sums lines", line=8, inner=31, outer=14,
                                  failure="** (ArgumentError) argument error: :nil"),
        "raise_2": _EXUNIT.format(name="sums lines", line=9, inner=33, outer=17,
                                  failure="** (ArgumentError) argument error: :nil"),
        "assert": _EXUNIT.format(name="sums lines", line=8, inner=31, outer=14,
                                 failure="Assertion with === failed"),
        "other_test": _EXUNIT.format(name="applies coupons", line=8, inner=31, outer=14,
                                     failure="Assertion with === failed"),
    }
    fps = diagnose_fingerprints(tmp_path, texts)
    fine = {name: fp["fine"] for name, fp in fps.items()}
    assert fine["raise_1"] == fine["raise_2"]
    assert len({fine["raise_1"], fine["assert"], fine["other_test"]}) == 3, fine
    found = extract(texts["raise_1"])
    assert (found.kind, found.error_type, found.tool) == ("test", "ArgumentError", "exunit")
    assert found.frames[-1].function == "sums lines"
    assert extract(texts["assert"]).message == "Assertion with === failed"


def test_elixir_crashes_at_one_frame_split_by_exception(tmp_path: Path) -> None:
    texts = {
        "arith": _CRASH.format(kind="ArithmeticError", msg="bad argument in arithmetic"
                               " expression", line=12),
        "arith_moved": _CRASH.format(kind="ArithmeticError", msg="bad argument in arithmetic"
                                     " expression", line=15),
        "match": _CRASH.format(kind="MatchError", msg="no match of right hand side value:"
                               " :error", line=12),
    }
    fps = diagnose_fingerprints(tmp_path, texts)
    assert fps["arith"]["fine"] == fps["arith_moved"]["fine"]
    assert fps["arith"]["fine"] != fps["match"]["fine"]
    frames = extract(texts["arith"]).frames
    assert [(f.function, f.in_project) for f in frames] == [
        ('Enum."-map/2-lists^map/1-1-"/2', False), ("Ledger.Import.row/2", True)]


def test_diagnostics_with_or_without_a_severity_still_read() -> None:
    for line, sev in (("src/net.c:14:5: error: 'fd' undeclared", "error"),
                      ("app/Main.java:3: error: cannot find symbol", "error"),
                      ("lib/a.rs:2:9: warning: unused variable: `x`", "warning"),
                      ("./cmd/tool/main.go:9:2: undefined: Dial", "error")):
        found = parse_diagnostic(line)
        assert found is not None and found.error_type == sev, line
    # an Elixir frame alone is no diagnostic
    assert parse_diagnostic("    lib/pay/refund.ex:40: Pay.Refund.run/3") is None
    assert parse_diagnostic("    test/pay_test.exs:7: (test)") is None
    assert extract("** (RuntimeError) boom\n    lib/pay/refund.ex:40: Pay.Refund.run/3"
                   ).kind == "elixir"


#: a worker's traceback under a deploy's folder for its release
_DEPLOYED = ('Traceback (most recent call last):\n'
             '  File "{root}/jobs/sync.py", line 88, in handle\n'
             '    row = rows[0]\n'
             'IndexError: list index out of range\n')


def test_one_file_in_every_release_is_one_frame(tmp_path: Path) -> None:
    # before: the release's stamp, version or hash was a component of the key path
    roots = {
        "stamp": "/srv/billing/releases/20260101-0930",
        "stamp_t": "/var/www/billing/releases/20260214T101500",
        "version": "/opt/billing/releases/v2.7.1",
        "sha": "/srv/billing/releases/9c1d2e4f",
        "hashed_dir": "/var/www/billing-7a6b5c4d3e",
        "current": "/var/www/billing/current",
    }
    texts = {name: _DEPLOYED.format(root=root) for name, root in roots.items()}
    fines = {name: fp["fine"] for name, fp in diagnose_fingerprints(tmp_path, texts).items()}
    assert len(set(fines.values())) == 1, fines


def test_release_folders_are_cut_by_shape_only() -> None:
    assert normalize_path("/srv/shop/deploys/1f2e3d4c5b/app/models.py") == "app/models.py"
    assert normalize_path("/opt/shop/releases/2.0.1/lib/shop/x.rb") == "lib/shop/x.rb"
    # a word is no release id, nor a folder named like one in a relative path
    assert normalize_path("/home/ann/src/shop/releases/notes.py") == "releases/notes.py"
    assert normalize_path("docs/releases/v2/notes.py") == "docs/releases/v2/notes.py"
    assert normalize_path("/home/ann/backend/app/x.py") == "app/x.py"


def test_masks_are_consistent_for_ids_hosts_and_indexes(tmp_path: Path) -> None:
    texts = {
        "id_digits": "2026-01-02 03:04:05 ERROR payout rejected payout_id=po_8Hq2ZkLm4XtR\n",
        "id_letters": "2026-01-02 03:04:05 ERROR payout rejected payout_id=po_HqvZkLmQXtRw\n",
        "host_short": "2026-01-02 03:04:05 ERROR lost lease held by cache-7 during resync\n",
        "host_long": "2026-01-02 03:04:05 ERROR lost lease held by cache-31 during resync\n",
        "index_a": "ValidationError: items.4.price: Input should be a valid number\n",
        "index_b": "ValidationError: items.17.price: Input should be a valid number\n",
    }
    fine = {name: fp["fine"] for name, fp in diagnose_fingerprints(tmp_path, texts).items()}
    assert fine["id_digits"] == fine["id_letters"]
    assert fine["host_short"] == fine["host_long"]
    assert fine["index_a"] == fine["index_b"]


def test_words_are_never_masked_as_ids() -> None:
    norm = DEFAULT_NORMALIZER.normalize
    for kept in ("state=uncompensated", "request_id=abcdefghijkl", "call get_UserNameById",
                 "libcrypto.so.3: cannot open shared object file", "ssh2 eth0 ipv6",
                 "the interoperable extraordinary characteristics"):
        assert norm(kept) == kept, kept
    assert norm("org-jGKpJhUVGcmX over quota") == "<id> over quota"
    assert norm("trace_id=QmXvRtLpZbNw") == "trace_id=<id>"
    # fixJ8: a name with a number keeps its name, only the number is masked (was <idtoken>)
    assert norm("web-3 web-12 utf-8") == "web-<num> web-<num> utf-<num>"
    assert norm("messages.93: bad") == "messages.<num>: bad"
    assert "<idtoken>" not in norm("build cli-0.1.0.0.")  # a version, not a fleet host
