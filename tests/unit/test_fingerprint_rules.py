"""The normalization table: each rule masks its shape, counts, and explains itself."""

from __future__ import annotations

import pytest

from pipeline.fingerprint.paths import normalize_path
from pipeline.fingerprint.rules import DEFAULT_NORMALIZER, RULES, rule

EXAMPLES = {
    "url": "fetch https://api.example.com/v1/items?id=3 failed",
    "email": "mail to ann.lee@example.org bounced",
    "uuid": "job 123e4567-e89b-12d3-a456-426614174000 lost",
    "id": "api error, RequestID: 7C0F3A9E1B2D4C56, HostID: dGhpcyBpcyBhbiBpZA==",
    "timestamp": "at 2026-11-22T10:00:00.123Z it broke",
    "datetext": "connection at Fri Jun 17 07:07:00 2005 closed",
    "time": "started 07:07:00 ok",
    "versions": "foo==9 (from versions: 1.0.0, 1.0.1)",
    "count": "Back-off restarting failed container (x12 over 5m)",
    "worker": "[gw3] FAILED tests/test_a.py::test_b",
    "pod": "Back-off restarting failed container api in pod api-dfbcq-xkzwt_prod",
    "user": "password authentication failed for user 'alice'",
    "input": "could not convert string to float: 'n/a'",
    "host": "cannot reach build-7.example.com now",
    "hex": "segfault at 0x7ffd1234 ip",
    "hash": "commit 3f2a9bc1d not found",
    "path": "open /var/lib/app/data.db failed",
    "duration": "timed out after 1.5s here",
    "size": "stored 12.5 KB in memory",
    "kvquoted": "user='ann lee' denied",
    "idtoken": "block blk_38865049 missing",
    "num": "seen 137 times",
}
#: rules that keep what they match (a later rule must not mask it)
KEPT = {"code": "exit 137 seen",
        "classname": "psycopg2.errors.UndefinedColumn: column does not exist",
        "datedname": "index logs-",
        "errcode": "[ERROR] [MY-012592] [InnoDB] Operating system error"}


def test_every_rule_has_an_example_and_a_reason() -> None:
    assert {r.name for r in RULES} == set(EXAMPLES) | set(KEPT)
    assert all(r.why for r in RULES)
    assert {r.name for r in RULES if r.keep} == set(KEPT)


@pytest.mark.parametrize("name", sorted(KEPT))
def test_kept_rules_keep_their_value(name: str) -> None:
    masked = DEFAULT_NORMALIZER.mask(KEPT[name])
    assert masked.text == KEPT[name] and not masked.counts


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_rule_masks_its_shape(name: str) -> None:
    masked = DEFAULT_NORMALIZER.mask(EXAMPLES[name])
    assert f"<{name}>" in masked.text
    assert masked.counts[name] >= 1


def test_counts_and_explain() -> None:
    masked = DEFAULT_NORMALIZER.mask("retry 3 of 5 to 10.0.0.1")
    assert masked.counts == {"num": 2, "host": 1}
    explained = DEFAULT_NORMALIZER.explain("retry 3 of 5 to 10.0.0.1")
    assert any(line.startswith("<num>: 2 replaced") for line in explained)
    assert rule("host").name == "host"


def test_words_are_left_alone() -> None:
    text = "ModuleNotFoundError: No module named yaml"
    assert DEFAULT_NORMALIZER.normalize(text) == text


def test_paths_collapse_environment_prefixes() -> None:
    assert normalize_path("/srv/co/app/x.py", repo="/srv/co") == "app/x.py"
    lib = "/usr/lib/python3.11/site-packages/requests/api.py"
    assert normalize_path(lib) == "<site-packages>/requests/api.py"
    assert normalize_path("/tmp/pytest-of-u/pytest-3/proj/app/x.py").endswith("proj/app/x.py")
    # a folder of checkouts (~/src) and the project's folder are no part of the path in it
    assert normalize_path("/home/ann/src/app/x.py") == "x.py"


def test_pathological_tokens_stay_linear() -> None:
    import time

    start = time.perf_counter()
    for text in ("a." * 20000, "a-" * 20000, ("a." * 90 + " ") * 100):
        DEFAULT_NORMALIZER.normalize(text)
    assert time.perf_counter() - start < 2.0  # was 20+ s before the blob pre-pass
    assert DEFAULT_NORMALIZER.mask("x " + "a." * 200).counts["blob"] == 1


def test_meaningful_numbers_are_identity_and_ids_are_not() -> None:
    from pipeline.fingerprint import fingerprint_text

    def fine(text: str) -> str:
        return fingerprint_text(text).fine

    http = "urllib.error.HTTPError: HTTP Error {}: Too Many Requests"
    assert fine(http.format(401)) != fine(http.format(429))
    curl = "curl: (22) The requested URL returned error: {}"
    assert fine(curl.format(401)) != fine(curl.format(429))
    assert fine("PermissionError: [Errno 13] denied") != fine("PermissionError: [Errno 2] denied")
    assert fine("ERROR job exited with code 137") != fine("ERROR job exited with code 1")
    assert fine("ERROR killed by signal 9") != fine("ERROR killed by signal 15")
    # a request id, a port, a line number: data, not identity
    assert fine("ERROR request 8812731 failed") == fine("ERROR request 1122334 failed")
    assert fine("ERROR cannot bind port 8080") == fine("ERROR cannot bind port 9090")
    assert fine("ERROR status 500 at line 12") == fine("ERROR status 500 at line 99")
    normalized = DEFAULT_NORMALIZER.normalize("GET /x HTTP/1.1 503 took 12ms")
    assert normalized.endswith("503 took <duration>")
