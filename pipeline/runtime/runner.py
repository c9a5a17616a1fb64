"""Running workers until a signal: threads in this process, or N worker processes.

Concurrency model (why): Python threads share one interpreter lock, so CPU-bound stages
(fingerprint: regexes, hashing; decode and encode everywhere) do not go faster with more
threads. ``heal worker STAGE --concurrency N`` therefore starts N *processes*, each one
StageWorker with its own consumer name and Redis connection; the consumer group spreads
entries across them and across machines alike. ``heal up`` runs one *thread* per stage in
one process: that is the simple all-in-one mode, and the stages' slow work (subprocess
verification, database round trips) releases the lock while it waits.

SIGTERM/SIGINT: every worker stops reading, finishes the event in hand, commits, and the
process exits 0; the parent of worker processes forwards the signal and waits for them.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from pipeline.errors import HealError, UsageError
from pipeline.runtime.heartbeat import Heartbeat
from pipeline.runtime.layout import warn_if_stranded
from pipeline.runtime.partitions import PartitionedWorker, flatten
from pipeline.runtime.worker import StageWorker

log = logging.getLogger("heal.runtime")

#: worker processes per core at most for ``--concurrency``: the processes exist for CPU work
#: (decoding, fingerprinting, encoding), which gains nothing past about one per core; four
#: per core leave room for stages that mostly wait (validate, apply). Each process imports
#: and builds its stage (tens to hundreds of MB: the lookup loads its embedding model), so a
#: typo of a few zeros started thousands of them and the kernel's OOM killer ended the
#: machine's other work (QA, --concurrency 10000)
CONCURRENCY_PER_CPU = 4
#: the floor and the ceiling of that cap, whatever the core count
MIN_CONCURRENCY_CAP, MAX_CONCURRENCY_CAP = 8, 64


def max_concurrency() -> int:
    """The largest ``--concurrency`` accepted on this machine: 4 per usable core, at least 8,
    at most 64. More workers belong on more machines (they join the same groups)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    return min(MAX_CONCURRENCY_CAP, max(MIN_CONCURRENCY_CAP, CONCURRENCY_PER_CPU * cpus))


def check_concurrency(count: int) -> None:
    """Raises UsageError (exit 2): ``count`` is below 1 or above :func:`max_concurrency`."""
    cap = max_concurrency()
    if count < 1:
        raise UsageError("--concurrency must be 1 or more")
    if count > cap:
        raise UsageError(
            f"--concurrency {count} is more than this machine takes: at most {cap} worker "
            f"processes ({CONCURRENCY_PER_CPU} per core, {MIN_CONCURRENCY_CAP} to "
            f"{MAX_CONCURRENCY_CAP}); each one loads the stage, and CPU work gains nothing "
            "past one per core. Run more workers on other machines: they join the same "
            "consumer group")


