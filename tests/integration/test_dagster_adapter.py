"""The Dagster adapter with the real library: a job runs in-process; its op fails with a known,
fixable error (ruff's unused import), the failure is published through the emit API with the
job/run/op as workflow, heal applies a verified fix, and Dagster's retry of the op passes."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

dagster = pytest.importorskip("dagster")  # the `heal[dagster]` extra (in `heal[test]` too)

from pipeline.config import Settings  # noqa: E402
from pipeline.events import ErrorEvent  # noqa: E402
from producers.dagster import heal_failure_hook  # noqa: E402
from tests.scenarios.catalog import build  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]



def _errors(heal_env: dict[str, str]) -> list[ErrorEvent]:
    client = redis.Redis.from_url(heal_env["HEAL_REDIS_URL"])
    stream = f"{heal_env['HEAL_STREAM_PREFIX']}:errors"
    return [ErrorEvent.decode(f[b"event"]) for _, f in client.xrange(stream)]


def _example(repo: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """deploy/orchestrators/dagster_job.py, the job the README shows, pointed at ``repo``."""
    monkeypatch.setenv("CHECKOUT", str(repo))
    spec = importlib.util.spec_from_file_location(
        "heal_dagster_example", ROOT / "deploy" / "orchestrators" / "dagster_job.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_failing_op_is_healed_and_its_retry_passes(
    tmp_path: Path, heal_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, repo = build("unused-import", tmp_path)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    example = _example(repo, monkeypatch)

    result = example.nightly.execute_in_process(raise_on_error=False)
    # the op failed once, heal applied a verified fix, and Dagster's retry passed
    assert result.success
    kinds = [e.event_type_value for e in result.all_events if e.step_key == "lint"]
    assert kinds.count("STEP_UP_FOR_RETRY") == 1 and kinds.count("STEP_SUCCESS") == 1
    (event,) = _errors(heal_env)  # published once: the hook saw no final failure
    assert event.source.kind == "hook" and event.source.name == "dagster"
    assert (event.workflow.id, event.workflow.run_id, event.workflow.step) == (
        "nightly", result.run_id, "lint")
    assert event.command == ("ruff", "check", ".") and event.tags["mode"] == "auto-safe"
    assert "imported but unused" in event.text
    assert subprocess.run(["ruff", "check", "."], cwd=repo).returncode == 0


def test_an_unfixable_failure_is_published_by_the_hook_and_the_job_fails(
    tmp_path: Path, heal_env: dict[str, str]
) -> None:
    from dagster import job, op

    @op
    def explode() -> None:
        raise RuntimeError("the warehouse is on fire")

    @job(hooks={heal_failure_hook})
    def etl() -> None:
        explode()

    result = etl.execute_in_process(raise_on_error=False)
    assert not result.success
    (event,) = _errors(heal_env)
    assert (event.workflow.id, event.workflow.run_id, event.workflow.step) == (
        "etl", result.run_id, "explode")
    assert "RuntimeError: the warehouse is on fire" in event.text
    assert Settings.from_env().prefix == heal_env["HEAL_STREAM_PREFIX"]


def _waits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The error ids healing() waited for a decision on (the real wait still runs)."""
    from producers.decision import DecisionWaiter

    waited: list[str] = []
    real = DecisionWaiter.wait

    def wait(self: DecisionWaiter, error_id: str, timeout_s: float) -> Any:
        waited.append(error_id)
        return real(self, error_id, timeout_s)

    monkeypatch.setattr(DecisionWaiter, "wait", wait)
    return waited


def test_an_ops_own_retry_request_passes_through_healing_unpublished(
    heal_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster import RetryRequested, job, op

    from producers.dagster import healing

    # Given an op that asks Dagster for a retry itself, inside healing()
    @op
    def flaky(context):  # type: ignore[no-untyped-def]  # (Dagster refuses Any)
        with healing(context, command=["true"], mode="suggest", timeout_s=60):
            if context.retry_number == 0:
                raise RetryRequested(max_retries=1)

    @job(hooks={heal_failure_hook})
    def flows() -> None:
        flaky()

    waited = _waits(monkeypatch)
    # When the job runs
    result = flows.execute_in_process(raise_on_error=False)
    # Then Dagster retries the op at once and it passes: nothing published, nothing waited
    assert result.success
    kinds = [e.event_type_value for e in result.all_events if e.step_key == "flaky"]
    assert kinds.count("STEP_UP_FOR_RETRY") == 1 and kinds.count("STEP_SUCCESS") == 1
    assert _errors(heal_env) == [] and waited == []


def test_a_failure_that_allows_no_retry_is_published_but_not_waited_for(
    heal_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster import Failure, job, op

    from producers.dagster import healing

    # Given an op that fails with Dagster's "fail now, do not retry", inside healing()
    @op
    def load(context):  # type: ignore[no-untyped-def]  # (Dagster refuses Any)
        with healing(context, command=["true"], mode="suggest", timeout_s=60):
            raise Failure(description="ValueError: the schema changed", allow_retries=False)

    @job(hooks={heal_failure_hook})
    def daily() -> None:
        load()

    waited = _waits(monkeypatch)
    # When the job runs
    result = daily.execute_in_process(raise_on_error=False)
    # Then the op fails at once, the failure is published once (not again by the hook), and
    # no decision is waited for
    assert not result.success
    kinds = [e.event_type_value for e in result.all_events if e.step_key == "load"]
    assert "STEP_UP_FOR_RETRY" not in kinds and kinds.count("STEP_FAILURE") == 1
    (event,) = _errors(heal_env)
    assert "the schema changed" in event.text and event.workflow.step == "load"
    assert waited == []
