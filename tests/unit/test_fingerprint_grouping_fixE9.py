"""Grouping fixes of QA s19a D5, D8, D10, D11 (fixE9): a browser frame in a content-hashed
bundle is its chunk's name and function, whatever host and deploy served it; a message a
wrapper reports (``returned message: "..."``) and a test's name under a bare ``Failed`` say
the coarse key's kind; digit-less random ids of a shape no word has are masked; a MySQL 8
error log reads the same under a CI runner's stamp and keeps its error code. The texts are
this file's own (other tools and wording than the QA corpus); the first tests run the real
``heal diagnose`` command."""

from __future__ import annotations

from pathlib import Path

from pipeline.fingerprint import fingerprint_text
from pipeline.fingerprint.paths import bundle_name, normalize_path
from pipeline.fingerprint.rules import DEFAULT_NORMALIZER
from pipeline.runnerlines import strip_stamps
from tests._diagnose import diagnose_fingerprints

# -- D5: a minified frame is its bundle's chunk name and its function ---------------------------

_VITE = """Uncaught TypeError: Cannot read properties of undefined (reading '{field}')
    at {func} ({origin}/assets/index-{h1}.js:1:48213)
    at Ol (https://{origin_host}/assets/vendor-{h2}.js:40:9120)
    at Ib (https://{origin_host}/assets/vendor-{h2}.js:40:31870)
"""


def _vite(origin: str, h1: str, h2: str, func: str = "renderInvoice",
          field: str = "total") -> str:
    host = origin.split("://", 1)[1]
    return _VITE.format(origin=origin, origin_host=host, h1=h1, h2=h2, func=func, field=field)


_ANGULAR = """ERROR TypeError: Cannot read properties of null (reading 'subscribe')
    at OrdersComponent.ngOnInit ({base}main.{h1}.js:1:120944)
    at callHook ({base}vendor.{h2}.js:1:933021)
"""


def test_a_bundle_frame_keeps_its_key_across_deploys_hosts_and_public_paths(
        tmp_path: Path) -> None:
    found = diagnose_fingerprints(tmp_path, {
        # two deploys of one Vite app: another host, other content hashes (one without a
        # digit: Rollup's base64url), another bundle of the same chunk names
        "vite_a": _vite("https://static.billing.example.net", "BxT3k9aZ", "Dq8-Lm_2"),
        "vite_b": _vite("https://d3k1x.cloudfront.net", "CwTkqaZw", "a9F7kq2P"),
        "vite_other_cause": _vite("https://d3k1x.cloudfront.net", "CwTkqaZw", "a9F7kq2P",
                                  func="renderRefund", field="lines"),
        # Angular's 16 hex characters, served from a CDN prefix and from the app's own path
        "ng_a": _ANGULAR.format(base="https://cdn.example.org/orders/", h1="8f3b1c2d4e5f6a7b",
                                h2="0c1d2e3f4a5b6c7d"),
        "ng_b": _ANGULAR.format(base="https://orders.example.org/", h1="93ac0e11b2d4f6a8",
                                h2="7d6c5b4a3f2e1d0c"),
    })
    assert found["vite_a"]["fine"] == found["vite_b"]["fine"]
    assert found["vite_other_cause"]["fine"] != found["vite_a"]["fine"]
    assert found["ng_a"]["fine"] == found["ng_b"]["fine"]


def test_a_hashed_bundle_is_its_stem_and_a_named_file_keeps_its_path() -> None:
    assert normalize_path("https://cdn.example.com/assets/main.3f9a1c2b.js") == "main.js"
    assert (normalize_path("https://shop.example.com/static/js/vendors~chunk.3f9a1c2b.chunk.js")
            == "vendors~chunk.chunk.js")
    assert normalize_path("https://x.example.com/_next/static/chunks/framework-2c79e2a64abdb08b.js"
                          ) == "framework.js"
    assert normalize_path("/srv/web/dist/chunk-5QGT3BNO.js") == "chunk.js"  # esbuild's base32
    # no hash: a word, a version, a CamelCase name or a chunk's path stays
    for name in ("react-dom.production.min.js", "polyfills-es2015.js", "vendor-ProductList.js",
                 "vendors-node_modules_react-dom_index_js.js", "app.module.js"):
        assert bundle_name(name) == "", name
    # a dev server's source file: its path in the project, without the origin and query
    assert (normalize_path("http://localhost:5173/src/components/Cart.tsx?t=1712")
            == "src/components/Cart.tsx")
    assert normalize_path("file:///home/ann/src/shop/web/main.js") == "web/main.js"


# -- D8: the coarse key's words name the cause, not the wrapper's outcome -----------------------

_CFN = ("CREATE_FAILED | AWS::S3::Bucket | ReportsBucket{n} | Resource handler returned"
        ' message: "{cause}" (RequestToken: {token}, HandlerErrorCode: {code})\n'
        "Error: The stack named {stack} failed creation, it may need to be manually deleted"
        ' from the AWS console: ROLLBACK_COMPLETE: Resource handler returned message: "{cause}"'
        " (RequestToken: {token}, HandlerErrorCode: {code})\n")


