"""Workflow hooks against the real embedded Redis."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest
import redis

from pipeline.config import Settings
from pipeline.errors import EventValidationError, UsageError
from pipeline.events import ErrorEvent
from producers.hooks import WorkflowHooks


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, database_url: str, prefix: str) -> Settings:
    return Settings.from_env({"HEAL_HOME": str(tmp_path), "HEAL_REDIS_URL": redis_url,
                              "HEAL_DATABASE_URL": database_url, "HEAL_STREAM_PREFIX": prefix})


def errors(client: redis.Redis, settings: Settings) -> list[ErrorEvent]:
    return [ErrorEvent.decode(f[b"event"]) for _, f in client.xrange(settings.stream("errors"))]


def test_subprocess_failure_then_success_is_published_then_resolved(
    client: redis.Redis, settings: Settings
) -> None:
    hooks = WorkflowHooks("nightly", "42", client=client, settings=settings)
    event_id = hooks.on_subprocess_complete(["pytest", "-q"], 1, stdout="collected 3",
                                            stderr="E   ImportError: yaml", phase="test")
    (event,) = errors(client, settings)
    assert event.id == event_id and event.source.kind == "hook"
    assert event.command == ("pytest", "-q") and event.exit_code == 1
    assert "ImportError: yaml" in event.text and "collected 3" in event.text
    assert (event.workflow.id, event.workflow.run_id, event.workflow.phase) == (
        "nightly", "42", "test")
    assert hooks.on_subprocess_complete(["pytest", "-q"], 0) is None
    (row,) = client.xrange(settings.stream("resolutions"))
    assert row[1][b"error_id"].decode() == event_id


def test_phase_and_workflow_hooks(client: redis.Redis, settings: Settings) -> None:
    hooks = WorkflowHooks("nightly", "43", client=client, settings=settings)
    assert hooks.on_phase_complete("lint", "passed") is None
    phase_id = hooks.on_phase_complete("deploy", "failure", error_text="503 from registry")
    assert hooks.on_workflow_complete("failed", summary="1 of 2 phases failed") is None
    record = client.hgetall(settings.key("workflow", "nightly", "43"))
    assert record[b"status"] == b"failure" and record[b"events"] == b"1"
    (event,) = errors(client, settings)
    assert event.id == phase_id and event.text == "503 from registry"
    with pytest.raises(UsageError, match="status 'meh'"):
        hooks.on_phase_complete("x", "meh")


def test_learn_phase_lessons_are_published_in_observe_mode(
    client: redis.Redis, settings: Settings
) -> None:
    hooks = WorkflowHooks("agent", "7", client=client, settings=settings)
    # an error of its own: the lesson is taught, and the test database is shared
    word = "".join(chr(97 + int(c, 16)) for c in uuid.uuid4().hex[:10])
    ids = hooks.on_learn_phase_complete([
        {"error": f"PlinthError: plinth {word} cracked", "fix": "pip install PyYAML"},
    ])
    (event,) = errors(client, settings)
    assert ids == [event.id]
    assert event.tags["mode"] == "observe"
    assert event.tags["learned"] == {"fix": "pip install PyYAML"}
    with pytest.raises(UsageError, match="lesson 0"):
        hooks.on_learn_phase_complete([{"fix": "x"}])
    with pytest.raises(UsageError, match="lesson 0: .*shell syntax"):
        hooks.on_learn_phase_complete([{"error": "boom", "fix": "make | tee log",
                                        "fix_kind": "command"}])
    assert len(errors(client, settings)) == 1  # a refused lesson publishes nothing


def test_a_lessons_fix_is_taught_like_heal_learn_and_then_offered(
    client: redis.Redis, settings: Settings
) -> None:
    from pipeline.cli.diagnose import diagnose
    from pipeline.model import Mode
    from tests.integration._stores import close_stores

    word = "".join(chr(97 + int(c, 16)) for c in uuid.uuid4().hex[:10])
    text = f"GraniteError: the {word} quarry returned 7 cracked slabs from /srv/q/3"
    prose = f"GraniteError: the {word} kiln is cold; ask facilities for gas"
    hooks = WorkflowHooks("agent", "8", client=client, settings=settings)
    hooks.on_learn_phase_complete([
        {"error": text, "fix": "python3 -m compileall -q ."},
        {"error": prose, "fix": "ask facilities to relight the kiln"},
    ])
    command, escalate = hooks.taught
    assert (command.kind, command.category) == ("command", "MODERATE")
    assert (escalate.kind, escalate.category) == ("escalate", "RISKY")
    assert command.provenance["source"] == "hook on_learn_phase_complete"
    try:
        report = diagnose(text.replace("7 cracked", "12 cracked"), settings, Mode.SUGGEST,
                          semantic=False)
    finally:
        close_stores()
    assert report["match"]["pattern_id"] == command.pattern_id, report["match"]
    assert report["fix"]["id"] == command.fix_id and report["fix"]["state"] == "DRAFT"


def test_hooks_feed_the_execution_state_and_tell_the_orchestrator(
    client: redis.Redis, settings: Settings
) -> None:
    from pipeline.guardrails.execution import ExecutionGuard, WorkflowState

    hooks = WorkflowHooks("nightly-hooks", "44", client=client, settings=settings)
    for _ in range(3):  # three failures of one kind
        hooks.on_phase_complete("deploy", "failure", error_text="ConnectionError: registry down")
    assert hooks.state is WorkflowState.DEGRADED
    guard = ExecutionGuard(client, settings)
    assert guard.state("nightly-hooks")[0] is WorkflowState.DEGRADED
    decision = hooks.execution_decision("deploy")
    assert decision.execute and decision.strict_validation
    for i in range(7):  # ten failures within ten minutes
        hooks.on_subprocess_complete(["make", f"t{i}"], 2, stderr=f"error {i}: target t{i}")
    assert guard.state("nightly-hooks")[0] is WorkflowState.QUARANTINED
    decision = hooks.execution_decision("deploy")
    assert not decision.execute and not decision.auto_fix
    # and each state change the hooks caused reached a person, with its severity
    import json

    told = [json.loads(line) for line in
            (settings.home / "notifications.jsonl").read_text().splitlines()]
    changes = [n["summary"] for n in told if "nightly-hooks" in n["summary"]]
    assert any("RUNNING -> DEGRADED" in c for c in changes), told
    assert any("-> QUARANTINED" in c for c in changes), told


def test_hook_events_are_validated_as_emit_validates(
    client: redis.Redis, settings: Settings
) -> None:
    """API misuse raises EventValidationError saying what to pass, before anything is
    published or recorded; oversized values are cut; every entry decodes as a stage reads it
    (``exit_code: true``, a 5000-argument argv and a string split into characters were once
    published, and a huge exit code or a set in tags raised a bare TypeError)."""
    hooks = WorkflowHooks("wf", "r1", client=client, settings=settings)
    for argv, code, tags, reason in [
        (["pytest"], True, None, "exit_code must be an integer, got a boolean"),
        (["pytest"], 2 ** 70, None, "exit_code is out of range"),
        (["pytest"], "1", None, "exit_code must be an integer, got a string"),
        ("pytest -q", 1, None, "argv must be a list of strings .*shlex.split"),
        (["pytest", 3], 1, None, "argv must be a list of strings, but holds an integer"),
        (["pytest"], 1, {"s": {1, 2}}, "cannot be written as JSON: .*set"),
    ]:
        with pytest.raises(EventValidationError, match=reason):
            hooks.on_subprocess_complete(argv, code, stderr="E", tags=tags)  # type: ignore[arg-type]
    assert errors(client, settings) == [] and hooks.published == 0
    assert client.keys(f"{settings.prefix}:*") == []  # nothing recorded either
    event_id = hooks.on_subprocess_complete(["a"] * 5000, 1, stderr="E boom")
    (event,) = errors(client, settings)  # (decodes: the stage accepts it)
    assert event.id == event_id and event.command == () and event.exit_code == 1
    assert event.tags["cut_fields"] == ["command"] and event.tags["command_args"] == 5000
    assert event.tags["command_head"].startswith("a a a")
    big = WorkflowHooks("w" * 300_000, "r", client=client, settings=settings)
    big.on_phase_complete("test", "failure", error_text="ValueError: boom")
    last = errors(client, settings)[-1]
    assert len(last.workflow.id) <= 1024 and "workflow.id" in last.tags["cut_fields"]


def test_a_huge_phase_error_text_is_cut_before_it_is_fingerprinted(
    client: redis.Redis, settings: Settings
) -> None:
    """The execution state fingerprints the published (64 KiB) text, not the caller's 10 MB
    (which once cost 6.5 s of CPU in the orchestrator's thread)."""
    import time

    hooks = WorkflowHooks("wf", "r1", client=client, settings=settings)
    text = "ValueError: boom " + "x y z 123 " * 1_000_000
    started = time.process_time()
    hooks.on_phase_complete("test", "failure", error_text=text)
    assert time.process_time() - started < 2.0
    (event,) = errors(client, settings)
    assert event.tags["truncated_bytes"] > 9_000_000


def test_a_lesson_command_given_as_a_string_is_split_not_spelled_out(
    client: redis.Redis, settings: Settings
) -> None:
    hooks = WorkflowHooks("agent", "8", client=client, settings=settings)
    hooks.on_learn_phase_complete([{"error": "E   ImportError: yaml", "command": "pytest -q"}])
    (event,) = errors(client, settings)
    assert event.command == ("pytest", "-q")


def test_a_huge_step_name_is_keyed_and_recorded_by_the_cut_name_the_event_carries(
    client: redis.Redis, settings: Settings
) -> None:
    """The step record is keyed by the name the event carries (cut to 1 KiB, with a short
    hash of the whole name), so a hostile 10 MB step name makes no 10 MB record, and its
    success still resolves its failure."""
    from producers.steps import StepRecorder

    hooks = WorkflowHooks("wf", "r9", client=client, settings=settings)
    step = "build " + "s" * 10_000_000
    # When a step with a 10 MB name fails
    event_id = hooks.on_phase_complete("build", "failure", error_text="ValueError: boom",
                                       step=step)
    (event,) = errors(client, settings)
    cut = event.workflow.step
    assert event.id == event_id and len(cut) <= 1024 and "workflow.step" in event.tags["cut_fields"]
    # Then the step record is the one of the cut name, holding that name, nothing larger
    recorder = StepRecorder(client, settings)
    key = hooks._key(step)
    assert recorder.status(key).last_error_id == event_id
    record = client.hgetall(recorder._key(key))
    assert record[b"step"].decode() == cut
    assert max(len(v) for v in record.values()) <= 1024
    # and its success (the same hostile name) resolves that failure
    assert hooks.on_phase_complete("build", "passed", step=step) is None
    (row,) = client.xrange(settings.stream("resolutions"))
    assert row[1][b"error_id"].decode() == event_id and row[1][b"step"].decode() == cut
    assert hooks.execution_decision(step).execute


def test_two_huge_step_names_sharing_their_cut_are_two_steps(
    client: redis.Redis, settings: Settings
) -> None:
    """QA s12 N7: two hostile step names sharing their first 1 KiB (the name the event
    carries) were one step record: a success of one resolved the other's failure."""
    hooks = WorkflowHooks("wf", "r1", client=client, settings=settings)
    a = "build " + "a" * 3000 + " variantA"
    b = "build " + "a" * 3000 + " variantB"
    # When step A fails and step B (the same first 1 KiB) then passes
    event_id = hooks.on_phase_complete("build", "failure", error_text="ValueError: A broke",
                                       step=a)
    (event,) = errors(client, settings)
    assert hooks.on_phase_complete("build", "passed", step=b) is None
    # Then A's failure is not resolved, and both events carry the same cut name
    assert client.xrange(settings.stream("resolutions")) == []
    assert len(event.workflow.step) <= 1024 and not event.workflow.step.endswith("variantA")
    # and A's own success resolves it, naming the cut name
    assert hooks.on_phase_complete("build", "passed", step=a) is None
    (row,) = client.xrange(settings.stream("resolutions"))
    assert row[1][b"error_id"].decode() == event_id
    assert row[1][b"step"].decode() == event.workflow.step


def test_a_step_name_holding_a_secret_is_redacted_on_success_and_still_resolves(
    client: redis.Redis, settings: Settings
) -> None:
    """The failure path keys and records the step by the name the event carries (redacted);
    the success path used the caller's name: the secret reached the step record and the
    execution state, and the success never resolved the failure."""
    hooks = WorkflowHooks("wf", "r2", client=client, settings=settings)
    step = "deploy --password=hunter2secret"
    # When the step fails and then passes
    event_id = hooks.on_phase_complete("deploy", "failure", error_text="ValueError: no",
                                       step=step)
    assert hooks.on_phase_complete("deploy", "passed", step=step) is None
    # Then its success resolves its failure
    (row,) = client.xrange(settings.stream("resolutions"))
    assert row[1][b"error_id"].decode() == event_id
    assert hooks.execution_decision(step).execute
    # and no key or value in Redis holds the secret
    for key in client.scan_iter(count=1000):
        assert b"hunter2secret" not in key
        kind = client.type(key)
        if kind == b"hash":
            values = [*client.hgetall(key).keys(), *client.hgetall(key).values()]
        elif kind == b"string":
            values = [client.get(key) or b""]
        elif kind == b"stream":
            values = [v for _, fields in client.xrange(key) for v in fields.values()]
        else:
            values = []
        assert all(b"hunter2secret" not in v for v in values), key


@pytest.mark.parametrize("workflow_id", [
    "nightly-" + "w" * 2000,  # over the contract's 1 KiB: the event carries its start
    "nightly --token=hunter2secret",  # a secret: the event carries it redacted
], ids=["over-1KiB", "holding-a-secret"])
def test_a_quarantine_the_hooks_record_is_enforced_on_the_workflow_the_event_names(
    client: redis.Redis, settings: Settings, workflow_id: str,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reviewer N3: the hooks kept the execution state under the caller's workflow id, the
    validate and apply stages look it up (``gate_for``) under the id the event carries (cut
    to 1 KiB, redacted): the quarantine was never enforced on that workflow's fixes."""
    from pipeline.guardrails.execution import WorkflowState
    from pipeline.guardrails.gate import gate_for
    from pipeline.policy import Policy

    hooks = WorkflowHooks(workflow_id, "r7", client=client, settings=settings)
    # When ten steps of the workflow fail within ten minutes
    for i in range(10):
        hooks.on_subprocess_complete(["make", f"t{i}"], 2, stderr=f"error {i}: target t{i}")
    assert hooks.state is WorkflowState.QUARANTINED
    # Then the guardrail both stages call with the decoded event holds the fixes back
    published = errors(client, settings)
    assert len(published) == 10 and published[-1].workflow.id != workflow_id
    gate = gate_for(client, settings, published[-1], Policy())
    assert gate.state is WorkflowState.QUARANTINED and not gate.auto_allowed, gate
    assert "quarantined" in gate.refusal(1.0)
    # and the orchestrator is told the same
    assert not hooks.execution_decision("make t0").execute
    # and `heal unquarantine --workflow` with the caller's own id lifts it
    from pipeline.cli import main

    monkeypatch.setenv("HEAL_HOME", str(settings.home))
    monkeypatch.setenv("HEAL_REDIS_URL", str(settings.redis_url))
    monkeypatch.setenv("HEAL_STREAM_PREFIX", settings.prefix)
    assert main(["unquarantine", "--workflow", workflow_id]) == 0
    assert gate_for(client, settings, published[-1], Policy()).auto_allowed
    # and no Redis key holds the caller's whole id (nor the secret)
    assert not any(workflow_id.encode() in k for k in client.scan_iter(count=1000)
                   if b"{execution}" in k)
    # and the run's own record is kept under the id the event carries, as every key is
    # (an id cut to 1 KiB followed by `#` and a hash of the whole id: see
    # test_two_workflow_ids_sharing_their_first_kib_keep_two_run_records)
    hooks.on_workflow_complete("failed", summary="10 of 10 steps failed")
    carried = published[-1].workflow.id
    if len(workflow_id) > 1024:
        carried += "#" + hashlib.sha256(workflow_id.encode()).hexdigest()[:16]
    assert client.hget(settings.key("workflow", carried, "r7"), "status") == b"failure"
    assert not any(workflow_id.encode() in k or b"hunter2secret" in k
                   for k in client.scan_iter(count=1000))


def test_two_workflow_ids_sharing_their_first_kib_keep_two_run_records(
    client: redis.Redis, settings: Settings
) -> None:
    """QA s13 D6: the run record was keyed by the ids as the event carries them (cut to
    1 KiB): two workflow ids sharing their first 1 KiB wrote one record, the second run's
    summary overwriting the first's. (Step records hashed the whole name already.)"""
    # Given two workflows whose ids differ only after their first 2000 characters
    first = WorkflowHooks("B" * 2000 + "X", "r1", client=client, settings=settings)
    second = WorkflowHooks("B" * 2000 + "Y", "r1", client=client, settings=settings)
    # When both runs complete
    first.on_workflow_complete("success", summary="s-X")
    second.on_workflow_complete("failure", summary="s-Y")
    # Then each has its own record, holding its own summary
    records = [client.hgetall(k) for k in client.scan_iter(match=settings.key("workflow", "*"))]
    assert sorted(r[b"summary"] for r in records) == [b"s-X", b"s-Y"], records
    # and no key holds either whole id (each is the carried 1 KiB start and a short hash)
    keys = list(client.scan_iter(match=settings.key("workflow", "*")))
    assert all(len(k) < 1200 and b"B" * 2000 not in k for k in keys), keys
    # and an id that is not cut keys as the event carries it, as before
    WorkflowHooks("nightly", "r2", client=client, settings=settings).on_workflow_complete("ok")
    assert client.hget(settings.key("workflow", "nightly", "r2"), "status") == b"success"