def install_stop_signals(on_stop: Callable[[], None]) -> None:
    """SIGTERM and SIGINT call ``on_stop`` (only possible from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("received %s: finishing in-flight events", signal.Signals(signum).name)
        on_stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _warn_other_layouts(workers: Sequence[StageWorker | PartitionedWorker]) -> None:
    """Work written under another HEAL_PARTITIONS is read by nobody: say so at start."""
    if workers:
        warn_if_stranded(workers[0].client, workers[0].settings)


def run_threads(workers: Sequence[StageWorker | PartitionedWorker]) -> int:
    """Run each worker in its own thread until a signal; returns the exit status.

    Raises:
        HealError: a worker could not start (e.g. StreamUnavailable); the others are stopped.
    """
    failures: list[BaseException] = []

    def stop_all() -> None:
        for worker in workers:
            worker.stop()

    def target(worker: StageWorker | PartitionedWorker) -> None:
        try:
            worker.run()
        except BaseException as exc:  # reported by the main thread below
            failures.append(exc)
            stop_all()

    install_stop_signals(stop_all)
    previous_hook = threading.excepthook
    threading.excepthook = _stop_on_thread_death(failures, stop_all)
    _warn_other_layouts(workers)
    heartbeat = Heartbeat(workers[0].client, workers[0].settings, flatten(workers)).start() \
        if workers else None
    threads = [
        threading.Thread(target=target, args=(w,), name=f"heal-{w.stage}", daemon=True)
        for w in workers
    ]
    try:
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(0.2)  # short joins keep the main thread responsive to signals
    finally:
        stop_all()  # already stopped, unless this thread itself was interrupted
        if heartbeat is not None:
            heartbeat.stop()
        # the stages' own end of work, once every worker stopped (or failed): e.g. the
        # lookup's outbox reaches PostgreSQL, the lifecycle's sweep timer stops, so nothing a
        # worker started outlives it (in-process callers, a slow interpreter exit)
        for worker in workers:
            worker.finish()
        threading.excepthook = previous_hook
    for exc in failures:
        if isinstance(exc, HealError):
            raise exc
        raise HealError(f"worker failed: {type(exc).__name__}: {exc}") from exc
    return 0


def _stop_on_thread_death(failures: list[BaseException], stop_all: Callable[[], None]
                          ) -> Callable[[threading.ExceptHookArgs], None]:
    """A ``threading.excepthook`` for a worker process: a background thread (the lifecycle
    sweep timer, the lookup's sync, the heartbeat) that dies of an uncaught exception is
    logged, with its traceback, and stops the workers, so the process exits 1 (a supervisor
    restarts it) instead of running on without that thread's work and saying nothing."""

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "a thread"
        log.error("background thread %s died: %s: %s; stopping this worker", name,
                  args.exc_type.__name__, args.exc_value,
                  exc_info=args.exc_value)
        failures.append(HealError(f"background thread {name} died: {args.exc_type.__name__}: "
                                  f"{args.exc_value}; the worker stopped (see its log)"))
        stop_all()

    return hook


#: a worker process that crashes is restarted, but not more often than this
RESTART_DELAY_S = 2.0


def run_processes(target: Callable[..., object], args_for: Callable[[int], tuple[Any, ...]],
                  count: int) -> int:
    """Keep ``count`` processes running ``target(*args_for(i))`` until SIGTERM/SIGINT, which
    is forwarded to them. A crashed process (killed, or exit 1) is restarted; a usage or
    configuration error (exit 2) stops them all. Returns 0 after a clean stop, else the
    worst exit status.

    Raises:
        UsageError: ``count`` out of range (:func:`check_concurrency`), before any start.
    """
    check_concurrency(count)
    ctx = multiprocessing.get_context("spawn")  # no inherited threads, locks or sockets
    stopping = threading.Event()

    def spawn(i: int) -> Any:
        proc = ctx.Process(target=target, args=args_for(i), name=f"heal-worker-{i}")
        proc.start()
        return proc

    procs: list[Any] = []

    def forward() -> None:
        stopping.set()
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                proc.terminate()  # SIGTERM: the child stops gracefully

    install_stop_signals(forward)
    procs.extend(spawn(i) for i in range(count))
    worst = 0
    while any(proc.is_alive() for proc in procs) or not stopping.is_set():
        for i, proc in enumerate(procs):
            proc.join(0.2 / count)
            if proc.is_alive() or stopping.is_set():
                continue
            code = proc.exitcode
            if code == 2:  # bad usage or configuration: restarting cannot help
                worst = 2
                forward()
            else:
                log.error("worker process %d exited with %s; restarting", i, code)
                stopping.wait(RESTART_DELAY_S)
                if not stopping.is_set():
                    procs[i] = spawn(i)
    # killed by our own SIGTERM before installing its handler: it had read nothing yet
    codes = [0 if proc.exitcode == -signal.SIGTERM else proc.exitcode for proc in procs]
    if worst or any(code != 0 for code in codes):
        log.error("worker processes exited with %s", codes)
        return worst or 1
    return 0


def stop_when_orphaned(parent_pid: int, interval_s: float = 1.0) -> None:
    """In a worker process: when the supervising parent dies (even by SIGKILL), stop
    gracefully (SIGTERM to ourselves) instead of running on unsupervised."""
    import os

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval_s)
        log.warning("supervisor %d is gone; stopping", parent_pid)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="heal-orphan-watch", daemon=True).start()
