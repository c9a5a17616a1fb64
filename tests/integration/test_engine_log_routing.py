"""The embedded engines' lines (QA report qa_walk, item 3): ``$HEAL_HOME/logs/engines.log``
stayed empty and ``heal up --verbose`` showed no initdb, start or stop line, although the
README promises both: heal starts the engines itself and logs under ``heal.engines``, which
was not routed. ``heal up`` runs as a subprocess on a fresh HEAL_HOME with no engine URL, so
it starts (initdb included) and stops its own engines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storage.embedded import EmbeddedPostgres, EmbeddedRedis

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]
ENGINE_LINES = ("heal.engines INFO started the embedded Redis under",
                "heal.engines INFO initdb: creating the embedded PostgreSQL's data folder",
                "heal.engines INFO started the embedded PostgreSQL under",
                "heal.engines INFO stopped the embedded Redis under",
                "heal.engines INFO stopped the embedded PostgreSQL under")

pytestmark = pytest.mark.slow


def _up(home: Path, tmp_path: Path, *extra: str) -> str:
    """What ``heal up`` (started, then stopped with SIGTERM once its stages read) printed on
    stderr; its engines are stopped when it lets go of them."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"HEAL_REDIS_URL", "HEAL_DATABASE_URL", "HEAL_STREAM_PREFIX"}}
    env.update(HEAL_HOME=str(home), PYTHONPATH=str(ROOT))
    err = tmp_path / f"up{len(extra)}.err"
    with open(err, "w") as out:
        proc = subprocess.Popen([*HEAL, "up", *extra], env=env,
                                cwd=tmp_path, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=out)
    try:
        deadline = time.monotonic() + 180
        while "INFO heal up: " not in err.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, err.read_text()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        subprocess.run([*HEAL, "engines", "stop", "--force"], env=env, capture_output=True,
                       timeout=120, check=False)
    assert EmbeddedRedis(home).pid() is None and EmbeddedPostgres(home).pid() is None
    return err.read_text()


def test_engine_lines_go_to_engines_log_not_the_console(tmp_path: Path) -> None:
    home = tmp_path / "home"
    # When heal up starts its own engines on a fresh home, then stops
    console = _up(home, tmp_path)
    # Then initdb, each start and each stop are in engines.log (0600), not on the console
    log = (home / "logs" / "engines.log")
    text = log.read_text()
    for line in ENGINE_LINES:
        assert line in text, text
    assert oct(log.stat().st_mode & 0o777) == "0o600"
    assert "heal.engines" not in console and "embedded Redis under" not in console, console


def test_verbose_shows_the_engine_lines_on_the_console(tmp_path: Path) -> None:
    home = tmp_path / "home"
    # When heal up --verbose starts its own engines on a fresh home, then stops
    console = _up(home, tmp_path, "--verbose")
    # Then its console shows initdb, each start and each stop
    for line in ENGINE_LINES:
        assert line.split(" INFO ", 1)[1] in console, console
    # and engines.log (0600) keeps them as well (QA s13 D3: --verbose wrote no file), once
    text = (home / "logs" / "engines.log").read_text()
    for line in ENGINE_LINES:
        assert text.count(line) == 1, text
    assert oct((home / "logs" / "engines.log").stat().st_mode & 0o777) == "0o600"
    assert console.count("started the embedded Redis under") == 1, console
