"""Bad usage and settings the README walk-through found taken or reported badly (QA report
qa_walk, items 7, 10 and 11), each through this checkout's ``heal`` as a subprocess: every
one is refused before any work (exit 2) with a message that says what to change."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAL = [sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main())"]


def _heal(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HEAL_")}
    # engines nobody listens on: a setting that is not refused shows as an outage (exit 1)
    base.update(PYTHONPATH=str(ROOT), HEAL_HOME=str(tmp_path / "home"),
                HEAL_REDIS_URL="redis://127.0.0.1:1", HEAL_DATABASE_URL="postgresql://127.0.0.1:1/h")
    return subprocess.run([*HEAL, *args], env={**base, **env}, cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.parametrize("args, usage, unknown", [
    (["status", "--jsn"], "usage: heal status [-h] [--json]", "--jsn"),
    (["engines", "stop", "--forse"], "usage: heal engines stop [-h] [--force]", "--forse"),
    (["worker", "fingerprint", "--concurency", "4"], "usage: heal worker [-h] [--concurrency N]",
     "--concurency 4"),
    (["audit", "verify", "--file-onyl"], "usage: heal audit verify [-h] [--file-only]",
     "--file-onyl"),
    (["engines", "--forse", "stop"], "usage: heal engines [-h] VERB ...", "--forse"),
])
def test_a_mistyped_option_is_reported_with_the_commands_own_usage(
        tmp_path: Path, args: list[str], usage: str, unknown: str) -> None:
    # When an operator mistypes an option of a command
    done = _heal(tmp_path, *args)
    # Then that command's usage (its options) is printed, not heal's, exit 2
    assert done.returncode == 2, done
    assert done.stderr.startswith(usage), done.stderr
    assert f"error: unrecognized arguments: {unknown}\n" in done.stderr, done.stderr
    assert "COMMAND ..." not in done.stderr, done.stderr


@pytest.mark.parametrize("value", [" 3", "3\n", " 3 ", "\t3", "  "])
def test_heal_partitions_with_whitespace_around_it_is_refused(tmp_path: Path,
                                                               value: str) -> None:
    # When HEAL_PARTITIONS holds a space or newline around its digits (a pasted value)
    done = _heal(tmp_path, "status", HEAL_PARTITIONS=value)
    # Then it is refused as the README says (plain ASCII digits), naming it, exit 2
    assert done.returncode == 2, done
    assert f"HEAL_PARTITIONS={value!r}: must be a whole number from 1 to 1024" in done.stderr
    assert "no space or newline around it" in done.stderr and done.stdout == "", done


@pytest.mark.parametrize("value, says", [
    ("heal ", "holds a space"),
    ("a b", "holds a space"),
    ("heal\n", "holds a newline"),
    ("he\tal", "holds a tab"),
    ("he\u00a0al", "holds U+00A0 (NO-BREAK SPACE)"),
    ("he\x1bal", "holds U+001B"),
    ("p" * 65, "holds 65 characters, more than 64"),
])
def test_a_stream_prefix_with_whitespace_or_control_characters_is_refused(
        tmp_path: Path, value: str, says: str) -> None:
    # When HEAL_STREAM_PREFIX holds a stray space, newline or control character (producers
    # and workers would silently use other streams), or is absurdly long
    for args in (("status",), ("emit",)):
        done = _heal(tmp_path, *args, HEAL_STREAM_PREFIX=value)
        # Then every command refuses it before any work, naming it and what to give, exit 2
        assert done.returncode == 2, done
        assert "HEAL_STREAM_PREFIX=" in done.stderr and says in done.stderr, done.stderr
        assert "\n" not in done.stderr.rstrip("\n"), done.stderr  # one line: control chars shown
        assert done.stdout == "", done.stdout


@pytest.mark.parametrize("value", ["heal", "{heal}", "team-a:heal", "héal", "p" * 64])
def test_a_well_formed_stream_prefix_is_taken(tmp_path: Path, value: str) -> None:
    # Given a prefix without whitespace (braces are a Redis Cluster hash tag, see the README)
    done = _heal(tmp_path, "status", "--json", HEAL_STREAM_PREFIX=value)
    # Then it is not refused: status reports the (unreachable) engines, exit 1
    assert done.returncode == 1, done
    assert "HEAL_STREAM_PREFIX" not in done.stderr, done.stderr
