"""Native crash reports (sanitizers, Swift runtime crashes), kotlinc's own error lines,
exception groups printed without their header, npm's report of a failed script, and masking
of syslog hosts, pod names and quoted user names (QA s16a D9, D10 and what the passes before
left alone). Texts written for these tests, not copied from the QA corpus; each goes through
`heal diagnose` in a subprocess, as a user runs it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pipeline.fingerprint import fingerprint_text
from tests._diagnose import diagnose_fingerprints


def _read(text: str) -> dict[str, Any]:
    """What the fingerprint stage read of ``text`` (its extraction and normalized text:
    ``heal diagnose --json`` prints only the keys, which the tests take from it)."""
    found = fingerprint_text(text)
    return {**found.extraction.to_dict(), "normalized": found.normalized}  # type: ignore[union-attr]

ASAN_UAF = """\
=================================================================
==31337==ERROR: AddressSanitizer: heap-use-after-free on address 0x602000000013 at pc \
0x5606180f11c1 bp 0x7ffdf60b3eb0 sp 0x7ffdf60b3ea8
READ of size 1 at 0x602000000013 thread T0
    #0 0x5606180f11c0 in ring_pop /home/runner/work/netd/netd/src/ring.c:41
    #1 0x5606180f11f6 in main /home/runner/work/netd/netd/src/main.c:12
    #2 0x7eff62445249 in __libc_start_call_main ../sysdeps/nptl/libc_start_call_main.h:58
    #3 0x7eff62445304 in __libc_start_main_impl ../csu/libc-start.c:360
    #4 0x5606180f10b0 in _start (/home/runner/work/netd/netd/build/{prog}+0x10b0)

0x602000000013 is located 3 bytes inside of 16-byte region [0x602000000010,0x602000000020)
freed by thread T0 here:
    #0 0x7eff626b76a8 in __interceptor_free ../../src/libsanitizer/asan/asan_malloc_linux.cpp:52
    #1 0x5606180f11ea in ring_drop /home/runner/work/netd/netd/src/ring.c:30

SUMMARY: AddressSanitizer: heap-use-after-free /home/runner/work/netd/netd/src/ring.c:41 in \
ring_pop
==31337==ABORTING
"""
ASAN_OVERFLOW = """\
=================================================================
==4242==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x602000000024 at pc \
0x556e9819c1c1 bp 0x7ffe28ee8e20 sp 0x7ffe28ee8e18
READ of size 1 at 0x602000000024 thread T0
    #0 0x556e9819c1c0 in ring_pop /home/runner/work/netd/netd/src/ring.c:41
    #1 0x556e9819c1ea in main /home/runner/work/netd/netd/src/main.c:12
    #2 0x7f4332a45249 in __libc_start_call_main ../sysdeps/nptl/libc_start_call_main.h:58
    #3 0x556e9819c0b0 in _start (/home/runner/work/netd/netd/build/netd+0x10b0)

