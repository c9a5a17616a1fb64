"""What is missing is part of the error (QA s17a defects 2 and 5). Two missing modules,
packages or commands are two causes with two fixes: two fine keys; the coarse key keeps them
together (one kind of failure), and hosts and permission paths stay masked in both. The coarse
key of a structured error keeps the first words of its message that say what kind of failure
it is, so a generic class (Node's ``Error``, a Rust ``panic``, ``OutOfMemoryError``) no
longer merges every cause it is raised for. Texts written for these tests, through
``heal diagnose --offline --json`` in a subprocess."""

from __future__ import annotations

from pathlib import Path

from pipeline.fingerprint import fingerprint_text
from pipeline.fingerprint.explain import explain_grouping
from tests._diagnose import diagnose_fingerprints


def _py_missing(module: str, root: str, line: int) -> str:
    return ("Traceback (most recent call last):\n"
            f'  File "{root}/tools/report.py", line {line}, in <module>\n'
            f"    import {module}\n"
            f"ModuleNotFoundError: No module named '{module}'\n")


def _node_missing(module: str, root: str) -> str:
    return (f"node:internal/modules/cjs/loader:1228\n  throw err;\n  ^\n\n"
            f"Error: Cannot find module '{module}'\n"
            f"Require stack:\n- {root}/server/boot.js\n"
            f"    at Module._resolveFilename (node:internal/modules/cjs/loader:1225:15)\n"
            f"    at Object.<anonymous> ({root}/server/boot.js:4:17)\n"
            f"    at Module._compile (node:internal/modules/cjs/loader:1358:14) {{\n"
            f"  code: 'MODULE_NOT_FOUND',\n  requireStack: [ '{root}/server/boot.js' ]\n}}\n")


def test_heal_diagnose_gives_missing_modules_and_commands_fine_keys_of_their_own(
        tmp_path: Path) -> None:
    root_a, root_b = "/home/runner/work/ledger/ledger", "/builds/acme/ledger"
    texts = {
        "py-toml-a": _py_missing("toml", root_a, 3), "py-toml-b": _py_missing("toml", root_b, 9),
        "py-attrs": _py_missing("attrs", root_a, 3),
        "node-koa-a": _node_missing("koa", root_a), "node-koa-b": _node_missing("koa", root_b),
        "node-chalk": _node_missing("chalk", root_a),
        "sh-curl-a": "./ci/publish.sh: line 40: curl: command not found\n",
        "sh-curl-b": "./ci/publish.sh: line 77: curl: command not found\n",
        "sh-wget": "./ci/publish.sh: line 40: wget: command not found\n",
    }
    out = diagnose_fingerprints(tmp_path, texts)
    for same, other in (("py-toml", "py-attrs"), ("node-koa", "node-chalk"),
                        ("sh-curl", "sh-wget")):
        # one missing name from two checkouts and lines: one fine key
        assert out[f"{same}-a"]["fine"] == out[f"{same}-b"]["fine"], same
        # another missing name: another fine key, the same coarse key (the kind of failure)
        assert out[f"{same}-a"]["fine"] != out[other]["fine"], (same, other)
        assert out[f"{same}-a"]["coarse"] == out[other]["coarse"], (same, other)
    # the name is in the fine key's message; the headline (what rules are derived from and
    # fix templates name) keeps it masked, and the parameter is still given
    toml = explain_grouping(texts["py-toml-a"])
    assert toml["fine_key"]["message"] == "No module named 'toml'"
    assert toml["normalized"] == "ModuleNotFoundError: No module named '<module>'"
    assert fingerprint_text(texts["sh-curl-a"]).params["command"] == "curl"


