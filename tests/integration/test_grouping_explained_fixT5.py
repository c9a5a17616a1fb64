"""`heal issues list` tells groups apart by what their fingerprint is made of, and `heal
explain` says why events were grouped (QA s15b defects 11 and 12). Events published with
`heal emit`, processed by the real fingerprint and lookup stages on the embedded engines;
the CLI runs this checkout's code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis

from pipeline.config import Settings
from pipeline.runtime.drain import drain_inline
from storage.engines import open_database

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]


def _word() -> str:
    return "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:10])


def _heal(env: dict[str, str], *args: str, stdin: str = ""
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HEAL, *args], input=stdin, capture_output=True, text=True,
                          timeout=300, cwd=ROOT, check=False,
                          env={**os.environ, **env, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"})


def _emit_and_process(env: dict[str, str], events: dict[str, str]) -> None:
    """``heal emit`` the events (id -> text), run the fingerprint and lookup stages, and wait
    until every event's fingerprint reached the issue queue."""
    lines = "".join(json.dumps({"v": 1, "id": i, "text": t}) + "\n" for i, t in events.items())
    done = _heal(env, "emit", stdin=lines)
    assert done.returncode == 0, done.stderr
    settings = Settings.from_env()
    drain_inline(settings, redis.Redis.from_url(env["HEAL_REDIS_URL"]),
                 stages=["fingerprint", "lookup"])
    db = open_database(settings)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            # (a database of the test's own: every occurrence in the queue is one of these)
            if db.fetchval("SELECT coalesce(sum(count), 0) FROM issue_queue") == len(events):
                return
            time.sleep(0.2)
    finally:
        db.close()
    raise AssertionError("the events never reached the issue queue")


def _go_panic(message: str, file: str, func: str) -> str:
    return (f"panic: {message}\n\ngoroutine 1 [running]:\nmain.{func}(...)\n"
            f"\t/home/dev/src/stock/{file}:41 +0x1d\nmain.main()\n"
            "\t/home/dev/src/stock/main.go:9 +0x25\nexit status 2\n")


def _link(symbol: str) -> str:
    return ("/usr/bin/ld: obj/core.o: in function `start':\n"
            f"core.c:(.text+0x2f): undefined reference to `{symbol}'\n"
            "collect2: error: ld returned 1 exit status\n")


def test_issues_list_labels_each_group_by_its_fingerprint(
        heal_env: dict[str, str], own_database: str) -> None:
    # Given errors whose texts end in the same raw line (a Go panic's 'exit status 2', the
    # linker's summary) or in noise (a colour reset, GitHub's '##[error]Process completed')
    w = _word()
    events = {
        f"go1-{w}": _go_panic(f"runtime error: slice bounds out of range {w}", "ledger.go",
                             "settle"),
        f"go2-{w}": _go_panic(f"assignment to entry in nil map {w}", "cache.go", "put"),
        f"go3-{w}": _go_panic(f"sprocket {w} was never wound", "gears.go", "wind"),
        f"ld1-{w}": _link(f"{w}_open"),
        f"ld2-{w}": _link(f"{w}_close"),
        f"ansi-{w}": f"\x1b[1;31merror: gasket {w} is cracked\x1b[0m\n\x1b[0;m\n",
        f"gha-{w}": f"Error: flange {w} misaligned\n##[error]Process completed with exit "
                    "code 1.\n",
    }
    _emit_and_process(heal_env, events)

    # When the operator lists the open groups
    listed = _heal(heal_env, "issues", "list")
    assert listed.returncode == 0, listed.stderr
    rows = [ln for ln in listed.stdout.splitlines() if w in ln]

    # Then every group is labelled by its own headline, so distinct groups read distinct,
    # and no raw last line (or escape sequence, shown or raw) stands for a group
    assert len(rows) == len(events), listed.stdout
    labels = [ln.split(maxsplit=4)[-1] for ln in rows]
    assert len(set(labels)) == len(events), labels
    out = listed.stdout
    for noise in ("exit status 2", "collect2", "ld returned", "##[error]", "\x1b", "\\x1b",
                  "0;m"):
        assert noise not in out, (noise, out)
    assert any(f"gasket {w} is cracked" in ln for ln in labels)
    assert any(f"undefined reference to `{w}_close'" in ln for ln in labels)
    assert any(f"sprocket {w} was never wound" in ln and "gears.go:main.wind" in ln
               for ln in labels), labels

    # and the JSON keeps its shape, with each group's label added
    data = json.loads(_heal(heal_env, "issues", "list", "--json").stdout)
    assert {"issues", "groups", "fingerprints_open", "groups_found", "complete"} <= set(data)
    mine = [g for g in data["groups"] if w in g["label"]]
    assert len(mine) == len(events)
    for g in mine:
        assert {"template", "cluster", "count", "fines", "first_seen", "last_seen", "sample",
                "label"} <= set(g)
        assert g["label"].isprintable() and "exit status 2" not in g["label"]

    # and one row per fingerprint reads the same way
    by_fp = _heal(heal_env, "issues", "list", "--by-fingerprint")
    assert by_fp.returncode == 0, by_fp.stderr
    assert "exit status 2" not in by_fp.stdout and "\\x1b" not in by_fp.stdout
    assert by_fp.stdout.count(w) == len(events)
    fp_rows = json.loads(_heal(heal_env, "issues", "list", "--by-fingerprint",
                               "--json").stdout)["issues"]
    assert all({"fine", "count", "sample", "label"} <= set(i) for i in fp_rows)


