"""Grouping fixes of QA s15e D5-D8 (fixZ5): Go's ``internal/`` packages are the project's
code, a peer named by the message's grammar (libpq, MySQL, Node's DNS codes, host keys) and
``localhost`` are one ``<host>``, ids and pre-release versions are masked whole while an HTTP
status after ``StatusCode:`` is kept, and ``/src`` and ``/build`` are container checkouts.
Each case is realistic tool output; the last test runs ``heal fingerprint``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pipeline.fingerprint import fingerprint_text
from pipeline.fingerprint.paths import is_library, normalize_path

ROOT = Path(__file__).resolve().parents[2]


def _fines(*texts: str) -> set[str]:
    return {fingerprint_text(text).fine for text in texts}


# -- D5: Go's internal/ is the project's own code ---------------------------------------------

_GO_BUILD = "# github.com/shop/orders/internal/billing\n{path}:{line}:9: undefined: roundCents"


def test_a_go_build_error_in_two_files_of_internal_is_two_errors() -> None:
    invoice = fingerprint_text(_GO_BUILD.format(path="internal/billing/invoice.go", line=31))
    refund = fingerprint_text(_GO_BUILD.format(path="internal/billing/refund.go", line=58))
    assert invoice.fine != refund.fine
    assert invoice.params["file"] == "internal/billing/invoice.go"
    assert refund.params["line"] == 58


def test_a_go_file_reads_the_same_relative_dotted_and_absolute() -> None:
    paths = ("internal/billing/invoice.go", "./internal/billing/invoice.go",
             "/home/runner/work/orders/orders/internal/billing/invoice.go",
             "/build/internal/billing/invoice.go")
    assert len(_fines(*(_GO_BUILD.format(path=p, line=31) for p in paths))) == 1


def test_only_the_runtimes_internals_are_libraries() -> None:
    # Node before 16 printed its internals bare; node: since
    assert is_library("internal/modules/cjs/loader.js")
    assert is_library("node:internal/process/task_queues")
    assert not is_library("internal/billing/invoice.go")
    # GOROOT (the Go distribution's own packages, its internal/ too), however installed
    assert is_library("/usr/local/go/src/internal/poll/fd_unix.go")
    assert (normalize_path("/opt/hostedtoolcache/go/1.22.3/x64/src/net/http/server.go")
            == normalize_path("/usr/local/go/src/net/http/server.go")
            == "<goroot>/net/http/server.go")
    # a GOPATH project is no GOROOT
    assert not is_library("/home/ann/go/src/github.com/shop/orders/main.go")


# -- D6: a peer named by the grammar, and localhost ---------------------------------------------

def test_a_bare_peer_name_where_the_grammar_says_host_is_one_host() -> None:
    libpq = ('psycopg2.OperationalError: connection to server at "{}" ({}), port 5432 failed:'
             " Connection refused")
    assert len(_fines(libpq.format("pg.prod.internal", "10.4.0.12"),
                      libpq.format("postgres", "172.19.0.3"),
                      libpq.format("localhost", "127.0.0.1"))) == 1
    resolve = ('psycopg2.OperationalError: could not translate host name "{}" to address:'
               " Temporary failure in name resolution")
    assert len(_fines(resolve.format("db"), resolve.format("pg-primary"))) == 1
    mysql = "ERROR 1045 (28000): Access denied for user 'shop'@'{}' (using password: YES)"
    assert len(_fines(mysql.format("172.19.0.7"), mysql.format("localhost"),
                      mysql.format("app"))) == 1
    node = ("Error: getaddrinfo {} {}\n"
            "    at GetAddrInfoReqWrap.onlookup [as oncomplete] (node:dns:107:26)")
    assert len(_fines(node.format("ENOTFOUND", "redis"),
                      node.format("ENOTFOUND", "cache.shop.internal"))) == 1
    assert len(_fines(node.format("EAI_AGAIN", "redis"), node.format("EAI_AGAIN", "mq"))) == 1
    keys = "kafka: client has run out of available brokers to talk to (host={} port=9092)"
    assert len(_fines(keys.format("broker"), keys.format("10.1.2.3"))) == 1
    assert len(_fines("redis: connection refused (hostname: cache)",
                      "redis: connection refused (hostname: 10.9.8.7)")) == 1


def test_localhost_is_a_peer_anywhere_and_other_words_stay() -> None:
    assert len(_fines("ERROR: could not connect to localhost: Connection refused",
                      "ERROR: could not connect to 10.0.0.9: Connection refused")) == 1
    # a bare word without the grammar is no host: another word is another error
    assert len(_fines("ERROR: could not connect to inventory: Connection refused",
                      "ERROR: could not connect to payments: Connection refused")) == 2
    fp = fingerprint_text("ERROR: Access denied for user 'shop'@'localhost'")
    # (the quoted user is masked too since the "user" rule: who, not what failed)
    assert "'<user>'@'<host>'" in fp.normalized
    # the host param keeps its value where it had one, as before
    dial = fingerprint_text("dial tcp db.internal:5432: connect: connection refused")
    assert dial.params["host"] == "db.internal"
    # refused and not found are still two errors
    assert len(_fines("Error: getaddrinfo ENOTFOUND redis",
                      "Error: connect ECONNREFUSED redis:6379")) == 2


# -- D7: ids and versions whole; a status kept ------------------------------------------------

_S3 = ("Error: creating S3 Bucket (shop-assets): operation error S3: CreateBucket, https response"
       " error StatusCode: {status}, RequestID: {rid}, HostID: {hid}, api error {code}")


def test_request_and_host_ids_are_masked_whole_whatever_their_characters() -> None:
    texts = [_S3.format(status=409, rid=rid, hid=hid, code="BucketAlreadyExists")
             for rid, hid in (
                 ("4T2QW7N0C8XK5B1J",
                  "Yt3mO5c+9Rk2pQ0rWdX1v8eLz4n6Hs7ag2Tu/mJk0bC1fEo9iA3zD5sLq8w="),
                 ("9A1F0C3B7E2D8F64", "bm90IGEgcmVhbCBob3N0IGlkIGJ1dCBsb29rcyBsaWtlIG9uZQ=="),
                 ("R8SYZ2Q4W6E1T3U5", "d2hhdGV2ZXIgaXQgaXMgaXQgaXMgYmFzZTY0IGFuZCBsb25n"))]
    assert len(_fines(*texts)) == 1


def test_an_http_status_after_statuscode_is_kept() -> None:
    conflict = _S3.format(status=409, rid="4T2QW7N0C8XK5B1J", hid="aGk1=",
                          code="BucketAlreadyExists")
    forbidden = _S3.format(status=403, rid="4T2QW7N0C8XK5B1J", hid="aGk1=",
                           code="BucketAlreadyExists")
    assert fingerprint_text(conflict).fine != fingerprint_text(forbidden).fine
    assert "StatusCode: 409" in fingerprint_text(conflict).normalized
    assert len(_fines("upload failed: status code: 503", "upload failed: status code: 502")) == 2


def test_a_pre_release_version_is_one_version() -> None:
    pull = ("docker: Error response from daemon: manifest for ghcr.io/shop/api:{} not found:"
            " manifest unknown: manifest unknown.")
    assert len(_fines(*(pull.format(v) for v in ("3.1.0", "4.0.0-rc.2", "4.0.0-beta.1",
                                                 "4.0.0-rc1")))) == 1
    # an ordinary hyphenated word after a number stays
    assert "-fast" in fingerprint_text("option 1.2-fast unknown").normalized


def test_a_buildkit_ref_is_one_id_from_dockerd_or_a_buildx_builder() -> None:
    copy = ('ERROR: failed to solve: failed to compute cache key: failed to calculate checksum'
            ' of ref {}::{}: "/dist/server.js": not found')
    assert len(_fines(copy.format("moby", "wq8zu0c4kd5m2lrx7thbn6j1e"),
                      copy.format("b7e0c6a1-3f52-4d8e-9a17-0c2e5f4d6b38",
                                  "p3v9kx0s2mdz7q1w4yhg8c5rt"))) == 1


# -- D8: /src and /build are container checkouts ----------------------------------------------

def test_src_and_build_workdirs_read_like_the_ci_checkout() -> None:
    cs = ("{root}/src/Shop.Billing/Invoices/InvoiceService.cs(42,31): error CS0103: The name"
          " 'vatRate' does not exist in the current context [{root}/src/Shop.Billing/Shop.Billing"
          ".csproj]")
    assert len(_fines(*(cs.format(root=root) for root in (
        "/src", "/home/runner/work/shop/shop", "/builds/acme/shop")))) == 1
    panic = ("panic: runtime error: index out of range [3] with length 3\n\ngoroutine 1 [running]:"
             "\nmain.(*Queue).Pop(...)\n\t{root}/internal/queue/buffer.go:57\nmain.main()\n"
             "\t{root}/cmd/worker/main.go:22 +0x1d\nexit status 2")
    assert len(_fines(*(panic.format(root=root) for root in (
        "/build", "/home/runner/work/worker/worker", "/app")))) == 1


# -- the CLI ------------------------------------------------------------------------------------

def test_heal_fingerprint_groups_peers_and_ids_and_splits_internal_files(tmp_path: Path) -> None:
    lines = [
        "ERROR db: getaddrinfo ENOTFOUND postgres",
        "ERROR db: getaddrinfo ENOTFOUND pg.shop.internal",
        "internal/billing/invoice.go:31:9: undefined: roundCents",
        "internal/billing/refund.go:58:9: undefined: roundCents",
        "/home/runner/work/orders/orders/internal/billing/invoice.go:31:9: undefined: roundCents",
    ]
    src = tmp_path / "errors.log"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())",
         "fingerprint", "--json", str(src)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    fines = [r["fine"] for r in records]
    assert fines[0] == fines[1]
    assert fines[2] != fines[3]
    assert fines[2] == fines[4]
    assert records[2]["params"]["file"] == "internal/billing/invoice.go"
