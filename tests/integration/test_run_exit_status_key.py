"""A failure whose output holds no line saying what failed is keyed on how its command ended
(QA report qa_s16c, defect 5): a segfault, an abort and a plain ``exit 3`` after the same
ordinary output are three groups, a repeat of each is its own group again, and ``heal
diagnose --exit-code/--signal`` and ``heal explain`` agree with the fingerprint ``heal run``
printed. Real CLI in a subprocess, real embedded engines (the session's), real signals."""

from __future__ import annotations

import json
import os
import random
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]
#: a program that prints an ordinary line and then dies of SIGSEGV itself (no shell's report)
SEGFAULT = ("import os, signal, sys; print(sys.argv[1], flush=True); "
            "os.kill(os.getpid(), signal.SIGSEGV)")


def _heal(args: list[str], cwd: Path, stdin: str | None = None
          ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*HEAL, *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env=env, input=stdin, check=False)


def _run(root: Path, *argv: str) -> tuple[int, dict[str, object]]:
    done = _heal(["run", "--mode", "observe", "--timeout", "120", "--json", "--", *argv], root)
    # (--json writes the decision on stderr's last line, the command's output keeps stdout)
    decision: dict[str, object] = json.loads(done.stderr.strip().splitlines()[-1])
    assert decision["fingerprint"], done.stderr
    return done.returncode, decision


def _repo(tmp_path: Path) -> Path:
    root = (tmp_path / "repo").resolve()
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def test_a_segfault_an_abort_and_an_exit_after_the_same_output_are_three_groups(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    root = _repo(tmp_path)
    # Given three commands that print "start" and end three ways
    segv_status, segv = _run(root, sys.executable, "-c", SEGFAULT, "start")
    exit_status, exit3 = _run(root, "sh", "-c", "echo start; exit 3")
    abrt_status, abrt = _run(root, "sh", "-c", "echo start; kill -ABRT $$")
    assert (segv_status, exit_status, abrt_status) == (139, 3, 134)
    # Then they are three groups (before: one, keyed and labelled on "start")
    assert len({segv["fingerprint"], exit3["fingerprint"], abrt["fingerprint"]}) == 3
    # and the signal is the headline, not the ordinary output line
    assert isinstance(segv["error"], dict) and segv["error"]["headline"] == "killed by SIGSEGV"
    assert isinstance(abrt["error"], dict) and abrt["error"]["headline"] == "killed by SIGABRT"
    assert isinstance(exit3["error"], dict) and exit3["error"]["headline"] == "exit 3: start"

    # When each is run again (the segfault after another ordinary line), Then each is its
    # own group again
    assert _run(root, sys.executable, "-c", SEGFAULT, "loading")[1]["fingerprint"] == \
        segv["fingerprint"]
    assert _run(root, "sh", "-c", "echo start; exit 3")[1]["fingerprint"] == \
        exit3["fingerprint"]
    assert _run(root, "sh", "-c", "echo start; kill -ABRT $$")[1]["fingerprint"] == \
        abrt["fingerprint"]


def test_diagnose_and_explain_agree_with_the_fingerprint_heal_run_printed(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    root = _repo(tmp_path)
    _, segv = _run(root, sys.executable, "-c", SEGFAULT, "start")
    fine = str(segv["fingerprint"])

    # heal diagnose with the status and command heal run saw gives heal run's fingerprint;
    # without them, the text alone is keyed as before (another group)
    args = ["diagnose", "--offline", "--no-semantic", "--json"]
    command = ["--command", shlex.join([sys.executable, "-c", SEGFAULT, "start"])]
    given = json.loads(_heal([*args, "--exit-code", "139", "--signal", "SEGV", *command],
                             root, "start\n").stdout)
    assert given["fingerprint"]["fine"] == fine
    by_status = json.loads(_heal([*args, "--exit-code", "139", *command], root,
                                 "other\n").stdout)
    assert by_status["fingerprint"]["fine"] == fine
    alone = json.loads(_heal(args, root, "start\n").stdout)
    assert alone["fingerprint"]["fine"] != fine
    bad = _heal([*args, "--signal", "SIGNOPE"], root, "start\n")
    assert bad.returncode == 2 and "--signal 'SIGNOPE' is no signal" in bad.stderr

    # heal explain of the printed fingerprint recomputes the same key and says what it is
    story = json.loads(_heal(["explain", fine.split(":", 1)[-1][:12], "--json"], root).stdout)
    assert story["fingerprint"] == fine
    norm = story["normalization"]
    assert norm["recomputed_matches"] is True, norm
    assert norm["normalized"] == "killed by SIGSEGV"
    assert norm["grouping"]["fine_key"]["frames"] == ["python -c:"]
    assert any("keyed on how the command ended" in s for s in norm["hints"])


def test_an_error_line_keeps_its_key_whatever_the_status(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    # a text that says what failed is keyed by that line: the status is no part of its key
    root = _repo(tmp_path)
    text = "start\nTraceback (most recent call last):\n  File \"app.py\", line 1\n" \
           "ValueError: bad value\n"
    args = ["diagnose", "--offline", "--no-semantic", "--json"]
    keys = {json.loads(_heal([*args, *extra], root, text).stdout)["fingerprint"]["fine"]
            for extra in ([], ["--exit-code", "1"], ["--exit-code", "139", "--signal", "11"])}
    assert len(keys) == 1


def test_the_issue_queue_groups_and_labels_them_as_the_stage_keyed_them(
        tmp_path: Path, heal_env: dict[str, str]) -> None:
    root = _repo(tmp_path)
    # Given a segfault, an abort and an exit 3, each after an ordinary line of its own run
    word = "begin" + "".join(random.choice("abcdefghij") for _ in range(8))  # (no digits)
    # (each labelled with its program: python -c, sh -c)
    fines = {
        "killed by SIGSEGV (python -c)": _run(root, sys.executable, "-c", SEGFAULT, word)[1][
            "fingerprint"],
        "killed by SIGABRT (sh -c)": _run(root, "sh", "-c", f"echo {word}; kill -ABRT $$")[1][
            "fingerprint"],
        f"exit 3: {word} (sh -c)": _run(root, "sh", "-c", f"echo {word}; exit 3")[1][
            "fingerprint"],
    }
    # When the queue is listed (its groups re-fingerprint the stored samples)
    listed = _heal(["issues", "list", "--json", "--limit", "1000"], root)
    assert listed.returncode == 0, listed.stderr
    groups = json.loads(listed.stdout)["groups"]
    # Then they are three groups, each labelled by how it ended (before: one group, "start")
    ours = [g for g in groups if set(g["fines"]) & set(fines.values())]
    assert len(ours) == 3, ours
    assert {g["label"] for g in ours} == set(fines), ours
    by_fp = _heal(["issues", "list", "--by-fingerprint", "--json", "--limit", "1000"], root)
    rows = {i["fine"]: i["label"] for i in json.loads(by_fp.stdout)["issues"]}
    assert {rows.get(str(f)) for f in fines.values()} == set(fines), rows
