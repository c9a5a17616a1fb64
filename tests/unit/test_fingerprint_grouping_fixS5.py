"""Grouping of the same error written different ways (session 15, fixS5): a peer address
however it is written, an entry-point script wherever it was installed, a container checkout,
a dotted exception class with digits in its module, and counters and dates that change on
every occurrence. Each case is realistic tool output; the last test runs `heal fingerprint`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.fingerprint import fingerprint_text

ROOT = Path(__file__).resolve().parents[2]


def _fines(*texts: str) -> set[str]:
    return {fingerprint_text(text).fine for text in texts}


# -- 7: one placeholder for a peer's address, whichever way it is written -----------------

def test_a_peer_is_one_placeholder_whether_named_numbered_or_bare() -> None:
    go = "dial tcp {}: connect: connection refused"
    fines = _fines(*(go.format(peer) for peer in (
        "10.0.0.5:5432", "db.internal:5432", "postgres:5432", "[2001:db8::1]:5432",
        "[::1]:5432")))
    assert len(fines) == 1
    node = "Error: connect ECONNREFUSED {}"
    assert len(_fines(*(node.format(peer) for peer in (
        "::1:5432", "127.0.0.1:5432", "localhost:5432", "redis-master:6379")))) == 1
    curl = "curl: (7) Failed to connect to {} port {} after 3 ms: Couldn't connect to server"
    assert len(_fines(curl.format("api.example.com", 443), curl.format("10.2.3.4", 8443))) == 1


def test_the_peer_stays_in_the_params_and_other_errors_still_split() -> None:
    fp = fingerprint_text("dial tcp db.internal:5432: connect: connection refused")
    assert (fp.params["host"], fp.params["port"]) == ("db.internal", "5432")
    assert fp.normalized == "dial tcp <host>: connect: connection refused"
    # refused is not timed out; a make target's line number is no port
    assert len(_fines("dial tcp 10.0.0.5:5432: connect: connection refused",
                      "dial tcp 10.0.0.5:5432: i/o timeout")) == 2
    made = fingerprint_text("make: *** [Makefile:12: all] Error 2")
    assert "<host>" not in made.normalized


# -- 8: entry-point scripts and container checkouts ---------------------------------------

_SCRIPT_TRACE = """Traceback (most recent call last):
  File "{script}", line 5, in <module>
    from mytool.cli import main
  File "{site}/mytool/cli.py", line 3, in <module>
    import yaml
ModuleNotFoundError: No module named 'yaml'
"""


def test_an_installed_script_is_identified_by_its_name_not_its_prefix() -> None:
    installs = (
        ("/home/ann/.venv/bin/mytool", "/home/ann/.venv/lib/python3.12/site-packages"),
        ("/opt/venvs/tool-3f9a/bin/mytool", "/opt/venvs/tool-3f9a/lib/python3.11/site-packages"),
        ("/usr/local/bin/mytool", "/usr/local/lib/python3.11/site-packages"),
        (r"C:\Users\bob\venv\Scripts\mytool.exe\__main__.py",
         r"C:\Users\bob\venv\Lib\site-packages"),
    )
    prints = [fingerprint_text(_SCRIPT_TRACE.format(script=s, site=p)) for s, p in installs]
    assert len({fp.fine for fp in prints}) == 1
    assert {fp.params["file"] for fp in prints} == {"<bin>/mytool"}


_NODE = """/{root}/server.js:14
    throw new Error('DATABASE_URL is not set');
    ^

Error: DATABASE_URL is not set
    at Object.<anonymous> ({root}/server.js:14:11)
    at Module._compile (node:internal/modules/cjs/loader:1256:14)
"""

_PY = """Traceback (most recent call last):
  File "{root}/worker/tasks.py", line 88, in run
    raise KeyError(name)
KeyError: 'queue'
"""


@pytest.mark.parametrize("template, roots", [
    (_NODE, ("/usr/src/app", "/home/alice/app", "/app", "/srv/app", "/opt/app")),
    # (a CI runner's checkout is read down to the repository's root since fixB6: see
    # test_fingerprint_grouping_fixB6.py)
    (_PY, ("/app", "/srv/app", "/opt/app", "/usr/src/app", "/home/alice/app")),
])
def test_a_container_checkout_reads_like_a_home_checkout(template: str,
                                                         roots: tuple[str, ...]) -> None:
    assert len(_fines(*(template.format(root=root) for root in roots))) == 1


# -- 9: a dotted exception class is not a host ----------------------------------------------

def test_dotted_exception_classes_with_digits_are_kept() -> None:
    column = fingerprint_text("psycopg2.errors.UndefinedColumn: column \"nme\" does not exist")
    table = fingerprint_text("psycopg2.errors.UndefinedTable: column \"nme\" does not exist")
    assert column.fine != table.fine
    assert column.normalized.startswith("psycopg2.errors.UndefinedColumn:")
    proto = fingerprint_text("urllib3.exceptions.ProtocolError: ('Connection aborted.', "
                             "RemoteDisconnected('Remote end closed connection'))")
    assert "urllib3.exceptions.ProtocolError" in proto.normalized
    # a dotted host name with digits is still a host
    assert "<host>" in fingerprint_text("cannot reach cache4.eu-west.prod now").normalized


# -- 13: counters and dates -----------------------------------------------------------------

def test_volatile_counters_and_dates_are_masked() -> None:
    pip = ("ERROR: Could not find a version that satisfies the requirement httpx==9.0 "
           "(from versions: {})")
    assert len(_fines(pip.format("0.1.0, 0.2.0, 1.0.0rc1"), pip.format("0.1.0, 0.2.0"))) == 1
    assert len(_fines(pip.format("0.1.0"), pip.format("none"))) == 2  # none: nothing at all
    kube = ("Warning  BackOff  {}  kubelet  Back-off restarting failed container api in pod "
            "api-7d9f")
    assert len(_fines(kube.format("3m (x12 over 5m)"), kube.format("20s (x4 over 1m)"))) == 1
    finished = "Error: container api terminated: Finished: {}"
    assert len(_fines(finished.format("Mon, 11 Nov 2024 10:00:00 +0000"),
                      finished.format("Thu, 2 Jan 2025 23:59:01 GMT"))) == 1
    assert len(_fines("FAILURE: BUILD FAILED in 1m 12s", "FAILURE: BUILD FAILED in 48s")) == 1
    xdist = "[{}] [ {}%] FAILED tests/test_api.py::test_login - assert 401 == 200"
    assert len(_fines(xdist.format("gw3", 45), xdist.format("gw0", 12))) == 1


# -- end to end: `heal fingerprint` ---------------------------------------------------------

def test_heal_fingerprint_groups_the_same_error_written_differently(tmp_path: Path) -> None:
    lines = [
        "ERROR app.db: dial tcp 10.0.0.5:5432: connect: connection refused",
        "ERROR app.db: dial tcp postgres:5432: connect: connection refused",
        "ERROR app.db: dial tcp [2001:db8::1]:5432: connect: connection refused",
        "psycopg2.errors.UndefinedColumn: column \"nme\" does not exist",
        "psycopg2.errors.UndefinedTable: column \"nme\" does not exist",
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
    assert len(set(fines[:3])) == 1
    assert len({fines[3], fines[4], fines[0]}) == 3