def test_heal_diagnose_still_masks_names_given_as_paths_versions_and_hosts(
        tmp_path: Path) -> None:
    texts = {
        # a missing local module given by its path: one error wherever it is checked out
        "local-a": "Error: Cannot find module '/home/ana/src/ledger/dist/main.js'\n",
        "local-b": "Error: Cannot find module '/srv/ci/ledger/dist/main.js'\n",
        # a package spec keeps its name and masks its version
        "e404-1": "npm ERR! 404 'left-pad@1.3.0' is not in this registry.\n",
        "e404-2": "npm ERR! 404 'left-pad@1.4.2' is not in this registry.\n",
        "e404-other": "npm ERR! 404 'right-pad@1.3.0' is not in this registry.\n",
        # a host is where the error happened, not what failed: masked in both keys
        "host-1": "curl: (6) Could not resolve host: cache.eu.example.com\n",
        "host-2": "curl: (6) Could not resolve host: mirror.us.example.org\n",
    }
    out = diagnose_fingerprints(tmp_path, texts)
    assert out["local-a"]["fine"] == out["local-b"]["fine"]
    assert out["e404-1"]["fine"] == out["e404-2"]["fine"]
    assert "'left-pad@<num>'" in explain_grouping(texts["e404-1"])["fine_key"]["message"]
    assert "<path>" in explain_grouping(texts["local-a"])["fine_key"]["message"]
    assert out["e404-1"]["fine"] != out["e404-other"]["fine"]
    assert out["e404-1"]["coarse"] == out["e404-other"]["coarse"]
    assert out["host-1"]["fine"] == out["host-2"]["fine"]
    assert out["host-1"]["coarse"] == out["host-2"]["coarse"]


def _node_fs(code: str, syscall_says: str, root: str, n: int) -> str:
    return (f"node:fs:{440 + n}\n    return binding.open(path, flags, mode);\n\n"
            f"Error: {code}: {syscall_says}, open '{root}/conf/app.json'\n"
            f"    at Object.openSync (node:fs:{590 + n}:3)\n"
            f"    at readConf ({root}/lib/conf.js:{12 + n}:20)\n"
            f"    at Object.<anonymous> ({root}/index.js:3:1) {{\n"
            f"  errno: -{n + 2},\n  code: '{code}'\n}}\n")


def test_heal_diagnose_coarse_key_of_a_generic_class_keeps_what_kind_of_failure_it_is(
        tmp_path: Path) -> None:
    texts = {
        "enoent-1": _node_fs("ENOENT", "no such file or directory", "/home/ana/ledger", 0),
        "enoent-2": _node_fs("ENOENT", "no such file or directory", "/builds/x/ledger", 1),
        "eacces": _node_fs("EACCES", "permission denied", "/home/ana/ledger", 0),
        "heap-1": ('Exception in thread "worker-3" java.lang.OutOfMemoryError: Java heap space\n'
                   "\tat com.acme.ledger.Batch.load(Batch.java:88)\n"),
        "heap-2": ('Exception in thread "worker-9" java.lang.OutOfMemoryError: Java heap space\n'
                   "\tat com.acme.ledger.Batch.load(Batch.java:91)\n"),
        "metaspace": ('Exception in thread "worker-3" java.lang.OutOfMemoryError: Metaspace\n'
                      "\tat com.acme.ledger.Batch.load(Batch.java:88)\n"),
        "panic-div": ("thread 'main' panicked at src/calc.rs:21:9:\n"
                      "attempt to divide by zero\n"),
        "panic-div-2": ("thread 'worker' panicked at src/calc.rs:23:13:\n"
                        "attempt to divide by zero\n"),
        "panic-slice": ("thread 'main' panicked at src/parse.rs:7:30:\n"
                        "byte index 9 is out of range of `abc`\n"),
    }
    out = diagnose_fingerprints(tmp_path, texts)
    for same, other in (("enoent-1", "enoent-2"), ("heap-1", "heap-2"),
                        ("panic-div", "panic-div-2")):
        assert out[same]["coarse"] == out[other]["coarse"], (same, other)
    for one, other in (("enoent-1", "eacces"), ("heap-1", "metaspace"),
                       ("panic-div", "panic-slice")):
        assert out[one]["coarse"] != out[other]["coarse"], (one, other)
