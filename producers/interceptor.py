"""Run a subprocess with its output passed through live, keeping a bounded tail of it.

The output is read until the command's pipes reach end of file, but a background process the
command started (``server &``) inherits them and may hold them open for as long as it lives.
So once the command itself has exited, its output is forwarded for at most
:data:`OUTPUT_GRACE_S` more seconds; then what is already waiting in the pipes is passed on
(bounded by :data:`FINAL_DRAIN_BYTES`: everything the command wrote before it exited is still
there, a pipe holds less) and heal closes its end of them. The background process is never
killed by heal, but its later writes to that stdout/stderr get SIGPIPE (which ends it unless
it ignores the signal) or EPIPE: a process meant to outlive the step should write elsewhere
(``server >server.log 2>&1 &``).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

from pipeline import stopsignals
from pipeline.ansi import ANSI
from pipeline.console import shell_quote
from pipeline.errors import UsageError
from pipeline.redact import CUT_MARGIN, redacted_tail

#: bytes of combined stdout+stderr kept for the event (the tail usually holds the error)
TAIL_BYTES = 32 * 1024
_FORWARDED = (signal.SIGTERM, signal.SIGHUP)
#: seconds the output is still forwarded after the command exited, while a background child
#: keeps its pipes open (see the module's note)
OUTPUT_GRACE_S = 0.5
#: bytes read per pipe, after the grace period, of what is already waiting in it; more than
#: a pipe holds (64 KiB by default on Linux, 1 MiB at most for an unprivileged resize)
FINAL_DRAIN_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class RunResult:
    """``status`` follows the shell: the exit code, or 128+N when killed by signal N."""

    status: int
    signal: str
    tail: str
    duration_s: float
    stdout_bytes: int
    stderr_bytes: int
    truncated: bool
    #: Ctrl-C (SIGINT), or a SIGTERM/SIGHUP heal forwarded, reached heal while the command
    #: ran: a person (or a runner cancelling the job) stopped it
    interrupted: bool = False
    #: the signal that stopped it ("SIGINT", "SIGTERM", "SIGHUP"), "" when none did
    stopped_by: str = ""
    #: False when a stop signal came before the command was started: it was not run
    started: bool = True

    def stop_said(self) -> str:
        """How the stop reads in heal's messages: "Ctrl-C" for SIGINT, else the signal."""
        return "Ctrl-C" if self.stopped_by in ("", "SIGINT") else self.stopped_by


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP reached heal outside the command's run (see :func:`stop_signals`):
    a stop, handled where Ctrl-C's KeyboardInterrupt is."""

    def __init__(self, signame: str) -> None:
        super().__init__(signame)
        self.signame = signame


def stop_signals() -> contextlib.AbstractContextManager[None]:
    """While active (main thread only), SIGTERM and SIGHUP raise :class:`Stopped` in the main
    thread as Ctrl-C raises KeyboardInterrupt, once: a later one is ignored while heal writes
    what it knows and exits (the caller stops on the first). :func:`run_command` forwards
    them to the command instead while it runs."""
    return _StopSignals()


class _StopSignals(contextlib.AbstractContextManager[None]):
    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}
        self._raised = False

    def _raise(self, signum: int, _frame: Any) -> None:
        if self._raised:
            return
        self._raised = True
        raise Stopped(signal.Signals(signum).name)

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in _FORWARDED:
                self._previous[sig] = signal.signal(sig, self._raise)

    def __exit__(self, *_exc: object) -> None:
        _restore(self._previous)


class TailBuffer:
    """The last ``limit`` bytes written by several threads, in arrival order, secrets
    redacted.

    It keeps ``CUT_MARGIN`` bytes more than it returns: the text is redacted with them and
    only then cut to ``limit`` (``pipeline.redact.redacted_tail``), so a secret the cut
    splits (``password=CutSecret`` kept as ``ord=CutSecret``) is never kept in part; the
    margin's own first line, which may be such a rest, is dropped.

    Each writer names its ``stream`` (stdout 1, stderr 2): a chunk of one stream that follows
    another stream's unfinished line starts a line of its own (a ``\n`` is put between them
    in the tail only), so ``abc`` printed without a newline and then ``Error: boom`` on
    stderr are two lines of the event text, never ``abcError: boom``. The text's control
    characters other than line breaks, tabs and terminal escape sequences (a NUL, a stray BEL,
    a backspace) become spaces (:func:`plain_controls`).
    """

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self.limit = limit
        self._keep = limit + CUT_MARGIN
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._total = 0
        self._dropped = False
        self._lock = threading.Lock()
        #: the stream of the last chunk, and whether that chunk left its line unfinished
        self._stream = 0
        self._open = False

    @property
    def truncated(self) -> bool:
        """Whether more than ``limit`` bytes were written (the text is a tail)."""
        return self._total > self.limit

    def append(self, chunk: bytes, stream: int = 0) -> None:
        if not chunk:
            return
        with self._lock:
            if self._open and stream != self._stream:
                self._chunks.append(b"\n")  # the tail's line break, not the command's byte
                self._size += 1
            self._stream = stream
            self._open = chunk[-1:] not in (b"\n", b"\r")
            self._chunks.append(chunk)
            self._size += len(chunk)
            self._total += len(chunk)
            while self._size > self._keep:
                first = self._chunks.popleft()
                excess = self._size - self._keep
                self._dropped = True
                if len(first) > excess:
                    self._chunks.appendleft(first[excess:])
                    self._size -= excess
                else:
                    self._size -= len(first)

    def text(self) -> str:
        with self._lock:
            kept = b"".join(self._chunks).decode("utf-8", "replace")
            dropped = self._dropped
        return plain_controls(redacted_tail(kept, self.limit, started_inside=dropped))