SUMMARY: AddressSanitizer: heap-buffer-overflow /home/runner/work/netd/netd/src/ring.c:41 in \
ring_pop
==4242==ABORTING
"""


def test_a_sanitizer_report_is_keyed_by_its_kind_its_program_and_the_program_s_frame(
        tmp_path: Path) -> None:
    texts = {
        "netd": ASAN_UAF.format(prog="netd"),
        "netd_again": ASAN_UAF.format(prog="netd").replace("31337", "977").replace(
            "0x602000000013", "0x6020000000f3"),
        "relayd": ASAN_UAF.format(prog="relayd"),
        "overflow": ASAN_OVERFLOW,
    }
    found = diagnose_fingerprints(tmp_path, texts)
    netd = found["netd"]
    read = _read(texts["netd"])
    assert read["kind"] == "sanitizer"
    assert read["error_type"] == "AddressSanitizer: heap-use-after-free"
    # the innermost frame is the program's (ring_pop), never libasan's or libc's
    frames = [f for f in read["frames"] if f["in_project"]]
    assert frames[-1]["function"] == "ring_pop"
    assert not any(f["function"].startswith(("__interceptor", "__libc", "_start"))
                   for f in frames)
    assert netd["fine"] == found["netd_again"]["fine"]  # (other pid, other addresses)
    assert netd["fine"] != found["relayd"]["fine"]      # another program, one source
    assert netd["fine"] != found["overflow"]["fine"]    # another kind, one place
    assert _read(texts["overflow"])["error_type"] == "AddressSanitizer: heap-buffer-overflow"


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_a_real_address_sanitizer_report_is_read_as_one(tmp_path: Path) -> None:
    source = tmp_path / "uaf.c"
    source.write_text("#include <stdlib.h>\nint read_buf(char *b) { return b[3]; }\n"
                      "int main(void) { char *b = malloc(16); free(b); return read_buf(b); }\n")
    outputs = {}
    for program in ("alpha", "beta"):
        built = subprocess.run(["gcc", "-g", "-fsanitize=address", "-o",
                                str(tmp_path / program), str(source)], capture_output=True)
        if built.returncode != 0:
            pytest.skip("gcc cannot build with -fsanitize=address here")
        ran = subprocess.run([str(tmp_path / program)], capture_output=True, text=True,
                             timeout=60)
        if "AddressSanitizer" not in ran.stderr:
            pytest.skip("the sanitizer did not report here")
        outputs[program] = ran.stderr
    found = diagnose_fingerprints(tmp_path, outputs)
    alpha = _read(outputs["alpha"])
    assert alpha["error_type"] == "AddressSanitizer: heap-use-after-free"
    assert alpha["frames"][-1]["function"] == "read_buf"
    assert found["alpha"]["fine"] != found["beta"]["fine"]


SWIFT_LOCATION = ("Sources/Shop/ProfileView.swift:54: Fatal error: Unexpectedly found nil "
                  "while unwrapping an Optional value\n")
SWIFT_BACKTRACE = """\
Sources/Shop/ProfileView.swift:54: Fatal error: Unexpectedly found nil while unwrapping an \
Optional value
Current stack trace:
0    libswiftCore.so                    0x00007f2b8c1a2f40 swift_reportError + 50
1    libswiftCore.so                    0x00007f2b8c215b25 _swift_stdlib_reportFatalError + 115
2    Shop                               0x000055d1c3a4b2e1 $s4Shop11ProfileViewV4loadyyF + 273
3    Shop                               0x000055d1c3a4a0b2 main + 66
4    libc.so.6                          0x00007f2b8aa29d90 <unavailable> + 171408
Illegal instruction (core dumped)
"""


def test_a_swift_runtime_crash_is_a_crash_keyed_by_its_message_and_the_program_s_frame(
        tmp_path: Path) -> None:
    texts = {
        "plain": SWIFT_LOCATION,
        "logged": "2024-03-02 10:11:12.602567+0100 Shop[33183:405960] " + SWIFT_LOCATION,
        "other": SWIFT_LOCATION.replace("Unexpectedly found nil while unwrapping an "
                                        "Optional value", "Index out of range"),
        "backtrace": SWIFT_BACKTRACE,
        "xcode": "Thread 1: Fatal error: Unexpectedly found nil while implicitly unwrapping "
                 "an Optional value\n",
        "php": "PHP Fatal error:  Uncaught Error: Call to undefined function foo() in "
               "/var/www/index.php:3\n",
    }
    found = diagnose_fingerprints(tmp_path, texts)
    plain = _read(texts["plain"])
    assert (plain["kind"], plain["error_type"]) == ("swift", "Fatal error")  # not "compiler"
    assert plain["message"] == "Unexpectedly found nil while unwrapping an Optional value"
    assert found["plain"]["fine"] == found["logged"]["fine"]
    assert found["plain"]["fine"] != found["other"]["fine"]
    back = _read(texts["backtrace"])
    assert back["kind"] == "swift"
    assert [f["function"] for f in back["frames"] if f["in_project"]][-1] == (
        "$s4Shop11ProfileViewV4loadyyF")
    assert _read(texts["xcode"])["kind"] == "swift"
    assert _read(texts["php"])["kind"] != "swift"


def test_a_kotlinc_error_outside_gradle_is_a_compiler_diagnostic(tmp_path: Path) -> None:
    new = ("e: file:///home/ci/shop/app/src/main/kotlin/shop/Cart.kt:12:5 Unresolved "
           "reference: totl\n")
    old = "e: /home/ci/shop/app/src/main/kotlin/shop/Cart.kt: (12, 5): Unresolved reference: totl\n"
    found = diagnose_fingerprints(tmp_path, {
        "new": new,
        "old": old,
        "maven": "[INFO] BUILD FAILURE\n" + new + "[ERROR] Failed to execute goal\n",
        "other": new.replace("totl", "sumOf2").replace("Unresolved reference",
                                                       "Type mismatch: inferred type is"),
    })
    extraction = _read(new)
    assert (extraction["kind"], extraction["tool"]) == ("compiler", "kotlinc")
    assert extraction["message"] == "Unresolved reference: totl"
    assert extraction["frames"][-1]["line"] == 12
    assert found["new"]["fine"] == found["old"]["fine"] == found["maven"]["fine"]
    assert found["new"]["fine"] != found["other"]["fine"]


def test_a_syslog_host_is_masked_whatever_stamp_precedes_it(tmp_path: Path) -> None:
    headers = {
        "clock": "Dec  2 09:00:01 {host} billing[812]: ",
        "fraction": "Dec 02 09:00:01.123456 {host} billing[812]: ",
        "iso_zone": "2024-12-02T09:00:01+0000 {host} billing[812]: ",
        "monotonic": "[  812.345678] {host} billing[812]: ",
        "forwarded": "{host} billing[812]: ",
        "rfc5424": "<165>1 2024-12-02T09:00:01.003Z {host} billing 812 - - ",
    }
    texts = {f"{name}_{host}": header.format(host=host) + "lost connection to the ledger\n"
             for name, header in headers.items() for host in ("web-03", "db")}
    found = diagnose_fingerprints(tmp_path, texts)
    for name in headers:
        assert found[f"{name}_web-03"]["fine"] == found[f"{name}_db"]["fine"], name
        assert "<host>" in _read(texts[f"{name}_db"])["normalized"], name


GROUP = """\
  | ExceptionGroup: sync failed (2 sub-exceptions)
  +-+---------------- 1 ----------------
    | {first}
    +---------------- 2 ----------------
    | ValueError: bad host
    +------------------------------------
