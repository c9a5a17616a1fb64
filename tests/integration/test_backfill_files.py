"""``heal backfill`` through the real CLI on the session's real Redis: the per-file marks
belong to a file's content (files that share a first line each publish every error, a
rotated or compressed copy is still recognised), a damaged ``.gz`` is published as far as it
can be read and does not stop the other files, ``--since`` takes only its documented forms,
and a replay copy's id never comes from the event's own tags."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson
import pytest
import redis

from pipeline.events import ErrorEvent
from producers.logs import head_identity
from tests._nobody import as_nobody

HEAL = str(Path(sys.executable).parent / "heal")
CLI = "import sys; from pipeline.cli import main; sys.exit(main(sys.argv[1:]))"
#: the checkout these tests belong to (the installed ``heal`` script may point elsewhere)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path: Path, redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
        ) -> dict[str, str]:
    values = {"HEAL_HOME": str(tmp_path / "home"), "HEAL_REDIS_URL": redis_url,
              "HEAL_STREAM_PREFIX": prefix}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return {**os.environ, **values, "PYTHONPATH": str(ROOT)}


def heal(env: dict[str, str], *args: str, stdin: bytes = b""
         ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([HEAL, *args], input=stdin, env=env, capture_output=True,
                          timeout=300, check=False)
    return subprocess.CompletedProcess(done.args, done.returncode,
                                       done.stdout.decode("utf-8", "replace"),
                                       done.stderr.decode("utf-8", "replace"))


def texts(client: redis.Redis, env: dict[str, str]) -> list[str]:
    stream = f"{env['HEAL_STREAM_PREFIX']}:errors"
    return [ErrorEvent.decode(f[b"event"]).text for _, f in client.xrange(stream)]


BANNER = "=== service start (build 853330f9) ===\n"


def test_files_that_share_a_first_line_each_publish_every_error(
    env: dict[str, str], client: redis.Redis, tmp_path: Path
) -> None:
    # Given two logs that start with the same service banner, the second one longer
    web1, web2 = tmp_path / "web1.log", tmp_path / "web2.log"
    web1.write_text(BANNER + "INFO up\nERROR web1 broke\n")
    web2.write_text(BANNER + "INFO up on port 8080\nINFO more output\n"
                    "ERROR web2 broke differently at a later offset\n")
    # When both are backfilled, one after the other
    assert heal(env, "backfill", str(web1)).returncode == 0
    done = heal(env, "backfill", str(web2))
    # Then web2 is read from its own start: its error whole, no fragment, nothing skipped
    assert done.returncode == 0, done.stderr
    assert "read by an earlier backfill" not in done.stderr
    assert texts(client, env) == ["ERROR web1 broke",
                                  "ERROR web2 broke differently at a later offset"]
    # and each file keeps its own mark: a second pass of either publishes nothing ...
    for path in (web1, web2):
        again = heal(env, "backfill", str(path))
        assert "published 0 event(s)" in again.stderr
        assert "read by an earlier backfill" in again.stderr
    # ... a renamed, compressed copy of web1 (rotation) is recognised by its content ...
    rotated = tmp_path / "web1.log.1.gz"
    rotated.write_bytes(gzip.compress(web1.read_bytes()))
    web1.unlink()
    assert "published 0 event(s)" in heal(env, "backfill", str(rotated)).stderr
    # ... and only what was appended since is published
    with web2.open("a") as fh:
        fh.write("FATAL web2 out of memory\n")
    assert heal(env, "backfill", str(web2)).returncode == 0
    assert texts(client, env)[2:] == ["FATAL web2 out of memory"]


def test_a_mark_saved_by_an_earlier_version_is_not_trusted(
    env: dict[str, str], client: redis.Redis, tmp_path: Path
) -> None:
    # Given a mark of the old shape (a bare offset keyed by the first line) from another file
    log = tmp_path / "web2.log"
    log.write_text("=== service start ===\nINFO up\nERROR web2 lost its db\n")
    marks = f"{env['HEAL_STREAM_PREFIX']}:backfill:marks"
    client.hset(marks, head_identity(log.read_bytes()), 30)
    # When the file is backfilled
    done = heal(env, "backfill", str(log))
    # Then it is read from its start (the runtime dedupes what was published before), the
    # user is told why, and the next pass uses the new mark
    assert done.returncode == 0, done.stderr
    assert texts(client, env) == ["ERROR web2 lost its db"]
    assert "mark saved by an earlier heal version" in done.stderr
    again = heal(env, "backfill", str(log))
    assert "published 0 event(s)" in again.stderr and "earlier heal version" not in again.stderr


def _truncated_gz(path: Path, lines: int) -> None:
    data = b"".join(b"2026-01-01 ERROR event %d\n" % i for i in range(lines))
    packed = gzip.compress(data)
    path.write_bytes(packed[: len(packed) // 2])


def test_a_damaged_gz_is_published_as_far_as_readable_and_the_other_files_still_are(
    env: dict[str, str], client: redis.Redis, tmp_path: Path
) -> None:
    # Given a plain log, a truncated .gz, a file that is no gzip at all and a good .gz
    plain, cut = tmp_path / "plain.log", tmp_path / "big_trunc.log.gz"
    fake, good = tmp_path / "fake.log.gz", tmp_path / "good.log.gz"
    plain.write_text("boot\nERROR plain one\n")
    _truncated_gz(cut, 200_000)
    fake.write_text("not gzip ERROR y\n")
    good.write_bytes(gzip.compress(b"boot\nERROR good one\n"))
    # When they are backfilled in one run
    done = heal(env, "backfill", str(plain), str(cut), str(fake), str(good))
    # Then the run fails (exit 1) naming each damaged file, what is wrong and where ...
    assert done.returncode == 1, done.stderr
    assert "internal error" not in done.stderr
    assert f"{cut}: truncated gzip" in done.stderr
    assert f"{fake}: not a gzip file" in done.stderr
    # ... the readable part of the truncated file is published, whole lines only ...
    published = texts(client, env)
    from_cut = [t for t in published if t.startswith("2026-01-01 ERROR event ")]
    assert len(from_cut) > 50_000
    assert from_cut == [f"2026-01-01 ERROR event {i}" for i in range(len(from_cut))]
    # ... and the files before and after it are published too
    assert published[0] == "ERROR plain one" and published[-1] == "ERROR good one"


def test_discover_goes_on_after_a_truncated_rotated_log(
    env: dict[str, str], client: redis.Redis, tmp_path: Path
) -> None:
    # Given a repository whose rotated log was cut off, and another log listed after it
    repo = tmp_path / "repo"
    (repo / "logs").mkdir(parents=True)
    (repo / "sub" / "deep").mkdir(parents=True)
    _truncated_gz(repo / "logs" / "rot.log.1.gz", 50_000)
    (repo / "sub" / "deep" / "x.log").write_text("start\nERROR deep failure\n")
    # When it is discovered and backfilled
    done = heal(env, "backfill", "--discover", str(repo))
    # Then the later file is backfilled and the damaged one named; exit 1
    assert done.returncode == 1, done.stderr
    assert "rot.log.1.gz: truncated gzip" in done.stderr
    assert "internal error" not in done.stderr
    assert "ERROR deep failure" in texts(client, env)


def test_discover_names_a_small_cut_or_corrupt_gz_instead_of_leaving_it_out(
    env: dict[str, str], client: redis.Redis, tmp_path: Path
) -> None:
    # Given a repository with a rotated log cut off inside its first 4 KiB, a .log.gz that
    # is no gzip, a compressed binary (left out as before) and a good log
    repo = tmp_path / "repo"
    (repo / "logs").mkdir(parents=True)
    packed = gzip.compress(b"ERROR x\n" + b"ERROR y more\n" * 3)
    (repo / "logs" / "rot.log.1.gz").write_bytes(packed[:20])
    assert b"ERROR x" in gzip.GzipFile(fileobj=io.BytesIO(packed[:20])).read1()
    (repo / "logs" / "fake.log.gz").write_text("not gzip ERROR y\n")
    (repo / "logs" / "blob.log.gz").write_bytes(gzip.compress(b"\0\1\2" * 100))
    (repo / "logs" / "app.log").write_text("ERROR good\n")
    # When it is discovered and backfilled
    done = heal(env, "backfill", "--discover", str(repo), "--glob", "logs/*.gz")
    # Then both damaged files are listed and named as damaged, what the cut one holds is
    # published, the binary one is left out, and the exit status is 1
    assert done.returncode == 1, done.stderr
    out = done.stdout + done.stderr
    assert "rot.log.1.gz: truncated gzip" in out
    assert "fake.log.gz:" in out and "blob.log.gz" not in out
    assert sorted(texts(client, env)) == ["ERROR good", "ERROR x"]


@pytest.mark.parametrize("since", ["20261202", "2026-12", "2027", "", "  ", "100000d",
                                   "18446744073709551616-0", "1-18446744073709551616",
                                   "9" * 400 + "d", "1800-01-01"])
def test_since_refuses_what_is_not_one_of_its_forms(
    env: dict[str, str], client: redis.Redis, since: str
) -> None:
    # Given a stream with history
    heal(env, "emit", stdin=b'{"v":1,"id":"s1","text":"boom"}\n')
    # When a replay is asked from a value that is no ISO date-time, age or stream id
    done = heal(env, "backfill", "--replay", "--dry-run", "--since", since)
    # Then it is a usage error naming the accepted forms; nothing is replayed
    assert done.returncode == 2, (since, done.stderr)
    assert "--since" in done.stderr and "2026-11-22T10:00:00Z" in done.stderr
    assert "would publish" not in done.stderr


def test_since_takes_dates_ages_and_stream_ids(env: dict[str, str], client: redis.Redis
                                                ) -> None:
    heal(env, "emit", stdin=b'{"v":1,"id":"s1","text":"boom"}\n')
    for since, count in [("2020-01-01", 1), ("2999-12-02", 0), ("1h", 1),
                         ("1700000000000-0", 1), ("32503680000000-0", 0)]:
        done = heal(env, "backfill", "--replay", "--dry-run", "--since", since)
        assert done.returncode == 0, (since, done.stderr)
        assert f"would publish {count} event(s)" in done.stderr, (since, done.stderr)


def test_a_replay_copy_id_is_never_chosen_by_the_events_tags(
    env: dict[str, str], client: redis.Redis
) -> None:
    # Given a real event, an event whose tags claim to be a replay of it, and two forged
    # copies of it (one before it in the stream, one after)
    lines = [b'{"v":1,"id":"a1~replay-T","text":"forged","tags":{"replay_of":"a1",'
             b'"replay":"T"}}',
             b'{"v":1,"id":"a1","text":"ValueError: x"}',
             b'{"v":1,"id":"evil1","text":"attacker text","tags":{"replay_of":"a1"}}',
             b'{"v":1,"id":"a1~replay-U","text":"forged again"}']
    assert heal(env, "emit", stdin=b"\n".join(lines) + b"\n").returncode == 0
    # When the stream is replayed
    done = heal(env, "backfill", "--replay", "--dry-run", "--json")
    # Then every entry gets its own copy id, derived from its own id; the copy seen first does
    # not keep the real event from being replayed, and a copy of an error the replay already
    # published is left out (each error is replayed once)
    copies = [orjson.loads(line) for line in done.stdout.splitlines()]
    ids = [c["id"] for c in copies]
    assert len(set(ids)) == 3, ids
    assert [i.split("~replay-")[0] for i in ids] == ["a1", "a1", "evil1"]
    assert ids[0].startswith("a1~replay-T~replay-") and ids[1].count("~replay-") == 1
    assert [c["tags"]["replay_of"] for c in copies] == ["a1", "a1", "evil1"]
    assert "1 copy of an earlier replay left out" in done.stderr, done.stderr




def test_discover_names_a_log_it_may_not_read_and_exits_2_as_for_a_path(
    env: dict[str, str]
) -> None:
    # Given a repository (anyone may enter it) with a log heal's user may not read beside
    # a readable one
    folder = Path(tempfile.mkdtemp(prefix="heal-perm-"))
    try:
        folder.chmod(0o777)
        (folder / "repo" / "logs").mkdir(parents=True)
        for part in (folder / "repo", folder / "repo" / "logs"):
            part.chmod(0o777)
        locked, fine = folder / "repo" / "logs" / "locked.log", folder / "repo" / "app.log"
        locked.write_text("ERROR secret\n")
        locked.chmod(0o000)
        fine.write_text("ERROR good\n")
        fine.chmod(0o666)
        nobody = {**env, "HEAL_HOME": str(folder / "home"), "HOME": str(folder)}
        nobody.pop("HEAL_CONFIG", None)

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*as_nobody(), sys.executable, "-c", CLI, *args],
                                  cwd=ROOT, env=nobody, capture_output=True, text=True,
                                  timeout=120, check=False)

        # When it is discovered (listed only), as text and as JSON
        listed = run("backfill", "--discover", str(folder / "repo"), "--dry-run")
        as_json = run("backfill", "--discover", str(folder / "repo"), "--dry-run", "--json")
        # and when the same files are given by hand
        by_hand = run("backfill", "--dry-run", str(fine), str(locked))
    finally:
        shutil.rmtree(folder)
    # Then the readable log is listed, the other named with the reason and what to do, exit 2
    advice = (f"{locked} cannot be read: Permission denied; give the user heal runs as read "
              "access to it (its permissions), run heal as a user who can read it, or exclude "
              "it (heal.toml [backfill] exclude)")
    assert listed.returncode == 2, listed.stderr
    assert "app.log" in listed.stdout and "locked.log" not in listed.stdout
    assert f"heal backfill: {advice}" in listed.stderr.splitlines()
    assert as_json.returncode == 2, as_json.stderr
    document = orjson.loads(as_json.stdout)
    assert [f["path"] for f in document["files"]] == [str(fine)]
    assert document["unreadable"] == [{"path": str(locked), "reason": "Permission denied"}]
    # and by hand it is refused the same way (exit 2) before anything is read
    assert by_hand.returncode == 2, by_hand.stderr
    assert by_hand.stderr.splitlines() == [
        f"heal: error: {locked} cannot be read: Permission denied; give the user heal runs as "
        "read access to it (its permissions), or run heal as a user who can read it"]


def test_discover_backfills_the_readable_logs_and_counts_the_one_it_may_not_read(
    env: dict[str, str], client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The publishing half (the embedded Redis is not reachable by another user, so the
    permission error is injected where discovery opens the file)."""
    from pipeline.cli import main
    from producers import discovery

    # Given a repository whose log locked.log heal may not open, beside two readable ones
    repo = tmp_path / "repo"
    (repo / "logs").mkdir(parents=True)
    (repo / "logs" / "locked.log").write_text("ERROR secret\n")
    (repo / "logs" / "a.log").write_text("ERROR first\n")
    (repo / "z.log").write_text("ERROR last\n")
    probe = discovery._is_text

    def denied(path: Path) -> bool:
        if path.name == "locked.log":
            raise PermissionError(13, "Permission denied", str(path))
        return probe(path)

    monkeypatch.setattr(discovery, "_is_text", denied)
    # When it is discovered and backfilled
    status = main(["backfill", "--discover", str(repo), "--json"])
    captured = capsys.readouterr()
    # Then the readable logs are published, the other is named and counted, exit 2
    assert status == 2, captured.err
    assert sorted(texts(client, env)) == ["ERROR first", "ERROR last"]
    locked = repo / "logs" / "locked.log"
    assert f"heal backfill: {locked} cannot be read: Permission denied;" in captured.err
    assert ("published 2 event(s) from 2 file(s); 1 file(s) could not be read (named above)"
            in captured.err)
    summary = orjson.loads(captured.out)
    assert summary["unreadable"] == [{"path": str(locked), "reason": "Permission denied"}]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run heal as another user")
