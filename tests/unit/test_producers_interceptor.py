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
    script = "import sys; sys.stdout.write(('x' * 99 + chr(10)) * 1000 + 'THE END')"
    result = run_command([sys.executable, "-c", script], stdout=io.BytesIO(), tail_bytes=1000)
    assert len(result.tail) == 1000 and result.tail.endswith("THE END") and result.truncated


def test_a_tail_starting_inside_a_word_longer_than_the_margin_drops_that_word() -> None:
    # (it may be the rest of a secret whose key was cut away: no rule would recognize it)
    script = "import sys; sys.stdout.write('x' * 100000 + ' THE END')"
    result = run_command([sys.executable, "-c", script], stdout=io.BytesIO(), tail_bytes=1000)
    assert result.tail == " THE END" and result.truncated


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


def test_a_background_child_holding_the_pipes_does_not_hold_the_run() -> None:
    import time

    out, err = io.BytesIO(), io.BytesIO()
    started = time.monotonic()
    result = run_command(["sh", "-c", "echo before; sleep 5 & echo after >&2; exit 4"],
                         stdout=out, stderr=err, grace_s=0.2)
    assert time.monotonic() - started < 3  # not the 5 s the child holds stdout/stderr
    assert result.status == 4
    assert out.getvalue() == b"before\n" and err.getvalue() == b"after\n"
    assert "before" in result.tail and "after" in result.tail


def test_what_the_command_wrote_before_exiting_is_all_passed_on_after_the_grace() -> None:
    # more than a pipe holds, the child keeping the pipe open: nothing of it is cut
    script = "import sys; sys.stdout.write('x' * 300000 + 'THE END')"
    out = io.BytesIO()
    result = run_command(["sh", "-c", f"{sys.executable} -c \"{script}\"; sleep 5 & exit 0"],
                         stdout=out, grace_s=0.0)
    assert out.getvalue().endswith(b"THE END") and len(out.getvalue()) == 300007
    assert result.stdout_bytes == 300007