def test_a_reported_message_and_a_failed_tests_name_make_the_coarse_key(
        tmp_path: Path) -> None:
    exists = "reports-acme already exists"
    denied = "Access Denied (Service: S3, Status Code: 403)"
    found = diagnose_fingerprints(tmp_path, {
        "cfn_exists_a": _CFN.format(n="A1", cause=exists, stack="ReportsStack",
                                    token="0d2f9c1e-1b7a-4c55-9a60-1f0c2b3d4e5f",
                                    code="AlreadyExists"),
        "cfn_exists_b": _CFN.format(n="B7", cause=exists, stack="ReportsStack",
                                    token="7a1c0e55-2b3d-4f6a-8b9c-0d1e2f3a4b5c",
                                    code="AlreadyExists"),
        "cfn_denied": _CFN.format(n="A1", cause=denied, stack="ReportsStack",
                                  token="0d2f9c1e-1b7a-4c55-9a60-1f0c2b3d4e5f",
                                  code="AccessDenied"),
        # MSTest / dotnet test: a bare outcome and the test's name
        "test_a": "  Failed InvoiceTests.Totals_IncludeTax [41 ms]\n",
        "test_b": "  Failed InvoiceTests.Refund_RestoresStock [12 ms]\n",
        "pod": "Status:           Failed\n",
    })
    assert found["cfn_exists_a"]["coarse"] == found["cfn_exists_b"]["coarse"]
    assert found["cfn_denied"]["coarse"] != found["cfn_exists_a"]["coarse"]
    assert found["test_a"]["coarse"] != found["test_b"]["coarse"]
    assert found["pod"]["coarse"] not in (found["test_a"]["coarse"], found["test_b"]["coarse"])


# -- D10: digit-less random ids by their shape ----------------------------------------------------

def test_digit_less_random_ids_of_a_shape_no_word_has_are_masked(tmp_path: Path) -> None:
    dart = ("E/flutter ( 8121): [ERROR:flutter/runtime/dart_vm_initializer.cc(41)] Unhandled"
            " Exception: setState() called after dispose(): _InvoiceViewState#{h}(lifecycle"
            " state: defunct, not mounted)\n")
    mount = ('MountVolume.SetUp failed for volume "{v}" : secret "billing-db" not found\n')
    found = diagnose_fingerprints(tmp_path, {
        "dart_a": dart.format(h="fbcae"), "dart_b": dart.format(h="3a9c0"),
        "mount_a": mount.format(v="default-token-xqzkd"),
        "mount_b": mount.format(v="default-token-2fk9p"),
    })
    assert found["dart_a"]["fine"] == found["dart_b"]["fine"]
    assert found["mount_a"]["fine"] == found["mount_b"]["fine"]


def test_words_and_names_of_those_shapes_stay() -> None:
    def mask(text: str) -> str:
        return DEFAULT_NORMALIZER.mask(text).text

    assert mask("token KqPzLmWnRtYvBcDx expired") == "token <idtoken> expired"
    for kept in ("getElementsByTagName", "AbstractSingletonProxyFactoryBean",
                 "XMLHttpRequestEventTarget", "force-redirect-https", "kube-api-access",
                 "canGoToNextPage", "web-12"):
        assert "<idtoken>" not in mask(kept), kept


# -- D11: a MySQL 8 error log under a runner's stamp -------------------------------------------

_MYSQL = ("{stamp}2025-03-09T04:12:51.{frac}Z {thread} [ERROR] [MY-{code}] [InnoDB] {msg}\n")


def test_a_mysql_error_log_reads_the_same_under_a_runner_stamp_and_keeps_its_code(
        tmp_path: Path) -> None:
    full = "Tablespace is full: unable to extend ./shop/orders.ibd."
    found = diagnose_fingerprints(tmp_path, {
        "plain": _MYSQL.format(stamp="", frac="330412", thread=17, code="012814", msg=full),
        "stamped": _MYSQL.format(stamp="2025-03-09T04:12:55.1234567Z ", frac="902211",
                                 thread=203, code="012814", msg=full),
        "other_code": _MYSQL.format(stamp="", frac="330412", thread=17, code="012815",
                                    msg=full),
    })
    assert found["plain"]["fine"] == found["stamped"]["fine"]
    assert found["other_code"]["fine"] != found["plain"]["fine"]
    text = fingerprint_text(_MYSQL.format(stamp="", frac="1", thread=3, code="012814", msg=full))
    assert "[MY-012814] [InnoDB]" in text.normalized


def test_only_a_stamp_right_after_the_runners_goes_with_it() -> None:
    line = "2025-03-09T04:12:55.1234567Z 2025-03-09T04:12:51.330412Z 17 [Note] ready\n"
    assert strip_stamps(line) == "17 [Note] ready\n"
    # a program's stamp of another shape stays (the normalizer masks it)
    line = "2025-03-09T04:12:55.1234567Z 2025-03-09 04:12:51 UTC [81] LOG:  ready\n"
    assert strip_stamps(line) == "2025-03-09 04:12:51 UTC [81] LOG:  ready\n"