def _traceback(root: str, line: int) -> str:
    return ("Traceback (most recent call last):\n"
            f'  File "{root}/orders/app.py", line {line}, in <module>\n    main()\n'
            f'  File "{root}/orders/billing.py", line {line + 20}, in charge\n'
            "    return rates[region]\n"
            f"KeyError: 'region_{line}'\n")


def test_explain_says_why_events_were_grouped_and_whose_text_it_shows(
        heal_env: dict[str, str], own_database: str) -> None:
    # Given one KeyError raised in two CI runners' checkouts at other lines (one fine
    # fingerprint: since fp-v5 a runner's checkout is the path inside the repository, as
    # with an event naming its repository), and a Java error whose root cause is wrapped twice
    w = _word()
    first, second, java = f"ka-{w}", f"kb-{w}", f"jv-{w}"
    events = {
        first: _traceback(f"/builds/team/{w}", 12),
        second: _traceback(f"/home/runner/work/{w}/{w}", 57),
        java: ("Exception in thread \"main\" java.lang.IllegalStateException: boot failed\n"
               "\tat com.acme.Main.main(Main.java:20)\n"
               "Caused by: java.io.UncheckedIOException: read failed\n"
               "\tat com.acme.Config.load(Config.java:33)\n\t... 1 more\n"
               f"Caused by: java.io.FileNotFoundException: {w}.properties (No such file)\n"
               "\tat com.acme.Files.open(Files.java:8)\n\t... 2 more\n"),
    }
    _emit_and_process(heal_env, events)
    stories = {}
    for error_id in events:
        done = _heal(heal_env, "explain", error_id, "--json")
        assert done.returncode == 0, done.stderr
        stories[error_id] = json.loads(done.stdout)
    assert stories[first]["fingerprint"] == stories[second]["fingerprint"]

    # When the operator explains the second error
    shown = _heal(heal_env, "explain", second)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout

    # Then heal says what the fine and coarse keys are made of: kind, class, masked message,
    # the project frames (file:function), and what normalization did (paths collapsed, line
    # numbers left out, the value masked), never "nothing masked"
    assert "why grouped" in text
    assert "fine    kind python + class KeyError + message \"'<idtoken>'\"" in text
    assert "orders/app.py:<module> | orders/billing.py:charge" in text
    assert "coarse  kind python + class KeyError + top function charge" in text
    collapsed = "paths collapsed (checkout, home, temp and CI folders are not part of the key): "
    assert f"{collapsed}/home/runner/work/{w}/{w}/orders/app.py -> orders/app.py" in text \
        or f"{collapsed}/builds/team/{w}/orders/app.py -> orders/app.py" in text
    assert "line numbers left out" in text and "<idtoken>: 1 replaced" in text
    assert "nothing masked" not in text
    # and whose text the sample is: the group's sample is told apart from the asked error's
    # own text when they differ
    story = stories[second]
    own = story["error_text"]
    assert story["error_text_found"] and "region_57" in own and "region_12" not in own
    if "region_12" in story["sample"]:  # the group's sample is the other error's text
        assert f"it may be another error than {second}" in text
        assert f"error {second}'s own text (last lines):" in text
        assert "the same key as the group" in text
    else:
        assert "region_57" in story["sample"]

    # and the JSON keeps its keys, with the explanation added
    assert {"fingerprint", "level", "fines", "sample", "normalization", "lookup", "why",
            "error_id"} <= set(story)
    norm = story["normalization"]
    assert {"fine", "coarse", "template", "normalized", "params", "hints"} <= set(norm)
    grouping = norm["grouping"]
    assert grouping["fine_key"]["frames"] == ["orders/app.py:<module>",
                                              "orders/billing.py:charge"]
    assert grouping["fine"] == story["fingerprint"] and norm["recomputed_matches"] is True

    # and for Java heal names the chain and the root cause it chose
    jtext = _heal(heal_env, "explain", java).stdout
    assert ("chain   java.lang.IllegalStateException: boot failed -> "
            "java.io.UncheckedIOException: read failed -> java.io.FileNotFoundException"
            in jtext)
    assert "the root cause (the last 'Caused by')" in jtext
    # (the coarse key is stated for a coarse fingerprint too)
    coarse = _heal(heal_env, "explain", stories[java]["normalization"]["coarse"]).stdout
    assert "coarse  kind java + class java.io.FileNotFoundException" in coarse
