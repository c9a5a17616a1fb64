"""One project file, one fine key, under any checkout root; kubectl's ages are
durations. Through the real command: `heal diagnose --offline --json` in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from pipeline.fingerprint.paths import key_path, normalize_path
from pipeline.fingerprint.rules import DEFAULT_NORMALIZER
from tests._diagnose import CLI, ROOT, diagnose_fingerprints

#: a traceback through a root-level file (cli.py) and one a folder deep (billing/charge.py)
_PY = ('Traceback (most recent call last):\n'
       '  File "{root}/cli.py", line {a}, in main\n'
       '    charge(order)\n'
       '  File "{root}/billing/charge.py", line {b}, in charge\n'
       '    total = order.lines[0].price\n'
       'IndexError: list index out of range\n')
#: a Go panic in the module's root-level main.go
_GO = ('panic: runtime error: integer divide by zero\n\n'
       'goroutine 1 [running]:\n'
       'main.average(...)\n'
       '\t{root}/main.go:{a}\n'
       'main.main()\n'
       '\t{root}/main.go:{b} +0x1d\n'
       'exit status 2\n')

#: where people and runners check a project out: a CI runner's fixed layout, a home folder
#: (with and without a folder of checkouts), GOPATH, the FHS's /usr/src, a Docker WORKDIR
_ROOTS = {
    "github": "/home/runner/work/ledger/ledger",
    "gitlab": "/builds/fin/ledger",
    "jenkins": "/var/lib/jenkins/workspace/ledger-nightly",
    "mac_code": "/Users/dana/code/ledger",
    "home": "/home/dana/ledger",
    "home_src": "/home/dana/src/ledger",
    "home_projects": "/home/dana/Projects/ledger",
    "gopath": "/home/dana/go/src/github.com/fin/ledger",
    "usr_src": "/usr/src/ledger",
    "workdir": "/app",
}


def _fines(tmp_path: Path, template: str) -> dict[str, str]:
    texts = {name: template.format(root=root, a=10 + i, b=40 + 3 * i)
             for i, (name, root) in enumerate(_ROOTS.items())}
    return {name: fp["fine"] for name, fp in diagnose_fingerprints(tmp_path, texts).items()}


def test_one_file_gets_one_fine_key_under_any_checkout_root(tmp_path: Path) -> None:
    # before fp-v6 a home folder kept its project folder (ledger/cli.py) or the folder of
    # checkouts above it (src/ledger/main.go), while a CI checkout read cli.py
    for template in (_PY, _GO):
        fines = _fines(tmp_path, template)
        assert len(set(fines.values())) == 1, fines


def _diagnose_in(tmp_path: Path, name: str, text: str, repo: str) -> dict[str, Any]:
    """`heal diagnose --repo REPO --json` on ``text``: its whole answer."""
    src = tmp_path / f"{name}.txt"
    src.write_text(text, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", CLI, "diagnose", "--offline", "--no-semantic", "--json",
         "--repo", repo, str(src)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"HEAL_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


#: a React page of one app of a monorepo (Next.js, Turborepo and Nx keep apps/NAME/src/...)
_APP = ("TypeError: Cannot read properties of undefined (reading 'map')\n"
        "    at Page ({root}/apps/{app}/src/pages/index.js:12:20)\n"
        "    at renderWithHooks ({root}/node_modules/react-dom/cjs/react-dom.development.js"
        ":16305:18)\n")


def test_a_named_repository_keys_the_whole_path_inside_it(tmp_path: Path) -> None:
    # two apps of one monorepo, the same layout below their third level: where the event
    # names its repository the path inside it is exact and the key keeps it whole (fp-v6 as
    # first merged took the last three components, src/pages/index.js, for both)
    web = _diagnose_in(tmp_path, "web", _APP.format(root="/repo", app="web"), "/repo")
    admin = _diagnose_in(tmp_path, "admin", _APP.format(root="/repo", app="admin"), "/repo")
    assert web["fingerprint"]["fine"] != admin["fingerprint"]["fine"]
    assert web["params"]["file"] == "apps/web/src/pages/index.js"
    # one file of one repository is one key wherever it was checked out: a laptop and a CI
    # runner that both name their checkout
    text = _PY.replace("billing/charge.py", "ledger/core/billing/charge.py")
    laptop = _diagnose_in(tmp_path, "laptop", text.format(
        root="/Users/dana/code/ledger", a=3, b=9), "/Users/dana/code/ledger")
    runner = _diagnose_in(tmp_path, "runner", text.format(
        root="/home/runner/work/ledger/ledger", a=5, b=11), "/home/runner/work/ledger/ledger")
    assert laptop["fingerprint"]["fine"] == runner["fingerprint"]["fine"]
    assert laptop["params"]["file"] == "ledger/core/billing/charge.py"


def test_a_guessed_root_keys_the_last_components(tmp_path: Path) -> None:
    # no repository named: the root is guessed (a laptop's folder of checkouts, a CI runner's
    # layout), so a deep file keys on its last three components and one file from a laptop
    # and from CI stays one key
    text = _PY.replace("billing/charge.py", "ledger/core/billing/charge.py")
    found = diagnose_fingerprints(tmp_path, {
        "laptop": text.format(root="/Users/dana/code/ledger", a=3, b=9),
        "runner": text.format(root="/home/runner/work/ledger/ledger", a=5, b=11),
    })
    assert found["laptop"]["fine"] == found["runner"]["fine"]


def test_what_must_still_split_still_splits(tmp_path: Path) -> None:
    views = ('Traceback (most recent call last):\n'
             '  File "/home/dana/code/shop/{app}/views.py", line 8, in detail\n'
             '    return item.owner.name\n'
             "AttributeError: 'NoneType' object has no attribute 'name'\n")
    go = ("# github.com/fin/relay/internal/server\n"
          "/Users/dana/code/relay/internal/server/{file}.go:31:9: undefined: maxBody\n")
    lib = ('Traceback (most recent call last):\n'
           '  File "/home/dana/ledger/cli.py", line 4, in main\n'
           '    load()\n'
           '  File "{lib}/loader.py", line 7, in load\n'
           '    raise ValueError("bad header")\n'
           'ValueError: bad header\n')
    fines = {name: fp["fine"] for name, fp in diagnose_fingerprints(tmp_path, {
        "users": views.format(app="users"), "orders": views.format(app="orders"),
        "server": go.format(file="server"), "limits": go.format(file="limits"),
        "own": lib.format(lib="/home/dana/ledger/ledger"),
        "installed": lib.format(
            lib="/home/dana/ledger/.venv/lib/python3.12/site-packages/ledger"),
    }).items()}
    # two files of one name in two folders of a project
    assert fines["users"] != fines["orders"]
    # two files of one Go package
    assert fines["server"] != fines["limits"]
    # a project's file and an installed package's
    assert fines["own"] != fines["installed"]


def test_paths_read_inside_the_project_whatever_holds_it() -> None:
    assert normalize_path("/home/dana/src/relay/main.go") == "main.go"
    assert normalize_path("/Users/dana/code/shop/app/api.py") == "app/api.py"
    assert normalize_path("C:\\Users\\dana\\source\\repos\\shop\\app\\api.py") == "app/api.py"
    assert normalize_path("/home/dana/go/src/github.com/fin/relay/cmd/relay/main.go") \
        == "cmd/relay/main.go"
    # a project called like a folder of checkouts is still the project
    assert normalize_path("/home/dana/dev/main.go") == "main.go"
    # libraries stay libraries, installed where they may
    assert normalize_path("/Users/dana/code/web/node_modules/express/lib/router/index.js") \
        == "<node_modules>/express/lib/router/index.js"
    assert key_path("ledger/core/billing/charge.py") == "core/billing/charge.py"
    assert key_path("ledger/core/billing/charge.py", "/srv/ledger") \
        == "ledger/core/billing/charge.py"
    assert key_path("app/api.py") == "app/api.py"


def test_kubectl_ages_are_durations_and_hex_ids_are_not(tmp_path: Path) -> None:
    event = ("  Warning  BackOff  {age} (x{n} over {over})  kubelet  Back-off restarting "
             "failed container worker in pod worker-5d8c9f6b7-{pod}\n")
    fps = diagnose_fingerprints(tmp_path, {
        f"e{i}": event.format(age=age, n=n, over=over, pod=pod)
        for i, (age, n, over, pod) in enumerate([
            ("2m", 7, "33d", "x2k9q"), ("12h", 40, "45m", "p8w3z"),
            ("9s", 3, "3d4h", "a1b2c"), ("5m30s", 12, "2y45d", "zz9kq")])})
    assert len({fp["fine"] for fp in fps.values()}) == 1, fps
    assert "over <duration>)" in DEFAULT_NORMALIZER.mask(
        event.format(age="2m", n=7, over="33d", pod="x2k9q")).text
    # hex ids stay ids: only digits then d (or y) and a unit, whole, are an age
    masked = DEFAULT_NORMALIZER.mask("ids 3d4f 12d9 7d3a1b2c age 33d").text
    assert masked == "ids <idtoken> <idtoken> <hash> age <duration>"