#: control characters that are neither a line break (``str.splitlines``' \n \r \v \f
#: \x1c-\x1e, U+0085), a tab nor the ESC of a terminal escape sequence
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1a\x1f\x7f\x80-\x84\x86-\x9f]")
#: the same, with ESC too: what is left of one outside a terminal escape sequence
_CONTROLS_ESC = re.compile(r"[\x00-\x08\x0e-\x1b\x1f\x7f\x80-\x84\x86-\x9f]")


def plain_controls(text: str) -> str:
    """``text`` with each control character that is not a line break or a tab, and not part
    of a terminal escape sequence (:data:`pipeline.ansi.ANSI`: its ESC and an OSC's closing
    BEL stay, so every reader still strips it), replaced by a space: a command's NUL byte
    (``abc\\0def``) reaches the event as ``abc def``, the same in every table and label
    (PostgreSQL cannot store a NUL). Unchanged, fast, when there is none."""
    if "\x1b" not in text:
        return _CONTROLS.sub(" ", text) if _CONTROLS.search(text) else text
    out: list[str] = []
    at = 0
    for match in ANSI.finditer(text):
        out.append(_CONTROLS_ESC.sub(" ", text[at:match.start()]))
        out.append(match.group(0))
        at = match.end()
    out.append(_CONTROLS_ESC.sub(" ", text[at:]))
    return "".join(out)


def _pump(source: IO[bytes], sink: IO[bytes] | None, tail: TailBuffer, count: list[int],
          wake: int | None = None, stream: int = 0) -> None:
    """Copy ``source`` to ``sink`` (and the tail) until end of file, or, once ``wake`` is
    readable (the grace period is over), until nothing more is waiting in it (at most
    FINAL_DRAIN_BYTES more); then close it."""
    fd = source.fileno()
    poller = None
    if wake is not None:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(wake, select.POLLIN)
    stopping = False
    drained = 0
    try:
        while True:
            if poller is not None:
                if not stopping:
                    ready = {f for f, _ in poller.poll()}
                    if wake in ready:
                        stopping = True
                        poller.unregister(wake)
                    if fd not in ready:
                        continue
                elif drained >= FINAL_DRAIN_BYTES or not poller.poll(0):
                    break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            if stopping:
                drained += len(chunk)
            count[0] += len(chunk)
            tail.append(chunk, stream)
            if sink is not None:
                try:
                    sink.write(chunk)
                    sink.flush()
                except (OSError, ValueError):
                    sink = None  # our own output went away (closed pipe); keep capturing
    finally:
        source.close()


def run_command(
    argv: Sequence[str],
    cwd: str | None = None,
    stdout: IO[bytes] | None = None,
    stderr: IO[bytes] | None = None,
    tail_bytes: int = TAIL_BYTES,
    grace_s: float = OUTPUT_GRACE_S,
) -> RunResult:
    """Run ``argv``; its stdout/stderr go to ``stdout``/``stderr`` as they arrive, until the
    pipes close or ``grace_s`` after the command exited (see the module's note).

    SIGTERM/SIGHUP received meanwhile are forwarded to the child (when called from the main
    thread), so the child decides how to stop and its status is kept. SIGINT is not forwarded:
    Ctrl-C already reaches the child (same process group), and a second one would make tools
    such as pytest abort without their report. Each is noted: the result is ``interrupted``
    (a stop, not an error), ``stopped_by`` naming the first signal.

    Raises:
        UsageError: the command does not exist or cannot be executed.
    """
    if not argv:
        raise UsageError("no command given: use `heal run -- CMD [ARGS...]`")
    if not argv[0]:  # (exec of '' looks for the PATH's folders: "Permission denied")
        raise UsageError(f"command is empty: {argv[0]!r}; name the program to run "
                         "(heal run -- CMD [ARGS...])")
    early = stopsignals.take()  # a stop noted before (see pipeline.stopsignals)
    if early:  # asked to stop before it started: not started at all
        return RunResult(128 + signal.Signals[early].value, "", "", 0.0, 0, 0, False, True,
                         early, started=False)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except FileNotFoundError as exc:
        raise UsageError(f"command not found: {argv[0]!r} (check the name and PATH)") from exc
    except PermissionError as exc:
        raise UsageError(_not_executable(argv[0], cwd, exc)) from exc
    tail = TailBuffer(tail_bytes)
    counts = ([0], [0])
    wake_r, wake_w = os.pipe()  # written once the grace period is over: the pumps let go
    assert proc.stdout is not None and proc.stderr is not None
    pumps = [
        threading.Thread(target=_pump, args=(proc.stdout, stdout, tail, counts[0], wake_r, 1),
                         daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, stderr, tail, counts[1], wake_r, 2),
                         daemon=True),
    ]
    for pump in pumps:
        pump.start()
    interrupted: list[str] = []
    previous = _forward_signals(proc, interrupted)
    late = stopsignals.take()  # noted between the check above and the forwarding
    if late and previous:
        interrupted.append(late)
        proc.send_signal(signal.Signals[late])
    try:
        code = proc.wait()
        # end of file on both pipes, unless a background child of the command holds them
        deadline = time.monotonic() + grace_s
        for pump in pumps:
            pump.join(max(0.0, deadline - time.monotonic()))
        os.write(wake_w, b"x")  # pass on what is waiting, then let go of the pipes
        for pump in pumps:
            pump.join()
    finally:
        _restore(previous)
        os.close(wake_w)
        os.close(wake_r)
    sig = ""
    if code < 0:
        sig = signal.Signals(-code).name
        code = 128 - code
    return RunResult(
        code, sig, tail.text(), time.monotonic() - started, counts[0][0], counts[1][0],
        tail.truncated, bool(interrupted), interrupted[0] if interrupted else "",
    )


