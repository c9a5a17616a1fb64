"""Dagster: heal for ops (``pip install 'heal[dagster]'``).

Two pieces, both publishing through the emit API (:func:`producers.emit.emit`) with the job
name as ``workflow.id``, the Dagster run id as ``workflow.run_id`` and the op name as
``workflow.step``:

* :func:`heal_failure_hook` (a Dagster ``@failure_hook``): attach it to a job or an op and
  every op failure is published (source ``hook``, name ``dagster``), with the traceback as
  text. A hook runs after the step has failed, so it observes; it cannot retry.
* :func:`healing` (a context manager for the op body): on an exception it publishes the error,
  waits for the pipeline's decision (running the stages in this process when no workers
  serve them, as ``heal run`` does) and, when a verified fix was applied, has Dagster run the
  op again (:class:`dagster.RetryRequested` allowing one attempt more than this one). Without
  an applied fix the original exception goes on unchanged (an op's own ``RetryPolicy`` still
  applies to it). The error is marked as published, so the hook never publishes
  it twice. Dagster's control flow is not an error: the op's own ``RetryRequested`` goes on
  untouched and unpublished; a ``Failure(allow_retries=False)`` (the op's "fail now, do not
  retry") is published but neither waited for nor retried; Dagster's interrupts are
  ``BaseException`` and pass too.

Example::

    from dagster import job, op
    from producers.dagster import healing, heal_failure_hook

    @op
    def lint(context):
        with healing(context, command=["ruff", "check", "."], cwd="/srv/checkout"):
            subprocess.run(["ruff", "check", "."], cwd="/srv/checkout", check=True)

    @job(hooks={heal_failure_hook})
    def nightly():
        lint()

Commands, repositories and modes come from the code that builds the job (the operator's
side), never from the error text.
"""

from __future__ import annotations

import subprocess
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from dagster import Failure, HookContext, RetryRequested, failure_hook

from pipeline.config import Settings
from pipeline.redact import redacted_tail
from producers.context import carried_repo, exact_repo_info, hostname, is_exact
from producers.decision import Decision, DecisionWaiter
from producers.emit import emit
from producers.publisher import Publisher, connect

#: attribute set on an exception heal already published (the hook then leaves it alone)
PUBLISHED_ATTR = "__heal_error_id__"
DEFAULT_TIMEOUT_S = 300.0


def error_text(exc: BaseException) -> str:
    """What went wrong: a failed subprocess's own output (as ``heal run`` publishes it; the
    Python frames around it would name the orchestrator's files, not the failing step's),
    else the traceback."""
    if isinstance(exc, subprocess.CalledProcessError):
        out = "\n".join(_text(x) for x in (exc.stdout, exc.stderr) if x)
        if out.strip():
            return out
    return "".join(traceback.format_exception(exc))


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def publish_failure(job: str, run_id: str, step: str, exc: BaseException, *,
                    command: Sequence[str] = (), cwd: str | None = None, mode: str = "",
                    publisher: Publisher | None = None, attest: bool = False) -> str:
    """Publish one failed op through the emit API; returns the event id. ``attest``: the
    command and checkout come from the operator's own job code (:func:`healing`), so the
    event is signed like heal run's (pipeline.trust).

    Raises: StreamUnavailable when Redis cannot be reached.
    """
    exact = exact_repo_info(cwd)
    repo = carried_repo(exact)
    tags: dict[str, Any] = {"orchestrator": "dagster"}
    if not is_exact(exact.path):
        # the event shows the path's bytes that are not UTF-8 as \xNN: a stand-in, never signed
        tags["not_utf8"] = ["repo.path"]
        attest = False
    if mode:
        tags["mode"] = mode
    exit_code = exc.returncode if isinstance(exc, subprocess.CalledProcessError) else 1
    return emit(
        redacted_tail(error_text(exc), 64_000), publisher=publisher,
        source={"kind": "hook", "name": "dagster", "host": hostname()},
        workflow={"id": job, "run_id": run_id, "phase": "", "step": step},
        repo={"path": repo.path, "commit": repo.commit, "branch": repo.branch},
        command=list(command), exit_code=exit_code, tags=tags, attest=attest,
    )


