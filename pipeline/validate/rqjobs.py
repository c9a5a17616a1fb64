"""Verification checks as RQ jobs on the pipeline's Redis.

:class:`CheckQueue` enqueues :func:`pipeline.validate.runner.run_argv` jobs and waits for
them. When no live RQ worker listens on the queue it starts worker subprocesses (real
``rq worker`` processes, a ``SimpleWorker`` that also exits when its Redis and its parent are
gone (:mod:`pipeline.validate.rqworker`), exiting on their own after an idle period),
so verification runs in parallel even on a single machine with nothing else started.
The workers a process started are its children, whoever's queue started them: one list per
process reaps the ones that exited (idle) at every check any queue runs, and one exit hook
stops the rest, so a long-lived process that builds a queue per drain (the Dagster adapter,
the Python API) collects no zombie processes and keeps no queue alive.
A second watchdog sits on this side: a job that has not finished within its timeout plus a
grace period is reported as timed out (exit 124), one that no worker ever took as not run
(``not_run``): neither is evidence about the fix. A registration of a worker on this host
whose process is gone (a SIGKILLed heal took its workers with it) counts as no worker, and a
job still queued after :data:`QUEUE_STALL_S` gets one more worker of our own (up to
``workers``), whatever other registrations claim. A worker killed between taking a job off
the queue and starting it leaves the job in RQ's intermediate list, where RQ would fail it
only a minute later: seen there twice, :data:`TRANSIT_S` apart, the job goes back to the
front of the queue. A job whose worker died while running it, or that RQ failed itself
(stuck, abandoned, stopped), is ``lost``: no evidence about the fix either.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import redis
from rq import Queue, Worker
from rq.exceptions import InvalidJobOperation
from rq.job import Job, JobStatus
from rq.worker import BaseWorker

from pipeline.errors import AccessRefused, StreamUnavailable
from pipeline.redact import redacted_tail
from pipeline.runtime.connection import redis_failure
from pipeline.validate.owner import owner_gone
from pipeline.validate.rqworker import PARENT_ENV

log = logging.getLogger(__name__)

QUEUE_GRACE_S = 20.0
#: seconds a job may stay queued before one more worker of our own is started for it
QUEUE_STALL_S = 5.0
#: seconds between the two looks that find a queued job taken by a worker that never started it
TRANSIT_S = 1.0
WORKER_IDLE_S = 20
#: a worker that exits with an error within this many seconds of its start could not start
#: (what it wrote on stderr says why; later exits are a stop or a crash mid-job)
WORKER_START_S = 10.0
_PROJECT_ROOT = Path(__file__).resolve().parents[2]

#: every worker process this process started and has not reaped yet (of any queue)
_CHILDREN: list[subprocess.Popen[bytes]] = []
_CHILDREN_LOCK = threading.Lock()
#: the exit hook that stops them is registered (see :func:`_adopt`)
_children_hooked = False


def _reap() -> None:
    """Collect the exit status of started workers that exited (an idle worker exits on its
    own; unreaped it would stay a zombie process as long as this one runs)."""
    with _CHILDREN_LOCK:
        _CHILDREN[:] = [p for p in _CHILDREN if p.poll() is None]


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM first; a worker whose Redis is already gone retries its clean-up forever, so
    whoever has not exited a moment later is killed."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5.0)
    with _CHILDREN_LOCK:
        _CHILDREN[:] = [p for p in _CHILDREN if p not in procs]


def _stop_all() -> None:
    with _CHILDREN_LOCK:
        procs = list(_CHILDREN)
    _stop(procs)


def remove_queue(client: redis.Redis, queue_name: str) -> None:
    """Delete what RQ keeps in Redis for the queue ``queue_name``, which nobody uses again
    (``heal demo``'s, named after its own prefix): its entry in ``rq:queues`` and its list,
    which RQ keeps for ever, its registries (the finished one has no expiry), its jobs and
    their results. The workers this process started are stopped first, so none re-registers
    what is deleted. Best effort: a Redis error is logged, never raised (the demo's result
    stands; what is left is bookkeeping).
    """
    from pipeline.runtime.connection import glob_escape

    _stop_all()
    queue = Queue(queue_name, connection=client)
    try:
        registries = (queue.started_job_registry, queue.finished_job_registry,
                      queue.failed_job_registry, queue.deferred_job_registry,
                      queue.scheduled_job_registry, queue.canceled_job_registry)
        ids = set(queue.get_job_ids())
        for registry in registries:
            ids.update(registry.get_job_ids(cleanup=False))
        for job in Job.fetch_many(sorted(ids), connection=client):
            if job is not None:
                job.delete(remove_from_queue=False)
        queue.delete(delete_jobs=False)  # its list, and its entry in rq:queues
        # the registries and whatever else RQ named after the queue (its intermediate list,
        # workers set, clean-up marker): every key naming it, which no other queue's does
        name = glob_escape(queue_name)
        for pattern in (f"rq:*:{name}", f"rq:*:{name}:*"):
            for key in client.scan_iter(match=pattern, count=500):
                client.delete(key)
    except redis.RedisError as exc:
        log.warning("could not remove the RQ queue %s from Redis: %s", queue_name, exc)


def _adopt(proc: subprocess.Popen[bytes]) -> None:
    """Track a started worker; the exit hook is registered with the first one, so it runs
    before the exit hooks of what was started earlier (an embedded Redis the workers still
    need to deregister from: without it a stopping worker retries until it is killed)."""
    global _children_hooked
    with _CHILDREN_LOCK:
        if not _children_hooked:
            atexit.register(_stop_all)
            _children_hooked = True
        _CHILDREN.append(proc)


@dataclass(frozen=True)
class CheckSpec:
    name: str
    phase: str  # "before" (the tree without the fix) | "after" (with the fix)
    argv: tuple[str, ...]
    cwd: str
    timeout_s: float


def redis_url_of(client: redis.Redis) -> str:
    """A URL another process can use to reach the same Redis as ``client``."""
    kw = client.connection_pool.connection_kwargs
    db = kw.get("db", 0)
    if kw.get("path"):
        return f"unix://{kw['path']}?db={db}"
    auth = f":{kw['password']}@" if kw.get("password") else ""
    return f"redis://{auth}{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{db}"


class CheckQueue:
    """Runs :class:`CheckSpec` lists as RQ jobs; ``workers`` is the most to start itself."""

    def __init__(self, client: redis.Redis, queue_name: str, workers: int = 2,
                 prefix: str | None = None) -> None:
        self.client = client
        #: HEAL_STREAM_PREFIX, for the refusal's advice (default: the queue name's first part)
        self.prefix = prefix if prefix is not None else queue_name.split(":", 1)[0]
        self.queue = Queue(queue_name, connection=client)
        self.max_workers = workers
        #: the workers this queue started that were alive when last looked at (the exit
        #: hook stops them with the process's other children; idle ones exit on their own)
        self._spawned: list[subprocess.Popen[bytes]] = []
        #: per started worker: where its stderr goes, and when it started
        self._stderr: dict[subprocess.Popen[bytes], tuple[IO[bytes], float]] = {}
        #: why workers of this queue could not start (their last words on stderr)
        self.start_errors: list[str] = []

    def close(self) -> None:
        """Stop the workers this queue started (idle ones would exit on their own)."""
        _stop(self._spawned)
        self._spawned = []
        for stream, _ in self._stderr.values():
            stream.close()
        self._stderr.clear()

    def _failure(self, exc: redis.RedisError) -> AccessRefused | StreamUnavailable:
        """The ACL's refusal (NOPERM) as the refusal it is, anything else as an outage."""
        return redis_failure(exc, "rq", self.prefix)

    def _live_workers(self) -> int:
        self._reap_own()
        try:
            registered = len([w for w in Worker.all(queue=self.queue) if worker_alive(w)])
        except redis.RedisError as exc:
            raise self._failure(exc) from exc
        return max(registered, len(self._spawned))

    def ensure_workers(self, wanted: int) -> None:
        """Start worker subprocesses until ``wanted`` (capped) are alive."""
        self._start(min(wanted, self.max_workers) - self._live_workers())

    def _start(self, count: int) -> None:
        rq_bin = shutil.which("rq", path=str(Path(sys.executable).parent)) or "rq"
        for _ in range(max(0, count)):
            argv = worker_argv(rq_bin, self.queue.name)
            # the Redis URL (its password) goes through the environment: an argv is
            # readable by every user on the machine through ps (issue 11, item 9)
            env = {**os.environ, "RQ_REDIS_URL": redis_url_of(self.client),
                   PARENT_ENV: str(os.getpid())}
            # (quiet: a worker writes on stderr only when something is wrong)
            stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed when reaped
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr,
                                    start_new_session=True, env=env)
            self._stderr[proc] = (stderr, time.monotonic())
            self._spawned.append(proc)
            _adopt(proc)

    def run(self, specs: list[CheckSpec]) -> list[dict[str, Any]]:
        """Enqueue every spec, wait for all; results in the same order as ``specs``.

        Raises:
            StreamUnavailable: Redis cannot be reached.
        """
        if not specs:
            return []
        try:
            jobs = [self.queue.enqueue(
                "pipeline.validate.runner.run_argv",
                args=(list(s.argv), s.cwd, s.timeout_s),
                job_timeout=int(s.timeout_s + QUEUE_GRACE_S), result_ttl=600,
                failure_ttl=600, description=f"heal verify {s.phase}:{s.name}",
            ) for s in specs]
        except redis.RedisError as exc:
            raise self._failure(exc) from exc
        try:
            self.ensure_workers(len(jobs))
            queued = time.monotonic()
            return [self._wait(job, spec, queued) for job, spec in zip(jobs, specs, strict=True)]
        except redis.RedisError as exc:
            raise self._failure(exc) from exc

    def _wait(self, job: Job, spec: CheckSpec, queued: float) -> dict[str, Any]:
        """The result of ``job``, enqueued at ``queued`` (monotonic; the batch's earlier jobs
        may have been waited for since)."""
        if self.start_errors and job.get_status(refresh=True) == JobStatus.QUEUED:
            stuck = self._stuck(job, spec)  # (an earlier job of the batch found out)
            if stuck is not None:
                return stuck
        deadline = time.monotonic() + spec.timeout_s + QUEUE_GRACE_S
        looked = queued  # (the last look at the job's workers)
        started = taken = False
        while time.monotonic() < deadline:
            status = job.get_status(refresh=True)
            ended = self._ended(job, spec, status)
            if ended is not None:
                return ended
            if status == JobStatus.STARTED and not started:
                # its timeout runs from now: it may have waited for a busy worker
                started = True
                deadline = max(deadline, time.monotonic() + spec.timeout_s + QUEUE_GRACE_S)
            if (status in (JobStatus.QUEUED, JobStatus.STARTED)
                    and time.monotonic() - looked > QUEUE_STALL_S):
                looked = time.monotonic()
                ended, taken = self._look(job, spec, status, taken)
                if ended is not None:
                    return ended
                if taken:
                    looked -= QUEUE_STALL_S - TRANSIT_S  # (look again soon)
            time.sleep(0.05)
        if not started and job.get_status(refresh=True) in (JobStatus.QUEUED, None):
            return self._never_ran(job, spec, "no verification worker took the job within "
                                   f"{spec.timeout_s + QUEUE_GRACE_S:g}s")
        return self._failed(spec, job, "watchdog: no result within the timeout", timed_out=True)

    def _ended(self, job: Job, spec: CheckSpec, status: JobStatus | None
               ) -> dict[str, Any] | None:
        """The result of a job that ended (finished, or failed in RQ), else None."""
        if status == JobStatus.FINISHED:
            result = job.return_value()
            if isinstance(result, dict):
                return {**result, "name": spec.name, "phase": spec.phase, "job": job.id}
        if status not in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
            return None
        latest = job.latest_result()
        state = status.value if status is not None else "gone"
        why = ((latest.exc_string if latest is not None else None) or state).strip()
        if "JobTimeoutException" in why:
            # RQ's own job timeout is a timeout, not the command failing (exit 1)
            return self._failed(spec, job, f"rq job {state}: {why}", timed_out=True)
        # the command never fails its job (run_argv reports every exit): RQ or the worker
        # did (stuck, abandoned by a dead worker, stopped, cancelled; the last line says)
        return self._lost(spec, job, f"rq job {state}: {why.splitlines()[-1][:300]}")

    def _look(self, job: Job, spec: CheckSpec, status: JobStatus, taken: bool
              ) -> tuple[dict[str, Any] | None, bool]:
        """A look at the workers of a job waiting too long: (its result if that ends it,
        whether it is still seen taken by a worker that has not started it)."""
        if status == JobStatus.STARTED:
            dead = self._dead_runner(job)
            why = f"its verification worker {dead} died while running it"
            return (self._lost(spec, job, why) if dead else None), False
        # registered workers may be dead elsewhere or busy: add one of our own
        self._reap_own()
        stuck = self._stuck(job, spec)
        if stuck is not None:
            return stuck, False
        if self._in_transit(job):
            # taken off the queue by a worker that has not started it: one killed in
            # between (RQ would fail the job as stuck only after a minute). Seen there
            # twice, TRANSIT_S apart, it goes back to the front of the queue.
            if not taken:
                return None, True
            self._requeue(job)
        self._start(1 if len(self._spawned) < self.max_workers else 0)
        return None, False

    def _stuck(self, job: Job, spec: CheckSpec) -> dict[str, Any] | None:
        """The never-ran result of a queued job when every worker died as it started and
        none is alive (waiting out the timeout would change nothing); else None."""
        if not self.start_errors or self._live_workers():
            return None
        return self._never_ran(job, spec, "verification workers cannot start: "
                               f"{self.start_errors[-1]}")

    def _in_transit(self, job: Job) -> bool:
        """The job is in RQ's intermediate list: a worker took it off the queue and has not
        started it (a live worker starts it within milliseconds)."""
        return self.client.lpos(self.queue.intermediate_queue_key, job.id) is not None

    def _requeue(self, job: Job) -> None:
        """Put a job a dead worker took (see :meth:`_in_transit`) back at the queue's front."""
        if self.client.lrem(self.queue.intermediate_queue_key, 1, job.id):
            self.queue.push_job_id(job.id, at_front=True)
            log.warning("verify: job %s was taken by a worker that never started it (killed?);"
                        " queued again", job.id)

    def _dead_runner(self, job: Job) -> str:
        """'pid N' when the worker running ``job`` is a process of this host that is gone
        (killed mid-check: RQ would notice only when the job's timeout has passed); else ''."""
        job.refresh()  # type: ignore[no-untyped-call]  # (rq leaves it unannotated)
        if not job.worker_name:
            return ""
        worker = Worker.find_by_key(Worker.redis_worker_namespace_prefix + job.worker_name,
                                    connection=self.client)
        if worker is None or worker_alive(worker):
            return ""
        return f"pid {worker.pid}" if job.get_status(refresh=True) == JobStatus.STARTED else ""

    def _lost(self, spec: CheckSpec, job: Job, why: str) -> dict[str, Any]:
        """The result of a check that started (or was taken) and never finished through no
        fault of the command: no evidence about the fix."""
        return {**self._failed(spec, job, f"lost: {why}", timed_out=False), "exit_code": 124,
                "lost": True}

    def _never_ran(self, job: Job, spec: CheckSpec, why: str) -> dict[str, Any]:
        with contextlib.suppress(redis.RedisError, InvalidJobOperation):
            job.cancel()  # nobody waits for it any more
        return {**self._failed(spec, job, f"never ran: {why}", timed_out=True),
                "not_run": True, "duration_s": 0.0}

    def _reap_own(self) -> None:
        _reap()
        alive = []
        for proc in self._spawned:
            if proc.poll() is None:
                alive.append(proc)
                continue
            stream, since = self._stderr.pop(proc, (None, 0.0))
            if stream is None:
                continue
            if proc.returncode and time.monotonic() - since < WORKER_START_S:
                stream.seek(0)
                said = [ln.strip() for ln in stream.read()[-4000:].decode(
                    "utf-8", "replace").splitlines() if ln.strip()]
                why = (said[-1] if said else f"exit {proc.returncode}")[:300]
                log.error("verify: a verification worker could not start: %s", why)
                self.start_errors = [*self.start_errors[-4:], why]
            stream.close()
        self._spawned = alive

    @staticmethod
    def _failed(spec: CheckSpec, job: Job, why: str, timed_out: bool = False) -> dict[str, Any]:
        return {"argv": list(spec.argv), "exit_code": 124 if timed_out else 1,
                "timed_out": timed_out, "duration_s": spec.timeout_s,
                "tail": redacted_tail(why, 2000), "name": spec.name, "phase": spec.phase,
                "job": job.id}


def worker_alive(worker: BaseWorker) -> bool:
    """False for the registration of a worker on this host whose process is gone (killed
    with a SIGKILLed heal: it never deregistered, and RQ keeps it for minutes). Workers of
    other hosts are RQ's to expire: their registration counts while it exists."""
    return not worker.pid or not owner_gone(f"{worker.hostname}|{worker.pid}|")


def worker_argv(rq_bin: str, queue: str) -> list[str]:
    """The argv of one ``rq worker``: no credential in it (the URL is in ``RQ_REDIS_URL``)."""
    return [rq_bin, "worker", "--max-idle-time", str(WORKER_IDLE_S), "-q",
            "-w", "pipeline.validate.rqworker.VerifyWorker", "-P", str(_PROJECT_ROOT),
            "-n", f"heal-verify-{uuid.uuid4().hex[:8]}", queue]
