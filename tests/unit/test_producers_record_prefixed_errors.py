"""Errors relayed under a per-line prefix (``docker compose``'s ``web-1  | ``, a ``[tag] ``,
``docker build``'s ``#6 1.2 ``) are judged after it: the markers a line starts with
(``npm ERR!``, rustc's ``error[E0425]:``, gcc's ``error:``) were read on the raw text, so
``heal watch``/``heal backfill`` never published them. And buildkit steps with no blank line
between them (piped or filtered logs) are records of their own: a later step's error was
swallowed by the step before it.

The texts are written here in each tool's shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from producers.records import is_error_text
from tests.unit.test_producers_record_reports import assemble, texts

HEAL = str(Path(sys.executable).parent / "heal")

PREFIXED = """\
web-1  | npm ERR! code E404
web-1  | npm ERR! 404 Not Found - GET https://registry.example.org/no-such-pkg
api-1  | error[E0599]: no method named `lenn` found for struct `Vec<u8>`
api-1  |  --> src/lib.rs:9:7
[build] error: linker `cc` not found
[build] npm ERR! code ELIFECYCLE
"""

#: the same records without their prefixes: what a plain log would say
PLAIN = """\
npm ERR! code E404
npm ERR! 404 Not Found - GET https://registry.example.org/no-such-pkg
error[E0599]: no method named `lenn` found for struct `Vec<u8>`
 --> src/lib.rs:9:7
error: linker `cc` not found
npm ERR! code ELIFECYCLE
"""

#: two buildkit steps with no blank line between them, each failing its own way
STEPS = """\
#7 [2/4] RUN pip install -r requirements.txt
#7 0.611 ERROR: Could not find a version that satisfies the requirement nopkg==1.0
#7 ERROR: process "/bin/sh -c pip install -r requirements.txt" did not complete
#8 [3/4] RUN npm ci
#8 2.004 npm ERR! code E404
#8 2.004 npm ERR! 404 Not Found - GET https://registry.example.org/left-padd
#8 DONE 2.1s
"""


def _run(*args: str, home: Path) -> list[dict[str, object]]:
    env = {**os.environ, "HEAL_HOME": str(home)}
    done = subprocess.run([HEAL, *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_errors_are_judged_after_the_relay_prefix() -> None:
    records = assemble(PREFIXED)
    assert [r.is_error for r in records] == [True] * len(records)
    assert [r.is_error for r in assemble(PLAIN)] == [True] * len(records)
    # prose stays prose behind a prefix too
    assert not any(r.is_error for r in assemble(
        "web-1  | retrying after an error in the cache\n[app] no errors found\n"))
    assert not is_error_text("web-1  | npm ERR! code E404")  # the raw text alone: no marker


def test_buildkit_steps_without_a_blank_line_are_records_of_their_own() -> None:
    records = assemble(STEPS)
    assert [r.text.splitlines()[0] for r in records] == [
        "#7 [2/4] RUN pip install -r requirements.txt", "#8 [3/4] RUN npm ci"]
    assert all(r.is_error for r in records)
    # stack frames numbered like steps stay one report (gdb, PHP)
    gdb = "#0  0x00007f3a in raise () from /lib/libc.so.6\n#1  0x00007f3b in abort ()\n"
    assert len(texts(gdb)) == 1
    php = "#0 /srv/app/index.php(12): run()\n#1 [internal function]: main()\n#2 {main}\n"
    assert len(texts(php)) == 1


def test_a_flood_of_steps_is_one_record_a_line() -> None:
    flood = "".join(f"#{i % 9999} 0.1 ERROR: e{i}\n" for i in range(3000))
    assert len(assemble(flood)) == 3000


def test_backfill_publishes_prefixed_errors_and_each_steps_error(tmp_path: Path) -> None:
    """Through ``heal backfill --dry-run``: the prefixed log publishes as many errors as the
    plain one (it published none), and each buildkit step's error is its own event."""
    home = tmp_path / "home"
    prefixed, plain, steps = (tmp_path / n for n in ("prefixed.log", "plain.log", "steps.log"))
    prefixed.write_text(PREFIXED)
    plain.write_text(PLAIN)
    steps.write_text(STEPS)
    got = _run("backfill", "--dry-run", "--json", str(prefixed), home=home)
    want = _run("backfill", "--dry-run", "--json", str(plain), home=home)
    assert len(want) == 4
    assert len(got) == len(want)
    assert str(got[0]["text"]).startswith("web-1  | npm ERR! code E404")
    events = [str(e["text"]) for e in _run("backfill", "--dry-run", "--json", str(steps),
                                           home=home)]
    assert [e.splitlines()[0] for e in events] == [
        "#7 [2/4] RUN pip install -r requirements.txt", "#8 [3/4] RUN npm ci"]
    fps = _run("fingerprint", "--multiline", "--json", str(steps), home=home)
    assert len(fps) == 2
