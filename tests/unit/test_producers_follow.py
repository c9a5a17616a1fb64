"""File following: appends, rotation, truncation, restart resume (no Redis needed)."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.events import ErrorEvent
from producers.follow import FileFollower, FileState, OffsetStore
from producers.watch import Watcher, sink_for

TB = (
    "Traceback (most recent call last):\n"
    '  File "w.py", line 1, in <module>\n'
    "ValueError: {n}\n"
)


def follower(path: Path, home: Path, from_start: bool = True) -> FileFollower:
    return FileFollower(str(path), OffsetStore(home), sink_for(str(path), False), from_start,
                        idle_flush_s=0.0)


def texts(events: list[ErrorEvent]) -> list[str]:
    return [e.text for e in events]


def poll_all(f: FileFollower) -> list[ErrorEvent]:
    events = f.poll()
    events += f.poll()  # the idle flush (0 s) closes the last record
    f.checkpoint()
    return events


def test_appended_error_records_are_published_and_info_lines_are_not(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("INFO up\n")
    f = follower(log, tmp_path / "home")
    assert poll_all(f) == []
    with log.open("a") as fh:
        fh.write("ERROR db down\nINFO fine\n" + TB.format(n=1))
    got = poll_all(f)
    assert texts(got) == ["ERROR db down", TB.format(n=1).rstrip("\n")]
    assert got[0].source.kind == "log" and got[0].tags["line"] == 2


def test_new_file_is_followed_from_its_end_unless_from_start(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("ERROR old\n")
    assert poll_all(follower(log, tmp_path / "h1", from_start=False)) == []
    assert texts(poll_all(follower(log, tmp_path / "h2", from_start=True))) == ["ERROR old"]


def test_rotation_finishes_the_old_file_then_reads_the_new_one(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("start\n")
    f = follower(log, tmp_path / "home")
    poll_all(f)
    with log.open("a") as fh:
        fh.write("ERROR before rotation\n")
    os.rename(log, tmp_path / "app.log.1")  # logrotate's default: rename, then create
    log.write_text("fresh\nERROR after rotation\n")
    got = texts(poll_all(f))
    assert got == ["ERROR before rotation", "ERROR after rotation"]


def test_truncation_restarts_at_offset_zero(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("start line that is long enough\nERROR one\n")
    f = follower(log, tmp_path / "home")
    assert texts(poll_all(f)) == ["ERROR one"]
    log.write_text("ERROR two\n")  # copytruncate: same inode, smaller
    assert texts(poll_all(f)) == ["ERROR two"]


def test_restart_resumes_from_the_saved_offset(tmp_path: Path) -> None:
    log, home = tmp_path / "app.log", tmp_path / "home"
    log.write_text("ERROR first\n")
    assert texts(poll_all(follower(log, home))) == ["ERROR first"]
    with log.open("a") as fh:
        fh.write("ERROR while down\n")
    # a new process: nothing repeated, nothing lost
    assert texts(poll_all(follower(log, home, from_start=False))) == ["ERROR while down"]


def test_incomplete_record_at_stop_is_read_whole_after_restart(tmp_path: Path) -> None:
    log, home = tmp_path / "app.log", tmp_path / "home"
    lines = TB.format(n=7).splitlines(keepends=True)
    log.write_text("INFO a\n" + lines[0] + lines[1])
    f = FileFollower(str(log), OffsetStore(home), sink_for(str(log), False), True,
                     idle_flush_s=3600)
    assert f.poll() == []  # the traceback is still being written
    f.checkpoint()  # stop without flushing
    with log.open("a") as fh:
        fh.write(lines[2])
    got = poll_all(follower(log, home))
    assert texts(got) == [TB.format(n=7).rstrip("\n")]
    assert got[0].tags["line"] == 2


def test_rotation_while_down_finishes_the_rotated_file(tmp_path: Path) -> None:
    log, home = tmp_path / "app.log", tmp_path / "home"
    log.write_text("head\n")
    poll_all(follower(log, home))
    with log.open("a") as fh:
        fh.write("ERROR missed before rotation\n")
    os.rename(log, tmp_path / "app.log.1")
    log.write_text("new head\nERROR in the new file\n")
    got = texts(poll_all(follower(log, home, from_start=False)))
    assert got == ["ERROR missed before rotation", "ERROR in the new file"]


def test_event_ids_are_deterministic_across_followers(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("head\nERROR x\n")
    a = poll_all(follower(log, tmp_path / "h1"))
    b = poll_all(follower(log, tmp_path / "h2"))
    assert [e.id for e in a] == [e.id for e in b]


def test_watcher_publishes_before_checkpointing(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("head\nERROR x\n")
    published: list[ErrorEvent] = []
    watcher = Watcher([str(log)], tmp_path / "home", published.extend, from_start=True)
    assert watcher.drain() == 1 and texts(published) == ["ERROR x"]


def test_transcripts_are_followed_with_call_result_pairing_across_polls(tmp_path: Path) -> None:
    import orjson

    path = tmp_path / "session.jsonl"
    path.write_text(orjson.dumps({"type": "tool_use", "id": "c1", "name": "Bash",
                                  "input": {"command": "make test"}}).decode() + "\n")
    f = FileFollower(str(path), OffsetStore(tmp_path / "home"), sink_for(str(path), True),
                     True, idle_flush_s=0.0)
    assert poll_all(f) == []
    with path.open("a") as fh:
        fh.write(orjson.dumps({"type": "tool_result", "tool_use_id": "c1", "is_error": True,
                               "content": "Exit code 2\nmake: *** [test] Error 2"}).decode()
                 + "\n")
    (event,) = poll_all(f)
    assert event.command == ("make", "test") and event.exit_code == 2


def test_a_first_line_written_in_pieces_is_not_mistaken_for_a_rewrite(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("ERR")
    f = follower(log, tmp_path / "home")
    assert poll_all(f) == []
    with log.open("a") as fh:
        fh.write("OR first\nERROR second\n")
    got = poll_all(f)
    assert texts(got) == ["ERROR first", "ERROR second"]
    # a restart without --from-start resumes at the saved offset (--from-start re-reads)
    assert poll_all(f) == [] and poll_all(follower(log, tmp_path / "home", False)) == []
    assert got[0].id == poll_all(follower(log, tmp_path / "other"))[0].id


def test_a_fifo_at_the_path_is_waited_out_never_read(tmp_path: Path) -> None:
    """A FIFO nobody writes blocked open() forever; the follower waits for a regular file."""
    path = tmp_path / "app.log"
    os.mkfifo(path)
    f = follower(path, tmp_path / "home")
    assert f.poll() == [] and f.poll() == []
    path.unlink()
    path.write_text("ERROR now a file\n")
    assert texts(poll_all(f)) == ["ERROR now a file"]


def test_once_reads_a_file_larger_than_one_poll_to_its_end(tmp_path: Path) -> None:
    from producers import follow

    path = tmp_path / "app.log"
    path.write_text("".join(f"ERROR number {i}\n" for i in range(3000)))
    published: list[ErrorEvent] = []
    watcher = Watcher([str(path)], tmp_path / "home", published.extend, from_start=True)
    limit, follow.MAX_READ_PER_POLL = follow.MAX_READ_PER_POLL, 4096
    try:
        assert watcher.drain() == 3000
    finally:
        follow.MAX_READ_PER_POLL = limit
    assert texts(published)[-1] == "ERROR number 2999"


def test_offsets_are_private_files(tmp_path: Path) -> None:
    import stat

    old = os.umask(0o022)
    try:
        OffsetStore(tmp_path / "home").save("/x.log", FileState(1, 2, 3, 4, "h"))
    finally:
        os.umask(old)
    folder = tmp_path / "home" / "watch"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    (saved,) = folder.glob("*.json")
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600


def test_a_state_saved_without_the_bytes_before_the_offset_still_resumes(tmp_path: Path) -> None:
    # Given an offset saved by an earlier version (device, inode, offset, line, first line)
    log, home = tmp_path / "app.log", tmp_path / "home"
    log.write_text("ERROR first\n")
    st = log.stat()
    OffsetStore(home).save(str(log), FileState(st.st_dev, st.st_ino, 12, 1, ""))
    with log.open("a") as fh:
        fh.write("ERROR while down\n")
    # When a new process follows it, Then it resumes there, as before
    assert texts(poll_all(follower(log, home, from_start=False))) == ["ERROR while down"]
