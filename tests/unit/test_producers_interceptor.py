"""The subprocess interceptor: pass-through, bounded tail, exit status and signals."""

from __future__ import annotations

import io
import sys

import pytest

from pipeline.errors import UsageError
from producers.interceptor import TailBuffer, run_command


def test_output_passes_through_and_the_tail_keeps_both_streams() -> None:
    out, err = io.BytesIO(), io.BytesIO()
    result = run_command(["sh", "-c", "echo hello; echo oops >&2; exit 3"], stdout=out, stderr=err)
    assert result.status == 3 and result.signal == ""
    assert out.getvalue() == b"hello\n" and err.getvalue() == b"oops\n"
    assert "hello" in result.tail and "oops" in result.tail
    assert (result.stdout_bytes, result.stderr_bytes) == (6, 5)


def test_tail_is_bounded_and_keeps_the_end() -> None:
    script = "import sys; sys.stdout.write('x' * 100000 + 'THE END')"
    result = run_command([sys.executable, "-c", script], stdout=io.BytesIO(), tail_bytes=1000)
    assert len(result.tail) == 1000 and result.tail.endswith("THE END") and result.truncated


def test_signal_is_kept_as_128_plus_n() -> None:
    result = run_command(["sh", "-c", "kill -KILL $$"], stdout=io.BytesIO(), stderr=io.BytesIO())
    assert result.status == 137 and result.signal == "SIGKILL"


def test_missing_command_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="command not found"):
        run_command(["definitely-not-a-command-xyz"])
    with pytest.raises(UsageError, match="no command"):
        run_command([])


def test_tail_buffer_trims_partial_chunks() -> None:
    tail = TailBuffer(5)
    for chunk in (b"abc", b"defg", b"h"):
        tail.append(chunk)
    assert tail.text() == "defgh" and tail.truncated
