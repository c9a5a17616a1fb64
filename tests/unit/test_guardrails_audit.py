"""The audit log's hash chain on a file: append, verify, detect each kind of tampering."""

from __future__ import annotations

import json
import multiprocessing
import time
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.config import Settings
from pipeline.guardrails.audit import GENESIS, AuditLog, verify_file


def _log(tmp_path: Path) -> AuditLog:
    return AuditLog(Settings(None, None, tmp_path, "heal"), anchored=False)


def _fill(log: AuditLog, n: int = 5) -> None:
    for i in range(n):
        log.append("lifecycle.transition", f"fix-{i}", {"from": "DRAFT", "to": "ACTIVE", "i": i})


def test_records_are_chained(tmp_path: Path) -> None:
    log = _log(tmp_path)
    first = log.append("breaker.transition", "global", {"to": "OPEN"})
    second = log.append("breaker.transition", "global", {"to": "CLOSED"})
    assert first["prev"] == GENESIS and first["seq"] == 1
    assert second["prev"] == first["hash"] and second["seq"] == 2
    assert verify_file(log.path).ok and verify_file(log.path).records == 2


@pytest.mark.parametrize("tamper", ["edit", "delete", "swap", "append_forged"])
def test_tampering_is_detected_at_the_first_bad_record(tmp_path: Path, tamper: str) -> None:
    log = _log(tmp_path)
    _fill(log)
    lines = log.path.read_text().splitlines()
    if tamper == "edit":
        lines[2] = lines[2].replace('"to":"ACTIVE"', '"to":"AUTOMATED"')
    elif tamper == "delete":
        del lines[2]
    elif tamper == "swap":
        lines[2], lines[3] = lines[3], lines[2]
    else:  # a forged record that recomputes its own hash but not the chain
        forged = json.loads(lines[4])
        forged.update(seq=6, prev="f" * 64)
        lines.append(json.dumps(forged))
    log.path.write_text("\n".join(lines) + "\n")
    result = verify_file(log.path)
    assert not result.ok
    assert result.bad_at == (6 if tamper == "append_forged" else 3)


def test_cli_verify_exits_1_with_the_first_bad_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HEAL_HOME", str(tmp_path))
    log = _log(tmp_path)
    _fill(log, 3)
    assert main(["audit", "verify", "--file-only"]) == 0
    text = log.path.read_text().replace('"i":1', '"i":7')
    log.path.write_text(text)
    assert main(["audit", "verify", "--file-only"]) == 1
    out = capsys.readouterr().out
    assert "TAMPERED at record 2" in out and "edited" in out


def _worker(home: str, n: int, start: Barrier) -> None:
    log = AuditLog(Settings(None, None, Path(home), "heal"), anchored=False)
    start.wait(300)  # every process imported and ready: the appends race each other
    for i in range(n):
        log.append("race", "subject", {"i": i})


def test_concurrent_processes_keep_one_chain(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")  # fork with live threads can deadlock
    start = ctx.Barrier(4)
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), 25, start)) for _ in range(4)]
    for p in procs:
        p.start()
    # a generous deadline: spawning four interpreters on a loaded machine is slow, and the
    # chain is read only once every writer has exited
    deadline = time.monotonic() + 300
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    alive = [p.pid for p in procs if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(10)
    assert not alive, f"writers {alive} still running after 300 s"
    assert [p.exitcode for p in procs] == [0] * 4
    result = verify_file(tmp_path / "audit.jsonl")
    assert result.ok and result.records == 100


def test_torn_last_line_is_quarantined_and_the_chain_goes_on(tmp_path: Path) -> None:
    log = _log(tmp_path)
    _fill(log, 2)
    with open(log.path, "a") as fh:
        fh.write('{"seq": 3, "ha')
    record = log.append("x", "y", {})
    assert record["seq"] == 3
    assert verify_file(log.path).ok and verify_file(log.path).records == 3
    assert (tmp_path / "audit.jsonl.torn").read_text() == '{"seq": 3, "ha\n'