@failure_hook(name="heal_failure_hook")
def heal_failure_hook(context: HookContext) -> None:
    """Publish the failed op (unless :func:`healing` already did)."""
    exc = context.op_exception
    if exc is None or getattr(exc, PUBLISHED_ATTR, None):
        return
    publish_failure(context.job_name, context.run_id, context.op.name, exc)
    context.log.info("heal: published the failure of %s", context.op.name)


@contextmanager
def healing(context: Any, *, command: Sequence[str] = (), cwd: str | None = None,
            mode: str = "", timeout_s: float = DEFAULT_TIMEOUT_S,
            settings: Settings | None = None) -> Iterator[None]:
    """Run the op body; on failure publish, wait for the decision, retry after a fix.

    ``command`` is what verification re-runs (the command the op wraps); ``cwd`` the
    repository. Raises: the op's own exception (its ``RetryRequested`` untouched), or
    RetryRequested after an applied fix.
    """
    try:
        yield
    except RetryRequested:  # the op asks Dagster for a retry itself: not an error
        raise
    except Failure as exc:
        if not exc.allow_retries:  # the op's "fail now, do not retry": published (a fix may
            # serve the next run), neither waited for nor retried
            _decide(context, exc, command, cwd, mode, timeout_s, settings, wait=False)
            raise
        _heal_and_retry(context, exc, command, cwd, mode, timeout_s, settings)
        raise
    except Exception as exc:
        _heal_and_retry(context, exc, command, cwd, mode, timeout_s, settings)
        raise


def _heal_and_retry(context: Any, exc: Exception, command: Sequence[str], cwd: str | None,
                    mode: str, timeout_s: float, settings: Settings | None) -> None:
    """Publish ``exc`` and wait for the decision; returns when no fix was applied (the caller
    re-raises ``exc``). Raises: RetryRequested after an applied, verified fix."""
    decision = _decide(context, exc, command, cwd, mode, timeout_s, settings)
    if decision is None or not decision.applied:
        return
    context.log.info("heal: fix %s applied and verified; running %s again",
                     decision.outcome.fix_id if decision.outcome else "?", context.op.name)
    # one more attempt than this one, whatever the op's own RetryPolicy allows
    raise RetryRequested(max_retries=context.retry_number + 1) from exc


def _decide(context: Any, exc: BaseException, command: Sequence[str], cwd: str | None,
            mode: str, timeout_s: float, settings: Settings | None, wait: bool = True
            ) -> Decision | None:
    settings = settings or Settings.from_env()
    try:
        client = connect(settings)
        waiter = DecisionWaiter(client, settings)
        waiter.mark()
        error_id = publish_failure(context.job_name, context.run_id, context.op.name, exc,
                                   command=command, cwd=cwd, mode=mode,
                                   publisher=Publisher(client, settings), attest=True)
    except Exception as err:  # noqa: BLE001 - heal being down must not change the op's failure
        context.log.warning("heal: could not publish the failure: %s", err)
        return None
    with suppress(AttributeError):  # an exception type with __slots__ cannot be marked
        setattr(exc, PUBLISHED_ATTR, error_id)
    if not wait:
        context.log.info("heal: published %s", error_id)
        return None
    context.log.info("heal: published %s; waiting for the decision", error_id)
    try:
        decision = waiter.wait(error_id, timeout_s)
    except Exception as err:  # noqa: BLE001 - same: the op's own failure stands
        context.log.warning("heal: no decision: %s", err)
        return None
    outcome = decision.outcome
    context.log.info("heal: decision %s%s", outcome.status if outcome else "none",
                     f" ({outcome.detail})" if outcome and outcome.detail else "")
    return decision
