"""The pipelined connection's own RESP packer (pipeline.runtime.overlap.resp) writes the
same bytes as redis-py's packers, and leaves any other argument type to them."""

from __future__ import annotations

import hiredis
import pytest
from redis.connection import Encoder, PythonRespSerializer

from pipeline.runtime.overlap import resp

ARGS = [
    ("EVALSHA", "ab" * 20, 4, "k1", "k2", "k3", "k4", "g", 7200, "MAXLEN", 1000),
    ("XREADGROUP", "GROUP", "fingerprint", "c-1", "COUNT", 500, "STREAMS", "s", ">"),
    ("EVALSHA", "x", 0, "", b"", 0, -5, 12345678901234567890, "é—ü 🙂", b"\x00\xff\r\n"),
]


@pytest.mark.parametrize("args", ARGS)
def test_resp_is_byte_for_byte_what_redis_py_sends(args: tuple[object, ...]) -> None:
    python = b"".join(PythonRespSerializer(6000, Encoder("utf-8", "strict", False).encode)
                      .pack(*args))
    assert resp(args) == hiredis.pack_command(args) == python


@pytest.mark.parametrize("odd", [1.5, True, bytearray(b"x"), memoryview(b"x"), None])
def test_any_other_argument_type_is_left_to_the_connection_s_packer(odd: object) -> None:
    assert resp(("SET", "k", odd)) is None