def _not_executable(program: str, cwd: str | None, exc: PermissionError) -> str:
    """Why ``program`` could not be started although it exists, and what to change: a
    directory is not a program ("Permission denied" would send the user to chmod); a file
    without the execute bit can be made executable or run through its interpreter."""
    if "/" in program:
        candidates = [os.path.join(cwd or ".", program)]
    else:  # looked up in PATH, as the exec call did
        candidates = [os.path.join(d or ".", program)
                      for d in os.environ.get("PATH", os.defpath).split(os.pathsep)]
    found = [c for c in candidates if os.path.lexists(c)]
    if found and all(os.path.isdir(c) for c in found):
        return (f"command is a directory, not a program: {program!r}; name the program to "
                "run (a script or an executable file)")
    if found and os.path.isfile(found[0]) and not os.access(found[0], os.X_OK):
        # the hints are commands to copy: the name one shell word that names the real file
        # and is safe to print (bash's $'...' escapes for control characters, as the first
        # mention's repr escapes them), never its raw ESC or BEL
        word = shell_quote(program)
        example = f"heal run -- {_interpreter(found[0]) or 'INTERPRETER'} {word}"
        return (f"command not executable: {program!r} ({exc.strerror}): make it executable "
                f"(chmod +x {word}) or run it through its interpreter (e.g. {example})")
    return f"command not executable: {program!r} ({exc.strerror})"


#: the interpreter a script's extension suggests when it has no ``#!`` line
_BY_EXTENSION = {".py": "python3", ".sh": "sh", ".bash": "bash", ".pl": "perl",
                 ".rb": "ruby", ".js": "node"}
#: an interpreter's name as a hint may show it (shell-safe, printable, short)
_INTERPRETER = re.compile(r"[A-Za-z0-9._+-]{1,64}")
#: the most of a script's first line read for its ``#!`` (the kernel's own limit is 256)
_SHEBANG_BYTES = 256


def _interpreter(path: str) -> str:
    """The interpreter to suggest for the script ``path``: its ``#!`` line's program (its
    base name; ``/usr/bin/env python3`` gives ``python3``), else its extension's
    (``.py``: ``python3``, ``.sh``: ``sh``), else "" (no guess). Reads at most the first
    256 bytes; a name that is not a plain word is not shown."""
    try:
        with open(path, "rb") as script:
            head = script.read(_SHEBANG_BYTES)
    except OSError:
        head = b""
    if head.startswith(b"#!"):
        words = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()
        if words and os.path.basename(words[0]) == "env":
            words = [w for w in words[1:] if not w.startswith("-")]  # env -S python3 -u
        name = os.path.basename(words[0]) if words else ""
        if _INTERPRETER.fullmatch(name):
            return name
    return _BY_EXTENSION.get(os.path.splitext(path)[1].lower(), "")


def _forward_signals(proc: subprocess.Popen[bytes], interrupted: list[str]
                     ) -> dict[int, Any]:
    """SIGTERM/SIGHUP forwarded to ``proc``; SIGINT not (Ctrl-C reaches the command itself,
    through the terminal's process group); each noted in ``interrupted`` by name."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def forward(signum: int, _frame: Any) -> None:
        interrupted.append(signal.Signals(signum).name)
        if proc.poll() is None:
            proc.send_signal(signum)

    def note(signum: int, _frame: Any) -> None:
        interrupted.append(signal.Signals(signum).name)

    previous: dict[int, Any] = {}
    for sig in _FORWARDED:
        previous[sig] = signal.signal(sig, forward)
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, note)
    return previous


def _restore(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