"""
PYTEST_GROUP = """\
=================================== FAILURES ===================================
__________________________________ test_sync ___________________________________
  + Exception Group Traceback (most recent call last):
  |   File "/src/app/tests/test_sync.py", line 8, in test_sync
  |     asyncio.run(main())
  |   File "/src/app/sync.py", line 5, in main
  |     async with asyncio.TaskGroup() as tg:
  | ExceptionGroup: unhandled errors in a TaskGroup (2 sub-exceptions)
  +-+---------------- 1 ----------------
    | Traceback (most recent call last):
    |   File "/src/app/sync.py", line 2, in fetch_user
    |     raise {first}
    | {first}
    +---------------- 2 ----------------
    | Traceback (most recent call last):
    |   File "/src/app/sync.py", line 3, in fetch_orders
    |     raise ValueError("bad order")
    | ValueError: bad order
    +------------------------------------
=========================== short test summary info ============================
FAILED tests/test_sync.py::test_sync - ExceptionGroup: unhandled errors in a TaskGrou...
1 failed in 0.09s
"""


def test_an_exception_group_is_keyed_by_the_group_and_its_first_sub_exception(
        tmp_path: Path) -> None:
    texts = {
        "headless": "2024-05-01 10:00:00,001 ERROR app: sync failed\n"
                    + GROUP.format(first="TypeError: port must be int"),
        "headless_other": "2024-05-01 10:00:00,001 ERROR app: sync failed\n"
                          + GROUP.format(first="KeyError: 'port'"),
        "pytest": PYTEST_GROUP.format(first="KeyError: 'user'"),
        "pytest_other": PYTEST_GROUP.format(first="TimeoutError: upstream"),
    }
    found = diagnose_fingerprints(tmp_path, texts)
    headless = _read(texts["headless"])
    assert (headless["kind"], headless["error_type"]) == ("python", "TypeError")
    assert headless["chain"][0][0] == "ExceptionGroup"
    assert found["headless"]["fine"] != found["headless_other"]["fine"]
    pytest_group = _read(texts["pytest"])
    assert (pytest_group["kind"], pytest_group["error_type"]) == ("pytest", "KeyError")
    assert any(link[0] == "ExceptionGroup" for link in pytest_group["chain"])
    assert pytest_group["frames"][-1]["function"] == "test_sync"
    assert found["pytest"]["fine"] != found["pytest_other"]["fine"]


NPM = """\
> api@1.0.0 build
> prisma generate && tsc

{error}
{npm} code 1
{npm} path /app
{npm} command failed
{npm} command sh -c prisma generate && tsc
"""


def test_npm_s_report_of_a_failed_script_never_heads_the_script_s_own_error(
        tmp_path: Path) -> None:
    texts = {
        "npm10": NPM.format(npm="npm error", error="Environment variable not found: "
                                                   "DATABASE_URL."),
        "npm8": NPM.format(npm="npm ERR!", error="Environment variable not found: "
                                                 "DATABASE_URL."),
        "other": NPM.format(npm="npm error", error="Schema parsing failed: unknown "
                                                   "attribute @unique2"),
        "alone": "npm error code 1\nnpm error path /app\n",
    }
    found = diagnose_fingerprints(tmp_path, texts)
    assert "DATABASE_URL" in _read(texts["npm10"])["normalized"]
    assert found["npm10"]["fine"] == found["npm8"]["fine"]
    assert found["npm10"]["fine"] != found["other"]["fine"]
    assert "code 1" in _read(texts["alone"])["normalized"]  # (nothing else: it heads)


def test_pod_names_and_quoted_user_names_are_masked(tmp_path: Path) -> None:
    backoff = ("Warning  BackOff  2m (x12 over 5m)  kubelet  Back-off restarting failed "
               "container {container} in pod {pod}_prod(1b2c3d4e-aaaa-bbbb-cccc-0123456789ab)\n")
    found = diagnose_fingerprints(tmp_path, {
        "pod_a": backoff.format(container="api", pod="api-dfbcq-xkzwt"),
        "pod_b": backoff.format(container="api", pod="api-6c8f9b7d5-hlmpq"),
        "worker": backoff.format(container="worker", pod="api-6c8f9b7d5-hlmpq"),
        "alice": "FATAL:  password authentication failed for user 'alice'\n",
        "bob": "FATAL:  password authentication failed for user 'bob'\n",
        "role": 'FATAL:  role "bob" does not exist\n',
    })
    assert found["pod_a"]["fine"] == found["pod_b"]["fine"]
    assert found["pod_a"]["fine"] != found["worker"]["fine"]
    assert found["alice"]["fine"] == found["bob"]["fine"]
    assert found["alice"]["fine"] != found["role"]["fine"]
