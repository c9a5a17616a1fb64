"""``heal watch`` and the files it cannot finish or read, through the real CLI (a process
of its own, as an operator runs it) on the session's real Redis: a file rotated and
compressed while heal was down is finished from the ``.gz`` sibling, an old file that is
gone is reported with the bytes not read, and ``--once`` on a path it cannot read or that
does not exist exits non-zero with one message naming the file and what to change."""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import redis

from pipeline.events import ErrorEvent
from tests._nobody import as_nobody

ROOT = Path(__file__).resolve().parents[2]
CLI = "import sys; from pipeline.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture
def env(tmp_path: Path, redis_url: str, prefix: str) -> dict[str, str]:
    return {**os.environ, "HEAL_HOME": str(tmp_path / "home"), "HEAL_REDIS_URL": redis_url,
            "HEAL_STREAM_PREFIX": prefix}


def heal(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI of this checkout (``cwd`` is the repository: ``-c`` imports from it)."""
    return subprocess.run([sys.executable, "-c", CLI, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def published(client: redis.Redis, env: dict[str, str]) -> list[str]:
    stream = f"{env['HEAL_STREAM_PREFIX']}:errors"
    return [ErrorEvent.decode(f[b"event"]).text for _, f in client.xrange(stream)]


def test_a_log_rotated_and_compressed_while_down_is_finished_from_its_gz_sibling(
    env: dict[str, str], client: redis.Redis, tmp_path: Path
) -> None:
    # Given a watched log that got one more error, then was rotated by logrotate with
    # `compress` (renamed, gzipped: a new inode) and recreated while heal was not running
    log = tmp_path / "app.log"
    log.write_text("ERROR a1\n")
    assert heal(env, "watch", "--once", "--from-start", str(log)).returncode == 0
    with log.open("a") as fh:
        fh.write("ERROR b2-while-down\n")
    rotated = tmp_path / "app.log.1.gz"
    rotated.write_bytes(gzip.compress(log.read_bytes()))
    log.unlink()
    log.write_text("ERROR c1-new\n")
    # When heal watch starts again
    done = heal(env, "watch", "--once", str(log))
    # Then the rest of the old file is read from the .gz before the new file, and nothing
    # is reported missing
    assert done.returncode == 0, done.stderr
    assert published(client, env) == ["ERROR a1", "ERROR b2-while-down", "ERROR c1-new"]
    assert "not read" not in done.stderr


def test_an_old_file_gone_while_down_is_reported_with_the_bytes_not_read(
    env: dict[str, str], client: redis.Redis, tmp_path: Path
) -> None:
    # Given a watched log rotated while heal was down, its rotated copy then removed
    log = tmp_path / "app.log"
    log.write_text("ERROR a1\n")
    assert heal(env, "watch", "--once", "--from-start", str(log)).returncode == 0
    with log.open("a") as fh:
        fh.write("ERROR b2-while-down\n")
    log.unlink()
    log.write_text("ERROR c1-new\n")
    # When heal watch starts again
    done = heal(env, "watch", "--once", str(log))
    # Then it says which file and from which byte was not read, and goes on with the new one
    assert done.returncode == 0, done.stderr
    assert f"{log} was rotated or replaced" in done.stderr
    assert "after byte 9 (line 1) was not read" in done.stderr
    assert published(client, env) == ["ERROR a1", "ERROR c1-new"]


def test_a_truncated_gz_sibling_is_read_as_far_as_it_goes_and_the_rest_reported(
    env: dict[str, str], client: redis.Redis, tmp_path: Path
) -> None:
    # Given a log rotated and compressed while heal was down, the .gz cut short
    log = tmp_path / "app.log"
    log.write_text("ERROR a1\n")
    assert heal(env, "watch", "--once", "--from-start", str(log)).returncode == 0
    with log.open("a") as fh:
        fh.write("".join(f"ERROR b{i}-while-down {os.urandom(8).hex()}\n" for i in range(4000)))
    whole = gzip.compress(log.read_bytes())
    (tmp_path / "app.log.1.gz").write_bytes(whole[: len(whole) // 2])
    log.unlink()
    log.write_text("ERROR c1-new\n")
    # When heal watch starts again
    done = heal(env, "watch", "--once", str(log))
    # Then what the .gz holds is published, the rest is named as not read, and the new file
    # is read
    assert done.returncode == 0, done.stderr
    assert "app.log.1.gz (the rotated app.log) could not be read to its end" in done.stderr
    assert "were read, what follows byte" in done.stderr
    texts = published(client, env)
    assert texts[0] == "ERROR a1" and texts[1].startswith("ERROR b0-while-down")
    assert texts[-1] == "ERROR c1-new" and 2 < len(texts) < 4002


@pytest.mark.parametrize("new_line", ["ERROR new and a longer line here to exceed", "ERROR n"])
def test_a_new_file_with_the_old_inode_and_banner_is_not_taken_for_the_old_one(
    env: dict[str, str], client: redis.Redis, tmp_path: Path, new_line: str
) -> None:
    # Given a watched log that starts with a fixed banner, rotated and gzipped while heal was
    # down, and a new log at the path with the same banner and the old inode (gzip deleted
    # the rotated file, and the new one got its inode back: here rewritten in place, so the
    # inode is the same for certain), longer or shorter than what was read of the old one
    log = tmp_path / "app.log"
    log.write_text("=== start ===\nERROR cur1\n")
    assert heal(env, "watch", "--once", "--from-start", str(log)).returncode == 0
    with log.open("a") as fh:
        fh.write("ERROR cur2-while-down\n")
    (tmp_path / "app.log.1.gz").write_bytes(gzip.compress(log.read_bytes()))
    inode = log.stat().st_ino
    with log.open("r+") as fh:
        fh.truncate(0)
        fh.write(f"=== start ===\n{new_line}\n")
    assert log.stat().st_ino == inode
    # When heal watch starts again
    done = heal(env, "watch", "--once", str(log))
    # Then the old file's tail is read from the .gz, the new file from its start (not from
    # the old offset, mid-line), and nothing is reported missing
    assert done.returncode == 0, done.stderr
    assert published(client, env) == ["ERROR cur1", "ERROR cur2-while-down", new_line]
    assert "not read" not in done.stderr


def test_a_replaced_file_with_the_same_banner_and_no_sibling_is_reported(
    env: dict[str, str], client: redis.Redis, tmp_path: Path
) -> None:
    # Given a watched log with a banner replaced in place while heal was down (same inode,
    # same first line), its old content kept nowhere
    log = tmp_path / "app.log"
    log.write_text("=== start ===\nERROR cur1\n")
    assert heal(env, "watch", "--once", "--from-start", str(log)).returncode == 0
    with log.open("r+") as fh:
        fh.truncate(0)
        fh.write("=== start ===\nERROR new and a longer line here to exceed\n")
    # When heal watch starts again
    done = heal(env, "watch", "--once", str(log))
    # Then the loss is named (which file, from which byte) and the new file is read whole
    assert done.returncode == 0, done.stderr
    assert f"{log} was rotated or replaced" in done.stderr
    assert "after byte 25 (line 2) was not read" in done.stderr
    assert published(client, env) == ["ERROR cur1", "ERROR new and a longer line here to exceed"]




def test_watch_once_on_a_file_it_cannot_read_or_that_is_missing_exits_2_naming_it(
    env: dict[str, str], client: redis.Redis, tmp_path: Path
) -> None:
    # Given a folder anyone may enter, with a log nobody may read beside a readable one
    folder = Path(tempfile.mkdtemp(prefix="heal-perm-"))
    try:
        folder.chmod(0o777)
        locked, fine = folder / "locked.log", folder / "ok.log"
        locked.write_text("ERROR secret\n")
        locked.chmod(0o000)
        fine.write_text("ERROR ok\n")
        fine.chmod(0o666)
        home = folder / "home"
        # When heal watch --once is given both, as a user who cannot read the first
        done = subprocess.run(
            [*as_nobody(), sys.executable, "-c", CLI, "watch", "--once", "--from-start",
             str(locked), str(fine)],
            cwd=ROOT, env={**env, "HEAL_HOME": str(home), "HOME": str(folder)},
            capture_output=True, text=True, timeout=120, check=False)
    finally:
        shutil.rmtree(folder)
    # Then it exits 2 with one message naming the file, the reason and what to change
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"heal: error: {locked} cannot be read: Permission denied; give the user heal runs "
        "as read access to it (its permissions), or run heal as a user who can read it"]
    # and a path that does not exist is an error too (--once waits for nothing)
    missing = tmp_path / "nonexist.log"
    done = heal(env, "watch", "--once", str(missing))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"heal: error: {missing} does not exist; give log files that exist (without --once, "
        "heal watch waits for a file to appear)"]
    assert published(client, env) == []


def test_a_followed_path_that_becomes_a_fifo_is_reported_once_with_one_prefix(
    env: dict[str, str], tmp_path: Path
) -> None:
    # Given heal watch following a log
    log = tmp_path / "app.log"
    log.write_text("boot\n")
    proc = subprocess.Popen([sys.executable, "-c", CLI, "watch", "--interval", "0.05", str(log)],
                            cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list((tmp_path / "home" / "watch").glob("*.json")):
            assert proc.poll() is None and time.monotonic() < deadline, "watch did not start"
            time.sleep(0.05)
        # When the path is replaced by a FIFO (which would block a read) for a while
        log.unlink()
        os.mkfifo(log)
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    # Then it says so once, with heal's one prefix, and waits for a regular file
    assert proc.returncode == 0, err
    said = [line for line in err.splitlines() if "FIFO" in line]
    assert said == [f"heal: {log} is a FIFO, not a regular file; waiting for a regular file "
                    "there"]


def test_watch_once_says_it_started_at_the_end_and_from_start_then_reads_the_file(
    env: dict[str, str], client: redis.Redis, tmp_path: Path
) -> None:
    """A first `heal watch --once FILE` follows the new file from its end, as tail -f, and says
    so with the bytes it did not read and what reads them; `--from-start` afterwards reads the
    file from its start although an offset was saved (before: both published 0 events without
    a word). Re-published records keep their ids (the runtime's dedupe)."""
    log = tmp_path / "cron.log"
    log.write_text("2026-12-02 03:00:02 ERROR nightly export failed\n"
                   "Traceback (most recent call last):\n"
                   '  File "/srv/export.py", line 4, in <module>\n'
                   "    import lxml\n"
                   "ModuleNotFoundError: No module named 'lxml'\n")
    size = log.stat().st_size
    first = heal(env, "watch", "--once", str(log))
    assert first.returncode == 0, first.stderr
    assert (f"{log}: started at its end, as tail -f does: the {size} byte(s) already there "
            "were not read") in first.stderr and "--from-start reads them" in first.stderr
    assert published(client, env) == []
    again = heal(env, "watch", "--once", "--from-start", str(log))
    assert again.returncode == 0, again.stderr
    assert f"not from the saved offset (byte {size})" in again.stderr, again.stderr
    assert "heal watch: published 1 event(s)" in again.stderr
    (text,) = published(client, env)
    assert "No module named 'lxml'" in text
    # a third read from the start publishes the same id: the pipeline handles it once
    heal(env, "watch", "--once", "--from-start", str(log))
    stream = f"{env['HEAL_STREAM_PREFIX']}:errors"
    ids = {ErrorEvent.decode(f[b"event"]).id for _, f in client.xrange(stream)}
    assert len(ids) == 1
    # and a plain watch afterwards resumes at the saved offset, saying nothing of a start
    last = heal(env, "watch", "--once", str(log))
    assert "started at its end" not in last.stderr and "published 0 event(s)" in last.stderr