def test_discover_names_a_folder_it_may_not_enter_and_a_path_inside_is_not_called_missing(
    env: dict[str, str]
) -> None:
    """QA s12 N4 and N6: the logs in a folder heal's user may not enter were left out of
    --discover without a word (os.walk dropped the error), and a PATH given by hand in such a
    folder was said not to exist."""
    # Given a repository with a readable log, a log in a folder only root may enter, and
    # folders discovery excludes anyway (.git, node_modules) just as closed
    folder = Path(tempfile.mkdtemp(prefix="heal-perm-"))
    try:
        folder.chmod(0o777)
        repo = folder / "repo"
        for sub in ("logs/locked", ".git/logs", "node_modules/pkg"):
            (repo / sub).mkdir(parents=True)
        for part in (repo, repo / "logs"):
            part.chmod(0o777)
        fine = repo / "logs" / "a.log"
        fine.write_text("ERROR good\n")
        fine.chmod(0o666)
        hidden = repo / "logs" / "locked" / "c.log"
        hidden.write_text("ERROR gamma\n")
        (repo / ".git" / "logs" / "HEAD.log").write_text("ERROR git\n")
        (repo / "node_modules" / "pkg" / "x.log").write_text("ERROR npm\n")
        for closed in (repo / "logs" / "locked", repo / ".git", repo / "node_modules"):
            closed.chmod(0o700)
        nobody = {**env, "HEAL_HOME": str(folder / "home"), "HOME": str(folder)}
        nobody.pop("HEAL_CONFIG", None)

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*as_nobody(), sys.executable, "-c", CLI, *args],
                                  cwd=ROOT, env=nobody, capture_output=True, text=True,
                                  timeout=120, check=False)

        # When it is discovered, as text and as JSON, and the hidden log is given by hand
        listed = run("backfill", "--discover", str(repo), "--dry-run")
        as_json = run("backfill", "--discover", str(repo), "--dry-run", "--json")
        by_hand = run("backfill", "--dry-run", str(hidden))
    finally:
        shutil.rmtree(folder)
    # Then the folder is named with the reason and what to do, and the exit is 2, as for a
    # file heal may not read; the excluded folders are not named
    locked = repo / "logs" / "locked"
    assert listed.returncode == 2, listed.stderr
    assert "a.log" in listed.stdout
    assert (f"heal backfill: {locked}/ (a folder: the logs in it are left out) cannot be read: "
            "Permission denied; give the user heal runs as read and search access to it (its "
            "permissions, r-x), run heal as a user who can read it, or exclude it (heal.toml "
            "[backfill] exclude)") in listed.stderr.splitlines(), listed.stderr
    assert ".git" not in listed.stderr and "node_modules" not in listed.stderr
    assert as_json.returncode == 2, as_json.stderr
    document = orjson.loads(as_json.stdout)
    assert [f["path"] for f in document["files"]] == [str(fine)]
    assert document["unreadable"] == [
        {"path": str(locked), "reason": "Permission denied", "folder": True}]
    # and the PATH given by hand is said to be unreadable, with what to do, not missing
    assert by_hand.returncode == 2, by_hand.stderr
    assert by_hand.stderr.splitlines() == [
        f"heal: error: {hidden} cannot be read: Permission denied; give the user heal runs as "
        "read access to it (its permissions), or run heal as a user who can read it"]
