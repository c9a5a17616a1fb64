"""storage.migrate against real PostgreSQL: order, once-only, checksums, concurrent starters.

Each test gets its own freshly created database on the session's server, so bookkeeping from
other tests (and other helpers' migrations) never leaks in.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.errors import ConfigError, QueryError
from storage.db import Database
from storage.migrate import MIGRATIONS_DIR, applied, discover, migrate
from storage.scratch import create_scratch_database

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh_url(database_url: str) -> Iterator[str]:
    url, drop = create_scratch_database(database_url, f"heal_mig_{uuid.uuid4().hex[:10]}")
    yield url
    drop()


@pytest.fixture
def fresh_db(fresh_url: str) -> Iterator[Database]:
    db = Database(fresh_url)
    yield db
    db.close()


def _write(folder: Path, name: str, sql: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(sql)


def test_files_apply_in_lexical_order_once(fresh_db: Database, tmp_path: Path) -> None:
    # Given files whose lexical order matters (0002 uses the table 0001 creates)
    folder = tmp_path / "m"
    _write(folder, "0002_fill.sql", "INSERT INTO log (step) VALUES ('0002');")
    _write(folder, "0001_table.sql", "CREATE TABLE log (step text);")
    _write(folder, "0010_more.sql", "INSERT INTO log (step) VALUES ('0010');")
    # When migrating twice
    assert migrate(fresh_db, folder) == ["0001_table.sql", "0002_fill.sql", "0010_more.sql"]
    assert migrate(fresh_db, folder) == []
    # Then each ran exactly once, in order, and is recorded with its checksum
    assert [r["step"] for r in fresh_db.fetch("SELECT step FROM log")] == ["0002", "0010"]
    assert [name for name, _ in applied(fresh_db)] == [m.name for m in discover(folder)]
    # And a file added later is applied on the next run only
    _write(folder, "0011_late.sql", "INSERT INTO log (step) VALUES ('0011');")
    assert migrate(fresh_db, folder) == ["0011_late.sql"]


def test_changed_applied_file_is_refused(fresh_db: Database, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    _write(folder, "0001_table.sql", "CREATE TABLE t (a int);")
    migrate(fresh_db, folder)
    _write(folder, "0001_table.sql", "CREATE TABLE t (a int, b int);")
    with pytest.raises(ConfigError, match="0001_table.sql was changed after it was applied"):
        migrate(fresh_db, folder)


def test_failing_file_leaves_nothing_half_applied(fresh_db: Database, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    _write(folder, "0001_ok.sql", "CREATE TABLE good (a int);")
    _write(folder, "0002_bad.sql", "CREATE TABLE half (a int);\nSELECT * FROM missing_table;")
    with pytest.raises(QueryError, match="0002_bad.sql failed"):
        migrate(fresh_db, folder)
    assert [name for name, _ in applied(fresh_db)] == ["0001_ok.sql"]
    assert fresh_db.fetchval("SELECT to_regclass('half')") is None
    # after fixing the (never applied) file, the run completes
    _write(folder, "0002_bad.sql", "CREATE TABLE half (a int);")
    assert migrate(fresh_db, folder) == ["0002_bad.sql"]


_NOT_IDEMPOTENT = """
CREATE TABLE counter (n int);  -- fails if run twice
INSERT INTO counter VALUES (1);
SELECT pg_sleep(0.3);          -- widen the window in which a racing starter could interleave
"""


def test_concurrent_threads_apply_each_file_once(fresh_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    _write(folder, "0001_counter.sql", _NOT_IDEMPOTENT)
    _write(folder, "0002_more.sql", "INSERT INTO counter VALUES (2);")
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def start_worker() -> None:
        try:
            with Database(fresh_url) as db:
                results.append(migrate(db, folder))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start_worker) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results, key=len) == [[], [], [], [], ["0001_counter.sql", "0002_more.sql"]]
    with Database(fresh_url) as db:
        assert [r["n"] for r in db.fetch("SELECT n FROM counter ORDER BY n")] == [1, 2]


_WORKER = """
import sys
from pathlib import Path
from storage.db import Database
from storage.migrate import migrate
with Database(sys.argv[1]) as db:
    print(len(migrate(db, Path(sys.argv[2]))))
"""


def test_concurrent_processes_apply_each_file_once(fresh_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    _write(folder, "0001_counter.sql", _NOT_IDEMPOTENT)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, fresh_url, str(folder)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    assert sorted(int(out.strip()) for out, _ in outputs) == [0, 0, 1]
    with Database(fresh_url) as db:
        assert db.fetchval("SELECT count(*) FROM counter") == 1


def test_shipped_migrations_apply_on_an_empty_database(fresh_db: Database) -> None:
    # Given the package's own migrations (every helper's), on a new database
    names = migrate(fresh_db)
    assert names == [m.name for m in discover(MIGRATIONS_DIR)]
    assert names[0] == "0001_base.sql"
    # Then the vector codec is live on the pool right away
    assert fresh_db.fetchval("SELECT '[1,2,3]'::vector").to_list() == [1.0, 2.0, 3.0]
